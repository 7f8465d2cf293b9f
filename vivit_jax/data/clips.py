"""Records -> clips: the per-example work of the tf.data pipelines.

Each split's clip is made from a parsed record (`sources.Record`), a seed and the settings of a
`ClipSpec`: `train_clip` (random window, augmentation; with `augment_on_device`, u8 and the
draws the step applies), `eval_clip` (the centre window) and `test_clip` (all views). The
`*_from_frames` twins take frames already decoded, for sources that decode on their own
(`video_files.VideoFilesSource`) and for inference. A problem found in a record (no frames, a
frame that is not a complete JPEG, a bad label) does not raise here: it travels with the clip as
its `error` string (see `element`), and `pipeline.check_clips` raises or skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from vivit_jax.data import augment, labels, rand_augment, sampling, video_ops
from vivit_jax.data.clip_spec import ClipSpec
from vivit_jax.data.sources import Record


def label_target(label_index: tf.Tensor, spec: ClipSpec) -> tuple[tf.Tensor, tf.Tensor]:
  """The training target of a record's int64[L] labels and its error ('' when valid)."""
  return labels.label_target(
    label_index,
    num_classes=spec.num_classes,
    class_splits=spec.class_splits,
    multi_label=spec.multi_label,
    head_names=spec.split_names,
  )


def _checked_record(record: Record, spec: ClipSpec):
  """Target, error and frames made safe to index when the record has none."""
  target, error = label_target(record['label_index'], spec)
  encoded = record['encoded']
  length = tf.shape(encoded)[0]
  error = tf.where(
    length == 0, 'has no frames (feature list image/encoded is missing or empty)', error
  )
  encoded = tf.cond(length > 0, lambda: encoded, lambda: tf.constant([b'']))
  return target, error, encoded, length


def _frame_error(
  error: tf.Tensor, encoded: tf.Tensor, indices: tf.Tensor, jpeg_only: bool
) -> tf.Tensor:
  if not jpeg_only:
    return error
  flat = tf.reshape(indices, [-1])
  bad = video_ops.first_bad_jpeg(tf.gather(encoded, flat))
  message = tf.strings.format(
    'has frame {} that is not a complete JPEG', tf.gather(flat, tf.maximum(bad, 0))
  )
  return tf.where(tf.logical_and(tf.equal(error, ''), bad >= 0), message, error)


def if_valid(error: tf.Tensor, make: Callable[[], tf.Tensor], shape: Sequence[int]) -> tf.Tensor:
  """`make()` when `error` is '', else zeros of `shape`: a bad record's clip is never decoded."""
  return tf.cond(tf.equal(error, ''), make, lambda: tf.zeros(shape, tf.float32))


def element(record, video, target, error) -> Record:
  """A clip's element: inputs, target, the record's key and place, its error ('' if valid)."""
  return {
    'inputs': video,
    'label': target,
    'batch_mask': tf.constant(1.0),
    'key': record['key'],
    'where': record['where'],
    'error': error,
  }


def train_clip(record: Record, seed: tf.Tensor, spec: ClipSpec, jpeg_only: bool) -> Record:
  """A randomly sampled and augmented clip: inputs f32[T,S,S,3] (with
  `spec.augment_on_device`, u8 and the drawn 'color', 'erase' and 'window'; see
  `train_output`).

  JPEG frames decode only the crop's window; the geometry and augmentation are
  `train_from_frames`'s for the same seed.
  """
  target, error, encoded, length = _checked_record(record, spec)
  seeds = tf.random.experimental.stateless_split(seed, 4)
  indices = sampling.train_indices(length, spec.num_frames, spec.stride, seeds[0])
  error = _frame_error(error, encoded, indices, jpeg_only)

  def make() -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    size = video_ops.frame_shape(encoded[indices[0]], jpeg_only)
    window = _train_window(size[0], size[1], seeds[1], spec)

    def whole() -> tf.Tensor:
      frames = video_ops.decode_frames(encoded, indices, jpeg_only=jpeg_only)
      return frames[:, window[0] : window[0] + window[2], window[1] : window[1] + window[3]]

    def cropped() -> tf.Tensor:
      return video_ops.decode_frames(
        encoded, indices, jpeg_only=jpeg_only, window=window, frame_size=size
      )

    # Cropped decoding pays off when it skips much of the frame; on tiny frames
    # (the synthetic data) its fixed cost outweighs the saving.
    small = window[2] * window[3] * 4 < size[0] * size[1] * 3
    region = tf.cond(small, cropped, whole)
    return _train_from_region(region, seeds[2], spec)

  return train_output(record, target, error, make, spec)


def train_output(
  record: Record,
  target: tf.Tensor,
  error: tf.Tensor,
  make: Callable[[], tuple[tf.Tensor, dict[str, tf.Tensor]]],
  spec: ClipSpec,
) -> Record:
  """A train clip's element: `make()`'s clip and extras, or zeros when `error` is set.

  The clip is f32[T,S,S,3], or u8 with `spec.augment_on_device`; the extras
  are then 'color' f32[6] and 'erase' i32[5], and with `spec.device_resize`
  the clip is the crop window u8[T,M,M,3] (M = `spec.device_window`) with its
  size in 'window' i32[2] (see `device_augment`).
  """
  dtype = tf.uint8 if spec.augment_on_device else tf.float32
  side = spec.device_window if spec.device_resize else spec.crop_size
  shape = [spec.num_frames, side, side, 3]

  def empty():
    size = tf.constant([spec.crop_size] * 2)
    return tf.zeros(shape, dtype), _device_extras(spec, None, None, size)

  clip, extras = tf.cond(tf.equal(error, ''), make, empty)
  return {**element(record, clip, target, error), **extras}


def _device_extras(
  spec: ClipSpec, color: tf.Tensor | None, seed: tf.Tensor | None, window: tf.Tensor
) -> dict[str, tf.Tensor]:
  """What the train step needs besides the uint8 clip with `augment_on_device`.

  No color or no seed (an invalid record): nothing changed, nothing erased.
  `window` is the size of the sent window (used with `spec.device_resize`).
  """
  if not spec.augment_on_device:
    return {}
  aug = spec.augmentation
  box = tf.zeros([len(augment.EraseBox._fields)], tf.int32)  # erase 0: nothing erased
  if aug.do_random_erasing and seed is not None:
    box = augment.erasing_box(spec.crop_size, spec.crop_size, aug.prob_random_erasing, seed)
  if color is None:
    color = tf.zeros([len(augment.ColorDraw._fields)])  # apply 0, drop 0: no change
  extras = {'color': color, 'erase': box}
  if spec.device_resize:
    extras['window'] = tf.cast(window, tf.int32)
  return extras


def _padded_window(
  region: tf.Tensor, flip: tf.Tensor, spec: ClipSpec
) -> tuple[tf.Tensor, tf.Tensor]:
  """The crop window u8[T,h,w,3], flipped, as u8[T,M,M,3] for the device's resize, and (h, w).

  Zeros pad the window to M = `spec.device_window` (the device clamps its
  samples to the window). A window that does not fit is resized here, as
  without `device_resize`, and sent at (S, S).
  """
  side, s = spec.device_window, spec.crop_size
  shape = tf.shape(region)

  def window():
    flipped = tf.cond(flip, lambda: tf.reverse(region, axis=[2]), lambda: region)
    return tf.pad(flipped, [[0, 0], [0, side - shape[1]], [0, side - shape[2]], [0, 0]]), shape[1:3]

  def resized():
    clip = augment.to_uint8(video_ops.resize_region(region, s), flip)
    return tf.pad(clip, [[0, 0], [0, side - s], [0, side - s], [0, 0]]), tf.constant([s, s])

  fits = tf.logical_and(shape[1] <= side, shape[2] <= side)
  padded, size = tf.cond(fits, window, resized)
  return tf.ensure_shape(padded, [spec.num_frames, side, side, 3]), size


def train_from_frames(
  frames: tf.Tensor, window_seed: tf.Tensor, augment_seed: tf.Tensor, spec: ClipSpec
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
  """The train clip of already sampled frames, as `train_clip` makes it after decoding.

  Args:
    frames: u8[T,H,W,3], the clip's sampled frames, decoded whole.
    window_seed: the seed of the crop window (`train_clip`'s second split seed).
    augment_seed: the seed of flip and augmentation (its third).
    spec: clip settings.

  Returns:
    (clip, extras) as `_train_from_region` returns them.
  """
  top, left, h, w = tf.unstack(
    _train_window(tf.shape(frames)[1], tf.shape(frames)[2], window_seed, spec)
  )
  return _train_from_region(frames[:, top : top + h, left : left + w], augment_seed, spec)


def _train_window(height: tf.Tensor, width: tf.Tensor, seed: tf.Tensor, spec: ClipSpec):
  aug = spec.augmentation
  return video_ops.crop_window(
    height,
    width,
    min_resize=spec.min_resize,
    crop_size=spec.crop_size,
    scale_range=aug.scale_range,
    prob_scale=aug.prob_scale_jitter,
    seed=seed,
  )


def _train_from_region(
  region: tf.Tensor, seed: tf.Tensor, spec: ClipSpec
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
  """Resize of the crop window, flip, RandAugment or color, normalisation, erasing.

  Returns (f32[T,S,S,3] with everything applied, {}). With
  `spec.augment_on_device` the clip is u8 and the extras hold what was drawn,
  from the same seeds: {'color': the color change f32[6], 'erase': the
  erasing box i32[5]}; the clip is then the flipped crop window padded to
  u8[T,M,M,3] with its size in 'window' (`spec.device_resize`), or, with
  RandAugment, the resized, flipped and RandAugmented u8[T,S,S,3].
  """
  region = tf.ensure_shape(region, [spec.num_frames, None, None, 3])
  aug = spec.augmentation
  seeds = tf.random.experimental.stateless_split(seed, 4)
  color = None
  if aug.do_color_augment:
    color = augment.color_transform(
      prob_color=aug.prob_color_augment, prob_drop=aug.prob_color_drop, seed=seeds[1]
    )
  flip = tf.constant(False)
  if spec.random_flip:
    flip = tf.random.stateless_uniform([], seeds[2]) < 0.5
  if spec.device_resize:
    # Flipping the window flips its bilinear resize: the device does the rest.
    padded, size = _padded_window(region, flip, spec)
    return padded, _device_extras(spec, color, seeds[3], size)
  clip = video_ops.resize_region(region, spec.crop_size)
  if aug.do_rand_augment:
    clip = rand_augment.rand_augment(
      tf.saturate_cast(tf.round(clip), tf.uint8),
      num_layers=aug.rand_augment_num_layers,
      magnitude=aug.rand_augment_magnitude,
      seed=seeds[0],
      contrast_pivot=aug.rand_augment_contrast_pivot,
    )
  if spec.augment_on_device:
    size = tf.constant([spec.crop_size] * 2)
    return augment.to_uint8(clip, flip), _device_extras(spec, color, seeds[3], size)
  clip = augment.finish_clip(clip, flip=flip, color=color, zero_centering=spec.zero_centering)
  if aug.do_random_erasing:
    low = -1.0 if spec.zero_centering else 0.0
    clip = augment.random_erasing(clip, aug.prob_random_erasing, seeds[3], low, 1.0)
  return clip, {}


def eval_clip(record: Record, spec: ClipSpec, jpeg_only: bool) -> Record:
  """The centre window, short side resized, centre crop: inputs f32[T,S,S,3]."""
  target, error, encoded, length = _checked_record(record, spec)
  indices = sampling.centre_indices(length, spec.num_frames, spec.stride)
  error = _frame_error(error, encoded, indices, jpeg_only)

  def make() -> tf.Tensor:
    frames = video_ops.decode_frames(encoded, indices, jpeg_only=jpeg_only)
    return eval_from_frames(frames, spec)

  shape = [spec.num_frames, spec.crop_size, spec.crop_size, 3]
  return element(record, if_valid(error, make, shape), target, error)


def eval_from_frames(frames: tf.Tensor, spec: ClipSpec) -> tf.Tensor:
  """Sampled frames u8[T,H,W,3] -> f32[T,S,S,3]: short side resized, centre crop, normalised."""
  frames = video_ops.resize_short_side(frames, spec.min_resize)
  return video_ops.normalise(video_ops.centre_crop(frames, spec.crop_size), spec.zero_centering)


def test_clip(record: Record, spec: ClipSpec, jpeg_only: bool) -> Record:
  """All views of one video: inputs f32[V,T,S,S,3], clip-major (v = clip * crops + crop)."""
  target, error, encoded, length = _checked_record(record, spec)
  indices = sampling.multi_view_indices(length, spec.num_frames, spec.stride, spec.num_test_clips)
  error = _frame_error(error, encoded, indices, jpeg_only)

  def make() -> tf.Tensor:
    frames = video_ops.decode_frames(encoded, indices, jpeg_only=jpeg_only)
    return test_from_frames(frames, spec)

  shape = [spec.num_views, spec.num_frames, spec.crop_size, spec.crop_size, 3]
  return element(record, if_valid(error, make, shape), target, error)


def test_inputs(video: tf.Tensor, spec: ClipSpec) -> tf.Tensor:
  """The test views of a decoded video u8[N,H,W,3]: f32[V,T,S,S,3], as `test_clip`."""
  video = tf.convert_to_tensor(video)
  indices = sampling.multi_view_indices(
    tf.shape(video)[0], spec.num_frames, spec.stride, spec.num_test_clips
  )
  return test_from_frames(tf.gather(video, indices), spec)


def test_from_frames(frames: tf.Tensor, spec: ClipSpec) -> tf.Tensor:
  """Sampled frames u8[clips,T,H,W,3] -> the test views f32[V,T,S,S,3], clip-major."""
  t, s, clips = spec.num_frames, spec.crop_size, spec.num_test_clips
  shape = tf.shape(frames)
  frames = tf.reshape(frames, tf.concat([[clips * t], shape[2:]], 0))
  frames = video_ops.resize_short_side(frames, spec.min_resize)
  if spec.three_crops:
    views = video_ops.three_crops(frames, s)
    views = tf.reshape(views, [3, clips, t, s, s, 3])
    views = tf.transpose(views, [1, 0, 2, 3, 4, 5])
  else:
    views = video_ops.centre_crop(frames, s)
  views = tf.reshape(views, [spec.num_views, t, s, s, 3])
  return video_ops.normalise(views, spec.zero_centering)

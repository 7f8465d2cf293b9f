"""Per-clip ops on frames: decoding, resizing, cropping, flipping, scaling.

Frames are `u8` or `f32[T,H,W,3]` with values in [0, 255] until `normalise`.
Every random op takes a stateless `seed: int32[2]`, so a clip's augmentation
depends only on its seed, never on thread timing.
"""

from __future__ import annotations

import tensorflow as tf


def decode_frames(encoded: tf.Tensor, indices: tf.Tensor, *, jpeg_only: bool = True) -> tf.Tensor:
  """Decodes only the frames at `indices` (each distinct frame once).

  Args:
    encoded: string[N] encoded frames.
    indices: int32[...] frame indices into `encoded`.
    jpeg_only: decode with the JPEG decoder (DMVR data); False accepts any
      image format TensorFlow reads (TFDS stores PNG or JPEG frames).

  Returns:
    u8[*indices.shape, H, W, 3].
  """
  flat = tf.reshape(indices, [-1])
  unique, position = tf.unique(flat)

  def decode(data: tf.Tensor) -> tf.Tensor:
    if jpeg_only:
      return tf.io.decode_jpeg(data, channels=3)
    return tf.io.decode_image(data, channels=3, expand_animations=False)

  frames = tf.map_fn(decode, tf.gather(encoded, unique), fn_output_signature=tf.uint8)
  frames = tf.gather(frames, position)
  return tf.reshape(frames, tf.concat([tf.shape(indices), tf.shape(frames)[1:]], 0))


def first_bad_jpeg(encoded: tf.Tensor) -> tf.Tensor:
  """int32[]: index of the first frame that is not a complete JPEG, or -1.

  A complete JPEG starts with the SOI marker FFD8 and has the EOI marker FFD9
  among its last 16 bytes; this catches empty, foreign and truncated frames
  before the decoder would fail without naming the record.
  """
  length = tf.strings.length(encoded)
  head = tf.strings.substr(encoded, 0, 2)
  tail = tf.strings.substr(encoded, tf.maximum(length - 16, 0), 16)
  good = tf.logical_and(
    tf.equal(head, b'\xff\xd8'), tf.strings.regex_full_match(tail, '(?s).*\xff\xd9.*')
  )
  bad = tf.cast(tf.where(tf.logical_not(good))[:, 0], tf.int32)
  return tf.cond(tf.size(bad) > 0, lambda: bad[0], lambda: tf.constant(-1))


def short_side_shape(height: tf.Tensor, width: tf.Tensor, short_side: tf.Tensor) -> tf.Tensor:
  """int32[2]: (height, width) scaled so the shorter side is `short_side`."""
  h = tf.cast(height, tf.float32)
  w = tf.cast(width, tf.float32)
  s = tf.cast(short_side, tf.float32)
  scale = s / tf.minimum(h, w)
  new_h = tf.where(h <= w, s, tf.round(h * scale))
  new_w = tf.where(w < h, s, tf.round(w * scale))
  return tf.cast(tf.stack([new_h, new_w]), tf.int32)


def resize_short_side(frames: tf.Tensor, short_side: int) -> tf.Tensor:
  """Bilinear resize so min(H, W) = short_side; f32[T,H',W',3] (no-op if equal)."""
  shape = tf.shape(frames)
  size = short_side_shape(shape[-3], shape[-2], short_side)
  return tf.cond(
    tf.reduce_all(tf.equal(size, shape[-3:-1])),
    lambda: tf.cast(frames, tf.float32),
    lambda: tf.image.resize(frames, size, method='bilinear'),
  )


def centre_crop(frames: tf.Tensor, size: int) -> tf.Tensor:
  """[..., H, W, C] -> [..., size, size, C], the centre (offsets rounded down)."""
  shape = tf.shape(frames)
  top = (shape[-3] - size) // 2
  left = (shape[-2] - size) // 2
  cropped = frames[..., top : top + size, left : left + size, :]
  return tf.ensure_shape(cropped, frames.shape[:-3].concatenate([size, size, frames.shape[-1]]))


def three_crops(frames: tf.Tensor, size: int) -> tf.Tensor:
  """[T,H,W,C] -> [3,T,size,size,C]: start, centre and end of the long side.

  The crops run left to right for landscape frames and top to bottom for
  portrait ones; the short side is centre-cropped.
  """
  shape = tf.shape(frames)
  h, w = shape[-3], shape[-2]
  landscape = w >= h
  long_side = tf.where(landscape, w, h)
  starts = tf.stack([0, (long_side - size) // 2, long_side - size])
  short_start = (tf.where(landscape, h, w) - size) // 2
  crops = []
  for i in range(3):
    top = tf.where(landscape, short_start, starts[i])
    left = tf.where(landscape, starts[i], short_start)
    crops.append(frames[:, top : top + size, left : left + size, :])
  return tf.ensure_shape(tf.stack(crops), [3, frames.shape[0], size, size, frames.shape[-1]])


def random_resized_crop(
  frames: tf.Tensor,
  *,
  min_resize: int,
  crop_size: int,
  scale_range: tuple[float, float] | None,
  prob_scale: float,
  seed: tf.Tensor,
) -> tf.Tensor:
  """Short side to `min_resize` times a random scale, then a random square crop.

  The resize and the crop are done in one bilinear resampling of only the
  cropped region (`crop_and_resize`), with the same pixel centres a full resize
  followed by a crop would use; a crop that needs no resizing copies pixels
  exactly. The same box is used for all frames.

  Args:
    frames: u8[T,H,W,3].
    min_resize: short side before jitter.
    crop_size: output side.
    scale_range: (min, max) scale factor, or None for no scale jitter.
    prob_scale: probability of applying the scale jitter.
    seed: int32[2].

  Returns:
    f32[T,crop_size,crop_size,3].
  """
  seeds = tf.random.experimental.stateless_split(seed, 4)
  scale = tf.constant(1.0)
  if scale_range is not None:
    jitter = tf.random.stateless_uniform([], seeds[0], scale_range[0], scale_range[1])
    apply = tf.random.stateless_uniform([], seeds[1]) < prob_scale
    scale = tf.where(apply, jitter, 1.0)
  short = tf.maximum(tf.round(min_resize * scale), crop_size)
  shape = tf.shape(frames)
  h, w = shape[1], shape[2]
  size = short_side_shape(h, w, short)
  rh, rw = size[0], size[1]
  top = tf.random.stateless_uniform([], seeds[2], 0, rh - crop_size + 1, dtype=tf.int32)
  left = tf.random.stateless_uniform([], seeds[3], 0, rw - crop_size + 1, dtype=tf.int32)
  box = tf.stack(
    [
      _box_edge(top, h, rh, 0.5),
      _box_edge(left, w, rw, 0.5),
      _box_edge(top + crop_size, h, rh, -0.5),
      _box_edge(left + crop_size, w, rw, -0.5),
    ]
  )
  t = shape[0]
  return tf.image.crop_and_resize(
    frames,
    tf.tile(box[None], [t, 1]),
    tf.zeros([t], tf.int32),
    [crop_size, crop_size],
  )


def _box_edge(pos: tf.Tensor, size: tf.Tensor, resized: tf.Tensor, centre: float) -> tf.Tensor:
  """Normalised crop_and_resize coordinate of resized pixel centre `pos + centre`."""
  pos, size, resized = (tf.cast(x, tf.float32) for x in (pos, size, resized))
  source = (pos + centre) * size / resized - 0.5
  return source / tf.maximum(size - 1.0, 1.0)


def random_flip(frames: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Mirrors all frames left-right with probability 1/2; [T,H,W,C] -> same."""
  flip = tf.random.stateless_uniform([], seed) < 0.5
  return tf.cond(flip, lambda: tf.reverse(frames, axis=[-2]), lambda: frames)


def normalise(frames: tf.Tensor, zero_centering: bool) -> tf.Tensor:
  """[0, 255] -> [-1, 1] (zero_centering, the ViT convention) or [0, 1]; f32."""
  frames = tf.cast(frames, tf.float32)
  if zero_centering:
    return frames / 127.5 - 1.0
  return frames / 255.0

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
  eoi = tf.zeros_like(length, tf.bool)
  for back in range(2, 17):
    start = tf.maximum(length - back, 0)
    pair = tf.strings.substr(encoded, start, tf.fill(tf.shape(start), 2))
    eoi = tf.logical_or(eoi, tf.equal(pair, b'\xff\xd9'))
  good = tf.logical_and(tf.equal(head, b'\xff\xd8'), eoi)
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
  frames = tf.convert_to_tensor(frames)
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

  Only the source region under the crop is resized (bilinear), which costs a
  fraction of resizing whole frames. The region is a whole number of source
  pixels, so the scale is quantised to one source pixel per crop side (under
  0.5% at Kinetics sizes). A crop that needs no resizing is an exact copy. The
  same region is used for all frames.

  Args:
    frames: u8[T,H,W,3].
    min_resize: short side before jitter.
    crop_size: output side.
    scale_range: (min, max) scale factor, or None for no scale jitter.
    prob_scale: probability of applying the scale jitter.
    seed: int32[2].

  Returns:
    u8[T,crop_size,crop_size,3].
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
  # The source region a crop_size window of the resized frames covers, rounded
  # to whole source pixels.
  region_h = _region(crop_size, h, size[0])
  region_w = _region(crop_size, w, size[1])
  y0 = tf.random.stateless_uniform([], seeds[2], 0, h - region_h + 1, dtype=tf.int32)
  x0 = tf.random.stateless_uniform([], seeds[3], 0, w - region_w + 1, dtype=tf.int32)
  y1, x1 = y0 + region_h, x0 + region_w
  region = frames[:, y0:y1, x0:x1, :]
  out_shape = [frames.shape[0], crop_size, crop_size, 3]
  # u8 out, so that the common no-resize case costs no float pass here; the
  # conversion to float happens fused with the rest of the augmentation.
  return tf.cond(
    tf.logical_and(tf.equal(y1 - y0, crop_size), tf.equal(x1 - x0, crop_size)),
    lambda: tf.ensure_shape(region, out_shape),
    lambda: tf.ensure_shape(
      tf.saturate_cast(tf.round(tf.image.resize(region, [crop_size, crop_size])), tf.uint8),
      out_shape,
    ),
  )


def _region(crop_size: int, size: tf.Tensor, resized: tf.Tensor) -> tf.Tensor:
  """Source pixels under `crop_size` pixels of a side resized from `size` to `resized`."""
  ratio = tf.cast(size, tf.float32) / tf.cast(resized, tf.float32)
  return tf.clip_by_value(tf.cast(tf.round(crop_size * ratio), tf.int32), 1, size)


def random_flip(frames: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Mirrors all frames left-right with probability 1/2; [T,H,W,C] -> same."""
  frames = tf.convert_to_tensor(frames)
  flip = tf.random.stateless_uniform([], seed) < 0.5
  return tf.cond(flip, lambda: tf.reverse(frames, axis=[-2]), lambda: frames)


def normalise(frames: tf.Tensor, zero_centering: bool, max_value: float = 255.0) -> tf.Tensor:
  """[0, max_value] -> [-1, 1] (zero_centering, the ViT convention) or [0, 1]; f32."""
  frames = tf.cast(frames, tf.float32)
  # Division, not multiplication by a rounded reciprocal: 255 maps to exactly 1.
  if zero_centering:
    return frames / (max_value / 2.0) - 1.0
  return frames / max_value

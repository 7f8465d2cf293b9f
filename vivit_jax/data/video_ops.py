"""Per-clip ops on frames: decoding, resizing, cropping, flipping, scaling.

Frames are `u8` or `f32[T,H,W,3]` with values in [0, 255] until `normalise`.
Every random op takes a stateless `seed: int32[2]`, so a clip's augmentation
depends only on its seed, never on thread timing.
"""

from __future__ import annotations

import tensorflow as tf


def decode_frames(
  encoded: tf.Tensor,
  indices: tf.Tensor,
  *,
  jpeg_only: bool = True,
  window: tf.Tensor | None = None,
  frame_size: tf.Tensor | None = None,
) -> tf.Tensor:
  """Decodes only the frames at `indices` (each distinct frame once).

  Args:
    encoded: string[N] encoded frames.
    indices: int32[...] frame indices into `encoded`.
    jpeg_only: decode with the JPEG decoder (DMVR data); False accepts any
      image format TensorFlow reads (TFDS stores PNG or JPEG frames).
    window: optional int32[4] (top, left, height, width): only this region of
      each frame is returned. JPEG frames decode only the rows and columns it
      needs (`decode_and_crop_jpeg`), with the same pixels as a full decode;
      other formats decode whole and slice.
    frame_size: optional int32[2] (height, width) of every frame, which spares
      reading it from each JPEG header when a window is given.

  Returns:
    u8[*indices.shape, H, W, 3] (H, W the window's when given).
  """
  flat = tf.reshape(indices, [-1])
  unique, position = tf.unique(flat)

  def decode(data: tf.Tensor) -> tf.Tensor:
    if jpeg_only:
      if window is not None:
        return _decode_window(data, window, frame_size)
      return tf.io.decode_jpeg(data, channels=3)
    frame = tf.io.decode_image(data, channels=3, expand_animations=False)
    if window is not None:
      frame = frame[window[0] : window[0] + window[2], window[1] : window[1] + window[3]]
    return frame

  frames = tf.map_fn(decode, tf.gather(encoded, unique), fn_output_signature=tf.uint8)
  frames = tf.gather(frames, position)
  return tf.reshape(frames, tf.concat([tf.shape(indices), tf.shape(frames)[1:]], 0))


def _decode_window(data: tf.Tensor, window: tf.Tensor, size: tf.Tensor | None) -> tf.Tensor:
  """decode_and_crop_jpeg of `window`, pixel for pixel what a full decode then slice gives.

  libjpeg upsamples chroma at a cropped edge without the pixel beyond it, so
  the window is decoded with a one-pixel margin that is then sliced off.
  """
  if size is None:
    size = tf.io.extract_jpeg_shape(data)[:2]
  start = tf.maximum(window[:2] - 1, 0)
  end = tf.minimum(window[:2] + window[2:] + 1, size)
  frame = tf.io.decode_and_crop_jpeg(data, tf.concat([start, end - start], 0), channels=3)
  offset = window[:2] - start
  return frame[offset[0] : offset[0] + window[2], offset[1] : offset[1] + window[3]]


def frame_shape(encoded: tf.Tensor, jpeg_only: bool = True) -> tf.Tensor:
  """int32[2]: (height, width) of one encoded frame, from its header when JPEG."""
  if jpeg_only:
    return tf.io.extract_jpeg_shape(encoded)[:2]
  return tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False))[:2]


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


def crop_window(
  height: tf.Tensor,
  width: tf.Tensor,
  *,
  min_resize: int,
  crop_size: int,
  scale_range: tuple[float, float] | None,
  prob_scale: float,
  seed: tf.Tensor,
) -> tf.Tensor:
  """The source region of a train crop: int32[4] (top, left, height, width).

  DMVR's train geometry: resize the short side to `min_resize`; with
  probability `prob_scale` scale the height and the width by factors drawn
  independently from `scale_range` (`scale_jitter_augm`: the aspect ratio
  changes); take a uniformly placed `crop_size` square. Only the source region
  under that square is ever resized, which costs a fraction of resizing whole
  frames; it is a whole number of source pixels, so each scale is quantised to
  one source pixel per crop side (under 0.5% at Kinetics sizes). One window
  serves all frames of a clip, for JPEG and decoded frames alike.

  Args:
    height: source frame height.
    width: source frame width.
    min_resize: short side before jitter.
    crop_size: output side.
    scale_range: (min, max) scale factor, or None for no scale jitter.
    prob_scale: probability of applying the scale jitter.
    seed: int32[2].
  """
  seeds = tf.random.experimental.stateless_split(seed, 5)
  h_scale, w_scale = tf.constant(1.0), tf.constant(1.0)
  if scale_range is not None:
    apply = tf.random.stateless_uniform([], seeds[1]) < prob_scale
    h_jitter = tf.random.stateless_uniform([], seeds[0], scale_range[0], scale_range[1])
    w_jitter = tf.random.stateless_uniform([], seeds[4], scale_range[0], scale_range[1])
    h_scale = tf.where(apply, h_jitter, 1.0)
    w_scale = tf.where(apply, w_jitter, 1.0)
  size = tf.cast(short_side_shape(height, width, min_resize), tf.float32)
  resized_h = tf.maximum(tf.round(size[0] * h_scale), crop_size)
  resized_w = tf.maximum(tf.round(size[1] * w_scale), crop_size)
  region_h = _region(crop_size, height, resized_h)
  region_w = _region(crop_size, width, resized_w)
  top = tf.random.stateless_uniform([], seeds[2], 0, height - region_h + 1, dtype=tf.int32)
  left = tf.random.stateless_uniform([], seeds[3], 0, width - region_w + 1, dtype=tf.int32)
  return tf.stack([top, left, region_h, region_w])


def resize_region(region: tf.Tensor, crop_size: int) -> tf.Tensor:
  """u8[T,h,w,3] -> f32[T,S,S,3] in [0, 255]: bilinear, an exact copy when h = w = S."""
  out_shape = [region.shape[0], crop_size, crop_size, 3]
  shape = tf.shape(region)
  clip = tf.cond(
    tf.logical_and(tf.equal(shape[1], crop_size), tf.equal(shape[2], crop_size)),
    lambda: tf.cast(region, tf.float32),
    lambda: tf.image.resize(region, [crop_size, crop_size]),
  )
  return tf.ensure_shape(clip, out_shape)


def _region(crop_size: int, size: tf.Tensor, resized: tf.Tensor) -> tf.Tensor:
  """Source pixels under `crop_size` pixels of a side resized from `size` to `resized`."""
  ratio = tf.cast(size, tf.float32) / tf.cast(resized, tf.float32)
  return tf.clip_by_value(tf.cast(tf.round(crop_size * ratio), tf.int32), 1, size)


def normalise(frames: tf.Tensor, zero_centering: bool, max_value: float = 255.0) -> tf.Tensor:
  """[0, max_value] -> [-1, 1] (zero_centering, the ViT convention) or [0, 1]; f32."""
  frames = tf.cast(frames, tf.float32)
  # Division, not multiplication by a rounded reciprocal: 255 maps to exactly 1.
  if zero_centering:
    return frames / (max_value / 2.0) - 1.0
  return frames / max_value

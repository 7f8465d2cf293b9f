"""RandAugment for video: the same ops with the same strengths on every frame.

`num_layers` ops are drawn uniformly from `OPS` (with repetition) once per clip
and applied in turn to all frames; signed ops get a random sign per clip. The
strength follows the usual RandAugment convention, magnitude / 10 of each op's
range (`_MAX_LEVEL` = 10); larger magnitudes (the ViViT paper uses 15 and 20)
extrapolate, with the solarize threshold and posterize bits clipped to valid
values. Colour ops over the clip (auto-contrast, equalize) compute their
statistics over all frames so the clip stays consistent. Geometric ops fill
uncovered pixels with grey (0.5). Frames are f32[T,H,W,3] in [0, 1].
"""

from __future__ import annotations

import math

import tensorflow as tf

_MAX_LEVEL = 10.0
OPS = (
  'identity',
  'auto_contrast',
  'equalize',
  'rotate',
  'solarize',
  'color',
  'posterize',
  'contrast',
  'brightness',
  'sharpness',
  'shear_x',
  'shear_y',
  'translate_x',
  'translate_y',
)


def _blend(degenerate: tf.Tensor, clip: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  return tf.clip_by_value(degenerate + factor * (clip - degenerate), 0.0, 1.0)


def _grey(clip: tf.Tensor) -> tf.Tensor:
  return tf.tile(tf.image.rgb_to_grayscale(clip), [1, 1, 1, 3])


def _transform(clip: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
  """Warps all frames by a 3x3 matrix mapping output to input pixel coordinates."""
  flat = tf.reshape(matrix, [9])[:8] / matrix[2, 2]
  t = tf.shape(clip)[0]
  return tf.raw_ops.ImageProjectiveTransformV3(
    images=clip,
    transforms=tf.tile(flat[None], [t, 1]),
    output_shape=tf.shape(clip)[1:3],
    fill_value=0.5,
    interpolation='BILINEAR',
    fill_mode='CONSTANT',
  )


def _about_centre(clip: tf.Tensor, linear: tf.Tensor) -> tf.Tensor:
  shape = tf.cast(tf.shape(clip), tf.float32)
  cx, cy = (shape[2] - 1) / 2, (shape[1] - 1) / 2
  shift = tf.stack([[1.0, 0.0, cx], [0.0, 1.0, cy], [0.0, 0.0, 1.0]])
  back = tf.stack([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
  return _transform(clip, shift @ linear @ back)


def _rotate(clip: tf.Tensor, level: tf.Tensor) -> tf.Tensor:
  angle = level * (30.0 * math.pi / 180.0)
  c, s = tf.cos(angle), tf.sin(angle)
  return _about_centre(clip, tf.stack([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]))


def _shear(clip: tf.Tensor, level: tf.Tensor, axis: int) -> tf.Tensor:
  k = level * 0.3
  rows = [[1.0, k, 0.0], [0.0, 1.0, 0.0]] if axis == 0 else [[1.0, 0.0, 0.0], [k, 1.0, 0.0]]
  return _about_centre(clip, tf.stack([tf.stack(r) for r in rows] + [tf.constant([0.0, 0, 1])]))


def _translate(clip: tf.Tensor, level: tf.Tensor, axis: int) -> tf.Tensor:
  size = tf.cast(tf.shape(clip)[2 - axis], tf.float32)
  d = level * 0.45 * size
  dx, dy = (d, 0.0) if axis == 0 else (0.0, d)
  return _transform(clip, tf.stack([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]]))


def auto_contrast(clip: tf.Tensor) -> tf.Tensor:
  """Stretches each channel's range over the whole clip to [0, 1]."""
  low = tf.reduce_min(clip, axis=[0, 1, 2])
  high = tf.reduce_max(clip, axis=[0, 1, 2])
  scale = tf.where(high > low, 1.0 / tf.maximum(high - low, 1e-6), 1.0)
  offset = tf.where(high > low, low, 0.0)
  return tf.clip_by_value((clip - offset) * scale, 0.0, 1.0)


def equalize(clip: tf.Tensor) -> tf.Tensor:
  """Histogram equalisation per channel, with one histogram for the whole clip."""
  values = tf.cast(tf.round(clip * 255.0), tf.int32)
  channels = []
  for c in range(3):
    v = values[..., c]
    hist = tf.math.bincount(tf.reshape(v, [-1]), minlength=256, maxlength=256)
    cdf = tf.cast(tf.cumsum(hist), tf.float32)
    cdf_min = tf.reduce_min(tf.where(hist > 0, cdf, tf.reduce_max(cdf)))
    denom = tf.maximum(cdf[-1] - cdf_min, 1.0)
    lut = tf.clip_by_value((cdf - cdf_min) / denom, 0.0, 1.0)
    channels.append(tf.gather(lut, v))
  return tf.stack(channels, axis=-1)


def _sharpness(clip: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  kernel = tf.constant([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  blurred = tf.nn.depthwise_conv2d(clip, kernel, [1, 1, 1, 1], 'SAME')
  return _blend(blurred, clip, factor)


def apply_op(clip: tf.Tensor, op: str, level: tf.Tensor) -> tf.Tensor:
  """One op at `level` (magnitude / 10, already signed for signed ops)."""
  factor = 1.0 + level * 0.9
  strength = tf.abs(level)
  if op == 'identity':
    return clip
  if op == 'auto_contrast':
    return auto_contrast(clip)
  if op == 'equalize':
    return equalize(clip)
  if op == 'rotate':
    return _rotate(clip, level)
  if op == 'solarize':
    threshold = tf.clip_by_value(1.0 - strength, 0.0, 1.0)
    return tf.where(clip >= threshold, 1.0 - clip, clip)
  if op == 'color':
    return _blend(_grey(clip), clip, factor)
  if op == 'posterize':
    shift = tf.clip_by_value(tf.round(strength * 4.0), 0.0, 7.0)
    step = tf.pow(2.0, shift)
    return tf.floor(tf.round(clip * 255.0) / step) * step / 255.0
  if op == 'contrast':
    mean = tf.reduce_mean(tf.image.rgb_to_grayscale(clip))
    return _blend(tf.fill(tf.shape(clip), mean), clip, factor)
  if op == 'brightness':
    return _blend(tf.zeros_like(clip), clip, factor)
  if op == 'sharpness':
    return _sharpness(clip, factor)
  if op in ('shear_x', 'shear_y'):
    return _shear(clip, level, 0 if op == 'shear_x' else 1)
  if op in ('translate_x', 'translate_y'):
    return _translate(clip, level, 0 if op == 'translate_x' else 1)
  raise ValueError(f'Unknown RandAugment op {op!r}.')


def rand_augment(
  clip: tf.Tensor, *, num_layers: int, magnitude: float, seed: tf.Tensor
) -> tf.Tensor:
  """Applies `num_layers` random ops to every frame alike; f32[T,H,W,3] -> same."""
  seeds = tf.random.experimental.stateless_split(seed, num_layers * 2)
  strength = magnitude / _MAX_LEVEL
  for layer in range(num_layers):
    op_index = tf.random.stateless_uniform([], seeds[2 * layer], 0, len(OPS), dtype=tf.int32)
    sign = tf.where(tf.random.stateless_uniform([], seeds[2 * layer + 1]) < 0.5, -1.0, 1.0)
    level = sign * strength
    branches = [lambda op=op, x=clip, lv=level: apply_op(x, op, lv) for op in OPS]
    clip = tf.ensure_shape(tf.switch_case(op_index, branches), clip.shape)
  return clip

"""RandAugment for video as Scenic trains it: the same op on every frame, on uint8 pixels.

Scenic's `distort_image_with_randaugment` treats a clip u8[T,H,W,3] as one tall
image [T*H, W, 3] and runs TF Model Garden's image ops on it, so every frame
gets the same op and clip-wide statistics (auto-contrast, equalize, contrast).
Each of `num_layers` layers picks one of the 11 ops in `OPS` or the identity
uniformly (12 branches) and always applies it. The geometric ops (rotate,
shear, translate) are left out for video, as in Scenic.

Strengths follow Model Garden's `level_to_arg` with `_MAX_LEVEL` = 10 and no
random sign (`op_args`): the enhance ops (color, contrast, brightness,
sharpness) blend with factor 0.1 + 1.8 * M / 10, never negative, so no
magnitude turns a clip black or inverts it; posterize keeps int(4 * M / 10)
bits; solarize inverts pixels at or above int(256 * M / 10) (all of them at
M = 0, none from M = 10); solarize-add adds int(110 * M / 10) to pixels below
128; cutout blanks a square of half-side int(40 * M / 10), the same in every
frame, with 0 (Scenic's video cutout drops Model Garden's grey fill).

Two values Model Garden leaves undefined are made explicit: posterize with more
than 8 bits (M > 20) keeps all 8, and with 0 bits (M < 2.5) keeps none, which
blanks the clip, as the op means.

One deliberate deviation (`augmentation_params.rand_augment_contrast_pivot`):
Model Garden's contrast blends towards `pixel count / 256` clipped to 255, i.e.
towards white for any clip larger than 256 pixels, a known bug; the default
'mean' blends towards the clip's mean grey level, as PIL's contrast does;
'model_garden' reproduces the bug.
"""

from __future__ import annotations

import tensorflow as tf

_MAX_LEVEL = 10.0
OPS = (
  'auto_contrast',
  'equalize',
  'invert',
  'posterize',
  'solarize',
  'color',
  'contrast',
  'brightness',
  'sharpness',
  'cutout',
  'solarize_add',
)
CONTRAST_PIVOTS = ('mean', 'model_garden')
_CUTOUT_CONST = 40
_SOLARIZE_ADD_THRESHOLD = 128


def op_args(op: str, magnitude: float) -> float | int | None:
  """The op's argument at `magnitude`, as Model Garden's `level_to_arg` maps it."""
  level = magnitude / _MAX_LEVEL
  if op in ('color', 'contrast', 'brightness', 'sharpness'):
    return level * 1.8 + 0.1
  if op == 'posterize':
    return int(level * 4)
  if op == 'solarize':
    return int(level * 256)
  if op == 'solarize_add':
    return int(level * 110)
  if op == 'cutout':
    return int(level * _CUTOUT_CONST)
  if op in ('auto_contrast', 'equalize', 'invert', 'identity'):
    return None
  raise ValueError(f'Unknown RandAugment op {op!r}; expected one of {", ".join(OPS)}.')


def blend(degenerate: tf.Tensor, clip: tf.Tensor, factor: float) -> tf.Tensor:
  """Model Garden's blend: degenerate + factor * (clip - degenerate), truncated to uint8."""
  if factor == 0.0:
    return degenerate
  if factor == 1.0:
    return clip
  d = tf.cast(degenerate, tf.float32)
  mixed = d + factor * (tf.cast(clip, tf.float32) - d)
  # Inside (0, 1) the mix cannot leave [0, 255]; Model Garden clips only outside.
  if not 0.0 < factor < 1.0:
    mixed = tf.clip_by_value(mixed, 0.0, 255.0)
  return tf.cast(mixed, tf.uint8)


def _grey(clip: tf.Tensor) -> tf.Tensor:
  return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(clip))


def auto_contrast(clip: tf.Tensor) -> tf.Tensor:
  """Stretches each channel's range over the whole clip to [0, 255]."""
  x = tf.cast(clip, tf.float32)
  low = tf.reduce_min(x, axis=[0, 1, 2])
  high = tf.reduce_max(x, axis=[0, 1, 2])
  scale = 255.0 / tf.maximum(high - low, 1.0)
  stretched = tf.cast(tf.clip_by_value((x - low) * scale, 0.0, 255.0), tf.uint8)
  return tf.where(high > low, stretched, clip)


def equalize(clip: tf.Tensor) -> tf.Tensor:
  """Model Garden's histogram equalisation per channel, one histogram for the whole clip."""
  channels = []
  for c in range(3):
    v = tf.cast(clip[..., c], tf.int32)
    hist = tf.math.bincount(tf.reshape(v, [-1]), minlength=256, maxlength=256)
    # The count of the brightest value present is left out of the step.
    last = tf.gather(hist, tf.reduce_max(v))
    step = (tf.reduce_sum(hist) - last) // 255
    safe = tf.maximum(step, 1)
    lut = (tf.cumsum(hist) + safe // 2) // safe
    lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
    channels.append(tf.where(step > 0, tf.gather(lut, v), v))
  return tf.cast(tf.stack(channels, axis=-1), tf.uint8)


def posterize(clip: tf.Tensor, bits: int) -> tf.Tensor:
  """Keeps the top `bits` bits (clipped to [0, 8])."""
  shift = 8 - min(max(bits, 0), 8)
  if shift == 0:
    return clip
  if shift == 8:
    return tf.zeros_like(clip)
  return tf.bitwise.left_shift(tf.bitwise.right_shift(clip, shift), shift)


def solarize(clip: tf.Tensor, threshold: int) -> tf.Tensor:
  """Inverts the pixels at or above `threshold` (none from 256 up)."""
  if threshold > 255:
    return clip
  return tf.where(clip < max(threshold, 0), clip, 255 - clip)


def solarize_add(clip: tf.Tensor, addition: int) -> tf.Tensor:
  """Adds `addition` (saturating) to the pixels below 128."""
  added = tf.cast(tf.clip_by_value(tf.cast(clip, tf.int32) + addition, 0, 255), tf.uint8)
  return tf.where(clip < _SOLARIZE_ADD_THRESHOLD, added, clip)


def contrast(clip: tf.Tensor, factor: float, pivot: str = 'mean') -> tf.Tensor:
  """Blends with a uniform grey clip (see the module docstring for `pivot`)."""
  grey = tf.image.rgb_to_grayscale(clip)
  if pivot == 'mean':
    mean = tf.reduce_mean(tf.cast(grey, tf.float32))
  elif pivot == 'model_garden':
    mean = tf.minimum(tf.cast(tf.size(grey), tf.float32) / 256.0, 255.0)
  else:
    raise ValueError(f'Unknown contrast pivot {pivot!r}; expected one of {CONTRAST_PIVOTS}.')
  degenerate = tf.fill(tf.shape(clip), tf.cast(mean, tf.uint8))
  return blend(degenerate, clip, factor)


def sharpness(clip: tf.Tensor, factor: float) -> tf.Tensor:
  """Blends with a 3x3 smoothing of the tall [T*H, W] image; its border is kept."""
  t, h, w = clip.shape[0], tf.shape(clip)[1], tf.shape(clip)[2]
  tall = tf.reshape(clip, [1, -1, w, 3])
  kernel = tf.constant([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  smooth = tf.nn.depthwise_conv2d(tf.cast(tall, tf.float32), kernel, [1, 1, 1, 1], 'VALID')
  smooth = tf.cast(tf.clip_by_value(smooth, 0.0, 255.0), tf.uint8)
  smooth = tf.pad(smooth, [[0, 0], [1, 1], [1, 1], [0, 0]])
  rows, cols = tf.shape(tall)[1], tf.shape(tall)[2]
  inner_rows = tf.logical_and(tf.range(rows) > 0, tf.range(rows) < rows - 1)
  inner_cols = tf.logical_and(tf.range(cols) > 0, tf.range(cols) < cols - 1)
  inner = tf.logical_and(inner_rows[:, None], inner_cols[None, :])[None, :, :, None]
  degenerate = tf.reshape(tf.where(inner, smooth, tall), [-1 if t is None else t, h, w, 3])
  return blend(degenerate, clip, factor)


def cutout(clip: tf.Tensor, half: int, seed: tf.Tensor) -> tf.Tensor:
  """Sets a square of half-side `half` around a uniform centre to 0 in every frame."""
  h, w = tf.shape(clip)[1], tf.shape(clip)[2]
  s = tf.random.experimental.stateless_split(seed, 2)
  cy = tf.random.stateless_uniform([], s[0], 0, h, dtype=tf.int32)
  cx = tf.random.stateless_uniform([], s[1], 0, w, dtype=tf.int32)
  # [c - half, c + half), as Model Garden's padding arithmetic gives.
  rows = tf.logical_and(tf.range(h) >= cy - half, tf.range(h) < cy + half)
  cols = tf.logical_and(tf.range(w) >= cx - half, tf.range(w) < cx + half)
  mask = tf.logical_and(rows[:, None], cols[None, :])[None, :, :, None]
  return tf.where(mask, tf.zeros_like(clip), clip)


def apply_op(
  clip: tf.Tensor, op: str, magnitude: float, seed: tf.Tensor, contrast_pivot: str = 'mean'
) -> tf.Tensor:
  """One op at `magnitude` on u8[T,H,W,3]; `seed` int32[2] places the cutout."""
  arg = op_args(op, magnitude)
  if op == 'identity':
    return clip
  if op == 'auto_contrast':
    return auto_contrast(clip)
  if op == 'equalize':
    return equalize(clip)
  if op == 'invert':
    return 255 - clip
  if op == 'posterize':
    return posterize(clip, arg)
  if op == 'solarize':
    return solarize(clip, arg)
  if op == 'solarize_add':
    return solarize_add(clip, arg)
  if op == 'color':
    return blend(_grey(clip), clip, arg)
  if op == 'contrast':
    return contrast(clip, arg, contrast_pivot)
  if op == 'brightness':
    return blend(tf.zeros_like(clip), clip, arg)
  if op == 'sharpness':
    return sharpness(clip, arg)
  return cutout(clip, arg, seed)


def rand_augment(
  clip: tf.Tensor,
  *,
  num_layers: int,
  magnitude: float,
  seed: tf.Tensor,
  contrast_pivot: str = 'mean',
) -> tf.Tensor:
  """`num_layers` random ops, each the same on every frame; u8[T,H,W,3] -> same.

  Args:
    clip: u8[T,H,W,3] with static shape.
    num_layers: N, ops applied in turn.
    magnitude: M, the strength of every op.
    seed: int32[2].
    contrast_pivot: 'mean' or 'model_garden' (see the module docstring).

  Returns:
    u8[T,H,W,3].
  """
  if clip.dtype != tf.uint8:
    raise ValueError(f'rand_augment takes uint8 frames; got {clip.dtype}.')
  seeds = tf.random.experimental.stateless_split(seed, num_layers * 2)
  branches_ops = OPS + ('identity',)
  for layer in range(num_layers):
    index = tf.random.stateless_uniform([], seeds[2 * layer], 0, len(branches_ops), dtype=tf.int32)
    op_seed = seeds[2 * layer + 1]
    branches = [
      lambda op=op, x=clip, sd=op_seed: apply_op(x, op, magnitude, sd, contrast_pivot)
      for op in branches_ops
    ]
    clip = tf.ensure_shape(tf.switch_case(index, branches), clip.shape)
  return clip

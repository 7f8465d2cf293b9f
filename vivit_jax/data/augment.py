"""Train-time appearance augmentation, identical for every frame of a clip.

Random parameters are drawn once per clip, so the frames of a clip stay
consistent and motion is not confused with flicker.

- Color (`do_color_augment`), DMVR's `color_default_augm` as Scenic's K400
  recipe uses it: with probability `prob_color_augment`, on [0, 1] pixels,
  `random_brightness(32/255)`, `random_saturation(0.6, 1.4)`,
  `random_contrast(0.6, 1.4)` (pivot: each frame's per-channel mean) and
  `random_hue(0.2)` (a shift of up to 0.2 of the HSV hue circle), in that order,
  then a clip to [0, 1]; then, independently, grey scale with probability
  `prob_color_drop`. The HSV arithmetic is TensorFlow's `adjust_saturation` /
  `adjust_hue` (the tests compare with them), written out so that XLA fuses it
  with flip and normalisation into two passes: TensorFlow's own ops cost about
  8x as much on CPU.
- RandAugment (`do_rand_augment`): see `rand_augment.py`. Scenic applies at most
  one of RandAugment and color augmentation (`clip_spec.Augmentation` checks it).
- Random erasing (`do_random_erasing`, probability `prob_random_erasing`): one
  rectangle, the same in every frame, of 2% to 1/3 of the area and aspect ratio
  0.3 to 3.3, filled with uniform noise over the input range.

Flip, color and normalisation run as one XLA-compiled pass (`finish_clip`):
on CPU each separate pass over a clip costs about as much as decoding a few of
its frames.
"""

from __future__ import annotations

import math
import types
from typing import Any, NamedTuple

import tensorflow as tf

BRIGHTNESS = 32.0 / 255.0
SATURATION = (0.6, 1.4)
CONTRAST = (0.6, 1.4)
HUE = 0.2
# tf.image.rgb_to_grayscale's weights.
LUMA = (0.2989, 0.587, 0.114)

# A drawn color change travels with its clip as one f32[6] vector (a batch: f32[B, 6]);
# `ColorDraw` names its fields, in that order, wherever it is packed or read.
ColorTransform = tf.Tensor


class ColorDraw(NamedTuple):
  """The fields of a drawn color change (`color_transform`), in the vector's order.

  Each field is a scalar per clip, or whatever slice of a batch the reader takes.
  """

  apply: Any  # 1 if the jitter applies, else 0.
  brightness: Any  # delta added to every channel
  saturation: Any  # factor
  contrast: Any  # factor, about each frame's channel means
  hue: Any  # delta, in turns of the HSV hue circle
  drop: Any  # 1 if the clip turns grey, else 0.


class EraseBox(NamedTuple):
  """The fields of a drawn erasing rectangle (`erasing_box`), in the i32[5] vector's order."""

  erase: Any  # 1 if the clip is erased, else 0.
  top: Any
  left: Any
  height: Any
  width: Any


def color_transform(*, prob_color: float, prob_drop: float, seed: tf.Tensor) -> ColorTransform:
  """Draws one clip's color change as DMVR's `color_default_augm` does.

  Args:
    prob_color: probability of the jitter (brightness, saturation, contrast, hue).
    prob_drop: probability of turning the clip grey (independent of the jitter).
    seed: int32[2].

  Returns:
    f32[6]: the `ColorDraw` fields, in order.
  """
  s = tf.random.experimental.stateless_split(seed, 6)
  apply = tf.random.stateless_uniform([], s[0]) < prob_color
  brightness = tf.random.stateless_uniform([], s[1], -BRIGHTNESS, BRIGHTNESS)
  saturation = tf.random.stateless_uniform([], s[2], *SATURATION)
  contrast = tf.random.stateless_uniform([], s[3], *CONTRAST)
  hue = tf.random.stateless_uniform([], s[4], -HUE, HUE)
  drop = tf.random.stateless_uniform([], s[5]) < prob_drop
  draw = ColorDraw(
    apply=tf.cast(apply, tf.float32),
    brightness=brightness,
    saturation=saturation,
    contrast=contrast,
    hue=hue,
    drop=tf.cast(drop, tf.float32),
  )
  return tf.stack(draw)


# The HSV arithmetic below is written once for TensorFlow (the host pipeline)
# and jax.numpy (`device_augment`, in the train step): `ops` is a namespace with
# elementwise where, maximum, minimum and clip, and the color planes are
# separate arrays.
TF_OPS = types.SimpleNamespace(
  where=tf.where, maximum=tf.maximum, minimum=tf.minimum, clip=tf.clip_by_value
)
Planes = tuple[Any, Any, Any]


def _max_span(rgb: Planes, ops: Any) -> tuple[Any, Any]:
  r, g, b = rgb
  # Elementwise max/min of the three planes: XLA's CPU reductions over a
  # length-3 axis are far slower.
  v = ops.maximum(ops.maximum(r, g), b)
  return v, v - ops.minimum(ops.minimum(r, g), b)


def saturate(rgb: Planes, factor: Any, ops: Any) -> Planes:
  """tf.image.adjust_saturation without the HSV round trip, on color planes.

  Scaling HSV saturation s to s' = min(s * factor, 1) at fixed hue and value v
  moves every channel c to v - (v - c) * s' / s; a pixel with v <= 0 has s = 0
  and becomes grey (v, v, v), as in TensorFlow's kernel.
  """
  v, span = _max_span(rgb, ops)
  k = ops.where(span > 0, ops.minimum(factor, v / ops.maximum(span, 1e-12)), 1.0)
  k = ops.where(v > 0, k, 0.0)
  return tuple(v - (v - c) * k for c in rgb)


def shift_hue(rgb: Planes, delta: Any, ops: Any) -> Planes:
  """tf.image.adjust_hue on color planes: HSV hue + delta (mod 1) at fixed saturation
  and value."""
  r, g, b = rgb
  v, span = _max_span(rgb, ops)
  norm = 1.0 / (6.0 * ops.maximum(span, 1e-12))
  h = ops.where(
    r == v,
    norm * (g - b),
    ops.where(g == v, norm * (b - r) + 1 / 3, norm * (r - g) + 2 / 3),
  )
  h = ops.where(span > 0, h, 0.0) + delta
  # h is in (-1, 2): two conditional wraps instead of a (slow) floating mod.
  h = ops.where(h < 0, h + 1.0, h)
  h = ops.where(h >= 1, h - 1.0, h)
  chroma = ops.where(v > 0, span, 0.0)
  channels = []
  for n in (5.0, 3.0, 1.0):
    k = n + 6.0 * h
    k = ops.where(k >= 6, k - 6.0, k)
    channels.append(v - chroma * ops.clip(ops.minimum(k, 4.0 - k), 0.0, 1.0))
  return tuple(channels)


def _planes(x: tf.Tensor) -> Planes:
  return x[..., 0], x[..., 1], x[..., 2]


def _saturate(x: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  return tf.stack(saturate(_planes(x), factor, TF_OPS), axis=-1)


def _shift_hue(x: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
  return tf.stack(shift_hue(_planes(x), delta, TF_OPS), axis=-1)


def apply_color(clip: tf.Tensor, transform: ColorTransform, mean_stride: int = 1) -> tf.Tensor:
  """f32[T,H,W,3] in [0, 1] -> the same with a `color_transform` applied.

  `mean_stride` > 1 estimates the contrast pivot (each frame's channel means)
  from every mean_stride-th row and column, which saves a pass over the clip.
  """
  draw = ColorDraw(*tf.unstack(transform))
  brightness, saturation, contrast = draw.brightness, draw.saturation, draw.contrast
  x = _saturate(clip + brightness, saturation)
  sample = (
    x
    if mean_stride == 1
    else _saturate(clip[..., ::mean_stride, ::mean_stride, :] + brightness, saturation)
  )
  mean = tf.reduce_mean(sample, axis=[-3, -2], keepdims=True)
  x = _shift_hue((x - mean) * contrast + mean, draw.hue)
  x = tf.where(draw.apply > 0, tf.clip_by_value(x, 0.0, 1.0), clip)
  grey = x[..., :1] * LUMA[0] + x[..., 1:2] * LUMA[1] + x[..., 2:] * LUMA[2]
  return tf.where(draw.drop > 0, tf.broadcast_to(grey, tf.shape(x)), x)


# The contrast pivot (each frame's channel means) from every 4th row and
# column, which saves a pass; the tests bound its effect on smooth 32x32 frames
# by 3/255 (the error is (1 - contrast factor) times the mean's).
MEAN_STRIDE = 4


def _jitter(x: tf.Tensor, transform: tf.Tensor) -> tf.Tensor:
  draw = ColorDraw(*tf.unstack(transform))
  brightness, saturation = draw.brightness, draw.saturation
  sample = _saturate(x[..., ::MEAN_STRIDE, ::MEAN_STRIDE, :] + brightness, saturation)
  mean = tf.reduce_mean(sample, axis=[-3, -2], keepdims=True)
  x = _saturate(x + brightness, saturation)
  return tf.clip_by_value(_shift_hue((x - mean) * draw.contrast + mean, draw.hue), 0.0, 1.0)


def _grey3(x: tf.Tensor) -> tf.Tensor:
  grey = x[..., :1] * LUMA[0] + x[..., 1:2] * LUMA[1] + x[..., 2:] * LUMA[2]
  return tf.concat([grey, grey, grey], axis=-1)


@tf.function(jit_compile=True)
def _finish(
  clip: tf.Tensor,
  flip: tf.Tensor,
  transform: tf.Tensor,
  zero_centering: bool,
  jitter: bool,
  drop: bool,
) -> tf.Tensor:
  # One compiled pass per combination of the static switches, so that no clip
  # pays for color work it did not draw.
  clip = tf.cast(clip, tf.float32)
  clip = tf.where(flip, tf.reverse(clip, axis=[2]), clip)
  # Clipped so that float rounding cannot leave the range.
  x = tf.clip_by_value(clip * (1.0 / 255.0), 0.0, 1.0)
  if jitter:
    x = _jitter(x, transform)
  if drop:
    x = _grey3(x)
  return x * 2.0 - 1.0 if zero_centering else x


def finish_clip(
  clip: tf.Tensor,
  *,
  flip: tf.Tensor,
  color: ColorTransform | None,
  zero_centering: bool,
) -> tf.Tensor:
  """Flip, color change and normalisation in one compiled pass.

  Args:
    clip: u8[T,H,W,3] (or float in [0, 255]) with static shape.
    flip: bool[] mirror left-right.
    color: a `color_transform`, or None.
    zero_centering: output [-1, 1] rather than [0, 1].

  Returns:
    f32[T,H,W,3].
  """
  if color is None:
    return _finish(clip, flip, tf.zeros([6]), zero_centering, False, False)
  draw = ColorDraw(*tf.unstack(color))
  branch = tf.cast(draw.apply > 0, tf.int32) + 2 * tf.cast(draw.drop > 0, tf.int32)
  return tf.switch_case(
    branch,
    [
      lambda j=j, d=d: _finish(clip, flip, color, zero_centering, j, d)
      for d in (False, True)
      for j in (False, True)
    ],
  )


def erasing_box(height: tf.Tensor, width: tf.Tensor, prob: float, seed: tf.Tensor) -> tf.Tensor:
  """Draws one clip's random-erasing rectangle.

  Args:
    height, width: the clip's frame size.
    prob: probability of erasing.
    seed: int32[2] (the same as `random_erasing`'s).

  Returns:
    int32[5]: the `EraseBox` fields, in order: 2% to 1/3 of the area, aspect
    ratio 0.3 to 3.3.
  """
  s = tf.random.experimental.stateless_split(seed, 6)
  h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  area = tf.random.stateless_uniform([], s[0], 0.02, 1.0 / 3.0) * h * w
  log_ratio = tf.random.stateless_uniform([], s[1], math.log(0.3), math.log(1 / 0.3))
  ratio = tf.exp(log_ratio)
  eh = tf.cast(tf.clip_by_value(tf.round(tf.sqrt(area * ratio)), 1.0, h), tf.int32)
  ew = tf.cast(tf.clip_by_value(tf.round(tf.sqrt(area / ratio)), 1.0, w), tf.int32)
  top = tf.random.stateless_uniform([], s[2], 0, height - eh + 1, dtype=tf.int32)
  left = tf.random.stateless_uniform([], s[3], 0, width - ew + 1, dtype=tf.int32)
  erase = tf.cast(tf.random.stateless_uniform([], s[5]) < prob, tf.int32)
  return tf.stack(EraseBox(erase=erase, top=top, left=left, height=eh, width=ew))


def random_erasing(
  clip: tf.Tensor, prob: float, seed: tf.Tensor, low: float = 0.0, high: float = 1.0
) -> tf.Tensor:
  """Fills one random rectangle (same in all frames) with noise in [low, high).

  Args:
    clip: f32[T,H,W,3].
    prob: probability of erasing.
    seed: int32[2].
    low: noise minimum (the input range's).
    high: noise maximum.

  Returns:
    f32[T,H,W,3].
  """
  shape = tf.shape(clip)
  box = EraseBox(*tf.unstack(erasing_box(shape[1], shape[2], prob, seed)))
  rows = tf.range(shape[1])
  rows = tf.logical_and(rows >= box.top, rows < box.top + box.height)
  cols = tf.range(shape[2])
  cols = tf.logical_and(cols >= box.left, cols < box.left + box.width)
  mask = tf.logical_and(rows[:, None], cols[None, :])[None, :, :, None]
  noise_seed = tf.random.experimental.stateless_split(seed, 6)[4]
  noise = tf.random.stateless_uniform(tf.shape(clip[:1]), noise_seed, low, high)
  erased = tf.where(mask, noise, clip)
  return tf.cond(box.erase > 0, lambda: erased, lambda: clip)


@tf.function(jit_compile=True)
def to_uint8(clip: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
  """f32 in [0, 255] (or u8) [T,H,W,3] -> u8, rounded and mirrored left-right if `flip`.

  The host's part of a train clip with `augment_on_device`: one compiled pass.
  """
  clip = tf.where(flip, tf.reverse(clip, axis=[2]), clip)
  if clip.dtype == tf.uint8:
    return clip
  return tf.cast(tf.clip_by_value(tf.round(clip), 0.0, 255.0), tf.uint8)

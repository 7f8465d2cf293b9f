"""Train-time appearance augmentation, identical for every frame of a clip.

Random parameters are drawn once per clip, so the frames of a clip stay
consistent and motion is not confused with flicker.

- Colour (`do_color_augment`), DMVR's `color_default_augm` as Scenic's K400
  recipe uses it: with probability `prob_color_augment`, on [0, 1] pixels,
  `random_brightness(32/255)`, `random_saturation(0.6, 1.4)`,
  `random_contrast(0.6, 1.4)` (pivot: each frame's per-channel mean) and
  `random_hue(0.2)` (a shift of up to 0.2 of the HSV hue circle), in that order,
  then a clip to [0, 1]; then, independently, grey scale with probability
  `prob_color_drop`. The HSV arithmetic is TensorFlow's `adjust_saturation` /
  `adjust_hue`, written out so that XLA fuses it with flip and normalisation.
- RandAugment (`do_rand_augment`): see `rand_augment.py`. Scenic applies at most
  one of RandAugment and colour augmentation (`check_augmentation`).
- Random erasing (`do_random_erasing`, probability `prob_random_erasing`): one
  rectangle, the same in every frame, of 2% to 1/3 of the area and aspect ratio
  0.3 to 3.3, filled with uniform noise over the input range.

Flip, colour and normalisation run as one XLA-compiled pass (`finish_clip`):
on CPU each separate pass over a clip costs about as much as decoding a few of
its frames.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

BRIGHTNESS = 32.0 / 255.0
SATURATION = (0.6, 1.4)
CONTRAST = (0.6, 1.4)
HUE = 0.2
# tf.image.rgb_to_grayscale's weights.
_LUMA = (0.2989, 0.587, 0.114)

# (apply f32[], brightness delta, saturation factor, contrast factor, hue delta, drop f32[]).
ColourTransform = tf.Tensor


def check_augmentation(aug: Mapping[str, Any]) -> None:
  """Raises ConfigError when RandAugment and colour augmentation are both on.

  Scenic applies at most one of them (it warns and keeps RandAugment); asking
  for both is a config mistake, so it stops here naming the keys.
  """
  from vivit_jax.config import ConfigError

  if aug.get('do_rand_augment') and aug.get('do_color_augment'):
    raise ConfigError(
      'dataset_configs.augmentation_params.do_rand_augment and .do_color_augment are both True; '
      'Scenic applies only one of them. Set one to False (the paper uses RandAugment for SSv2 '
      'and EPIC-Kitchens, colour augmentation for Kinetics).'
    )
  pivot = aug.get('rand_augment_contrast_pivot', 'mean')
  if pivot not in ('mean', 'model_garden'):
    raise ConfigError(
      'dataset_configs.augmentation_params.rand_augment_contrast_pivot is '
      f"{pivot!r}; expected 'mean' or 'model_garden'."
    )


def colour_transform(*, prob_color: float, prob_drop: float, seed: tf.Tensor) -> ColourTransform:
  """Draws one clip's colour change as DMVR's `color_default_augm` does.

  Args:
    prob_color: probability of the jitter (brightness, saturation, contrast, hue).
    prob_drop: probability of turning the clip grey (independent of the jitter).
    seed: int32[2].

  Returns:
    f32[6]: (apply, brightness delta, saturation factor, contrast factor, hue
    delta, drop), apply and drop 0 or 1.
  """
  s = tf.random.experimental.stateless_split(seed, 6)
  apply = tf.random.stateless_uniform([], s[0]) < prob_color
  brightness = tf.random.stateless_uniform([], s[1], -BRIGHTNESS, BRIGHTNESS)
  saturation = tf.random.stateless_uniform([], s[2], *SATURATION)
  contrast = tf.random.stateless_uniform([], s[3], *CONTRAST)
  hue = tf.random.stateless_uniform([], s[4], -HUE, HUE)
  drop = tf.random.stateless_uniform([], s[5]) < prob_drop
  flags = [tf.cast(apply, tf.float32), tf.cast(drop, tf.float32)]
  return tf.stack([flags[0], brightness, saturation, contrast, hue, flags[1]])


def _to_hsv(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """TensorFlow's rgb_to_hsv of the adjust ops, elementwise (any real values)."""
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  v = tf.maximum(tf.maximum(r, g), b)
  span = v - tf.minimum(tf.minimum(r, g), b)
  s = tf.where(v > 0, span / tf.where(v > 0, v, 1.0), 0.0)
  norm = 1.0 / (6.0 * tf.where(span > 0, span, 1.0))
  h = tf.where(
    tf.equal(r, v),
    norm * (g - b),
    tf.where(tf.equal(g, v), norm * (b - r) + 1 / 3, norm * (r - g) + 2 / 3),
  )
  h = tf.where(span > 0, h, 0.0)
  h = tf.where(h < 0, h + 1.0, h)
  return h, s, v


def _from_hsv(h: tf.Tensor, s: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
  """hsv_to_rgb: channel n is v - v s clip(min(k, 4 - k), 0, 1), k = (n + 6 h) mod 6."""
  channels = []
  for n in (5.0, 3.0, 1.0):
    k = tf.math.floormod(n + 6.0 * h, 6.0)
    channels.append(v - v * s * tf.clip_by_value(tf.minimum(k, 4.0 - k), 0.0, 1.0))
  return tf.stack(channels, axis=-1)


def apply_colour(clip: tf.Tensor, transform: ColourTransform) -> tf.Tensor:
  """f32[T,H,W,3] in [0, 1] -> the same with a `colour_transform` applied."""
  apply, brightness, saturation, contrast, hue, drop = tf.unstack(transform)
  x = clip + brightness
  h, s, v = _to_hsv(x)
  x = _from_hsv(h, tf.clip_by_value(s * saturation, 0.0, 1.0), v)
  mean = tf.reduce_mean(x, axis=[-3, -2], keepdims=True)
  x = (x - mean) * contrast + mean
  h, s, v = _to_hsv(x)
  x = _from_hsv(tf.math.floormod(h + hue, 1.0), s, v)
  x = tf.where(apply > 0, tf.clip_by_value(x, 0.0, 1.0), clip)
  grey = x[..., :1] * _LUMA[0] + x[..., 1:2] * _LUMA[1] + x[..., 2:] * _LUMA[2]
  return tf.where(drop > 0, tf.broadcast_to(grey, tf.shape(x)), x)


def color_augment(
  clip: tf.Tensor, *, prob_color: float, prob_drop: float, seed: tf.Tensor
) -> tf.Tensor:
  """Colour jitter and colour drop of a clip f32[T,H,W,3] in [0, 1]."""
  transform = colour_transform(prob_color=prob_color, prob_drop=prob_drop, seed=seed)
  return apply_colour(clip, transform)


@tf.function(jit_compile=True)
def _finish_plain(clip: tf.Tensor, flip: tf.Tensor, zero_centering: bool) -> tf.Tensor:
  clip = tf.cast(clip, tf.float32)
  clip = tf.where(flip, tf.reverse(clip, axis=[2]), clip)
  # Clipped so that float rounding cannot leave the range.
  unit = tf.clip_by_value(clip * (1.0 / 255.0), 0.0, 1.0)
  return unit * 2.0 - 1.0 if zero_centering else unit


@tf.function(jit_compile=True)
def _finish_colour(
  clip: tf.Tensor, flip: tf.Tensor, transform: tf.Tensor, zero_centering: bool
) -> tf.Tensor:
  clip = tf.cast(clip, tf.float32)
  clip = tf.where(flip, tf.reverse(clip, axis=[2]), clip)
  unit = tf.clip_by_value(clip * (1.0 / 255.0), 0.0, 1.0)
  clip = apply_colour(unit, transform)
  return clip * 2.0 - 1.0 if zero_centering else clip


def finish_clip(
  clip: tf.Tensor,
  *,
  flip: tf.Tensor,
  colour: ColourTransform | None,
  zero_centering: bool,
) -> tf.Tensor:
  """Flip, colour change and normalisation in one compiled pass.

  Args:
    clip: u8[T,H,W,3] (or float in [0, 255]) with static shape.
    flip: bool[] mirror left-right.
    colour: a `colour_transform`, or None.
    zero_centering: output [-1, 1] rather than [0, 1].

  Returns:
    f32[T,H,W,3].
  """
  if colour is None:
    return _finish_plain(clip, flip, zero_centering)
  return _finish_colour(clip, flip, colour, zero_centering)


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
  s = tf.random.experimental.stateless_split(seed, 6)
  shape = tf.shape(clip)
  h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
  area = tf.random.stateless_uniform([], s[0], 0.02, 1.0 / 3.0) * h * w
  log_ratio = tf.random.stateless_uniform([], s[1], math.log(0.3), math.log(1 / 0.3))
  ratio = tf.exp(log_ratio)
  eh = tf.cast(tf.clip_by_value(tf.round(tf.sqrt(area * ratio)), 1.0, h), tf.int32)
  ew = tf.cast(tf.clip_by_value(tf.round(tf.sqrt(area / ratio)), 1.0, w), tf.int32)
  top = tf.random.stateless_uniform([], s[2], 0, shape[1] - eh + 1, dtype=tf.int32)
  left = tf.random.stateless_uniform([], s[3], 0, shape[2] - ew + 1, dtype=tf.int32)
  rows = tf.logical_and(tf.range(shape[1]) >= top, tf.range(shape[1]) < top + eh)
  cols = tf.logical_and(tf.range(shape[2]) >= left, tf.range(shape[2]) < left + ew)
  mask = tf.logical_and(rows[:, None], cols[None, :])[None, :, :, None]
  noise = tf.random.stateless_uniform(tf.shape(clip[:1]), s[4], low, high)
  erased = tf.where(mask, noise, clip)
  return tf.cond(tf.random.stateless_uniform([], s[5]) < prob, lambda: erased, lambda: clip)

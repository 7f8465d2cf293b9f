"""Train-time appearance augmentation, identical for every frame of a clip.

Random parameters are drawn once per clip, so the frames of a clip stay
consistent and motion is not confused with flicker.

- Colour (`do_color_augment`, with probability `prob_color_augment`):
  brightness +-0.125, contrast x[0.6, 1.4] about the clip's mean colour,
  saturation x[0.6, 1.4] and a hue rotation of +-0.1 turns (in YIQ space);
  then, independently, colour drop (grey scale) with probability
  `prob_color_drop`. All of it is one affine map and one 3x3 colour matrix.
- RandAugment (`do_rand_augment`): see `rand_augment.py`.
- Random erasing (`do_random_erasing`, probability `prob_random_erasing`): one
  rectangle, the same in every frame, of 2% to 1/3 of the area and aspect ratio
  0.3 to 3.3, filled with uniform noise over the input range.

Flip, colour and normalisation run as one XLA-compiled elementwise pass
(`finish_clip`): on CPU each separate pass over a clip costs about as much as
decoding a few of its frames.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

BRIGHTNESS = 0.125
CONTRAST = (0.6, 1.4)
SATURATION = (0.6, 1.4)
HUE = 0.1
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_GREY = np.tile(_LUMA, (3, 1))
_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_FROM_YIQ = np.linalg.inv(_TO_YIQ).astype(np.float32)
_TO_YIQ = _TO_YIQ.astype(np.float32)

ColourTransform = tuple[tf.Tensor, tf.Tensor, tf.Tensor]


def colour_transform(
  mean: tf.Tensor, *, prob_color: float, prob_drop: float, seed: tf.Tensor
) -> ColourTransform:
  """Draws one clip's colour change: x -> clip01(M @ clip01(scale * x + offset)).

  Args:
    mean: f32[3] the clip's mean colour in [0, 1] (the contrast pivot).
    prob_color: probability of the jitter (brightness, contrast, saturation, hue).
    prob_drop: probability of turning the clip grey.
    seed: int32[2].

  Returns:
    (scale f32[], offset f32[3], matrix f32[3,3]) for pixels in [0, 1].
  """
  s = tf.random.experimental.stateless_split(seed, 6)
  apply = tf.random.stateless_uniform([], s[0]) < prob_color
  brightness = tf.random.stateless_uniform([], s[1], -BRIGHTNESS, BRIGHTNESS)
  contrast = tf.random.stateless_uniform([], s[2], *CONTRAST)
  saturation = tf.random.stateless_uniform([], s[3], *SATURATION)
  angle = tf.random.stateless_uniform([], s[4], -HUE, HUE) * (2 * math.pi)
  cos, sin = tf.cos(angle), tf.sin(angle)
  rotation = tf.stack([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
  hue = _FROM_YIQ @ rotation @ _TO_YIQ
  sat = saturation * tf.eye(3) + (1.0 - saturation) * _GREY
  matrix = tf.where(apply, hue @ sat, tf.eye(3))
  scale = tf.where(apply, contrast, 1.0)
  offset = tf.where(apply, (1.0 - contrast) * mean + brightness, tf.zeros([3]))
  drop = tf.random.stateless_uniform([], s[5]) < prob_drop
  matrix = tf.where(drop, _GREY @ matrix, matrix)
  return scale, offset, matrix


def apply_colour(clip: tf.Tensor, transform: ColourTransform) -> tf.Tensor:
  """f32[T,H,W,3] in [0, 1] -> the same with the colour transform applied."""
  scale, offset, matrix = transform
  x = tf.clip_by_value(clip * scale + offset, 0.0, 1.0)
  return tf.clip_by_value(tf.einsum('thwc,dc->thwd', x, matrix), 0.0, 1.0)


def color_augment(
  clip: tf.Tensor, *, prob_color: float, prob_drop: float, seed: tf.Tensor
) -> tf.Tensor:
  """Colour jitter and colour drop of a clip f32[T,H,W,3] in [0, 1]."""
  mean = tf.reduce_mean(clip, axis=[0, 1, 2])
  transform = colour_transform(mean, prob_color=prob_color, prob_drop=prob_drop, seed=seed)
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
  clip: tf.Tensor,
  flip: tf.Tensor,
  scale: tf.Tensor,
  offset: tf.Tensor,
  matrix: tf.Tensor,
  zero_centering: bool,
) -> tf.Tensor:
  clip = tf.cast(clip, tf.float32)
  clip = tf.where(flip, tf.reverse(clip, axis=[2]), clip)
  clip = apply_colour(clip * (1.0 / 255.0), (scale, offset, matrix))
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
  return _finish_colour(clip, flip, *colour, zero_centering)


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

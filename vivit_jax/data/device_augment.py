"""The train step's part of the augmentation with `dataset_configs.augment_on_device`.

With that switch, the host sends train clips as uint8 pixels (decoded, cropped,
resized and rounded, flipped, RandAugmented) together with what it drew for
each clip: the colour change (`augment.colour_transform`, f32[6]) and the
random-erasing box (`augment.erasing_box`, i32[5]). `DeviceAugment` turns such
a batch into model inputs inside the jitted train step, so the same XLA program
runs on CPU, GPU and TPU:

  pixels / 255 -> colour change (DMVR's `color_default_augm`: brightness,
  saturation, contrast, hue, clip to [0, 1]; then colour drop) ->
  [-1, 1] (zero_centering) or [0, 1] -> random erasing.

It is the arithmetic of `augment.finish_clip` and `augment.random_erasing`
with two differences: the contrast pivot is each frame's exact channel mean
(the host estimates it from every 4th row and column to save a pass), and the
erasing noise comes from the train step's random key rather than TensorFlow's.
What a clip gets (which colour change, which box) is drawn on the host from
the clip's seed, as without the switch, so the stream of augmentations is the
same and resumes exactly.

Why: on CPU hosts the float pass (colour in particular) costs about as much as
decoding the JPEG frames, while an accelerator does it in microseconds, and
uint8 batches are a quarter of the bytes to copy to the devices. On a CPU-only
machine the work moves onto the same cores, where XLA does it more slowly than
tf.data: leave the switch off there (docs/data.md has the measurements).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from vivit_jax.data import augment
from vivit_jax.data.clip_spec import ClipSpec


def _max_min(r: jax.Array, g: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  v = jnp.maximum(jnp.maximum(r, g), b)
  return v, v - jnp.minimum(jnp.minimum(r, g), b)


def _saturate(rgb: tuple[jax.Array, ...], factor: jax.Array) -> tuple[jax.Array, ...]:
  """tf.image.adjust_saturation, written as `augment._saturate` is."""
  v, span = _max_min(*rgb)
  k = jnp.where(span > 0, jnp.minimum(factor, v / jnp.maximum(span, 1e-12)), 1.0)
  k = jnp.where(v > 0, k, 0.0)
  return tuple(v - (v - c) * k for c in rgb)


def _shift_hue(rgb: tuple[jax.Array, ...], delta: jax.Array) -> tuple[jax.Array, ...]:
  """tf.image.adjust_hue, written as `augment._shift_hue` is."""
  r, g, b = rgb
  v, span = _max_min(r, g, b)
  norm = 1.0 / (6.0 * jnp.maximum(span, 1e-12))
  h = jnp.where(
    r == v, norm * (g - b), jnp.where(g == v, norm * (b - r) + 1 / 3, norm * (r - g) + 2 / 3)
  )
  h = jnp.where(span > 0, h, 0.0) + delta
  h = jnp.where(h < 0, h + 1.0, h)
  h = jnp.where(h >= 1, h - 1.0, h)
  chroma = jnp.where(v > 0, span, 0.0)
  out = []
  for n in (5.0, 3.0, 1.0):
    k = n + 6.0 * h
    k = jnp.where(k >= 6, k - 6.0, k)
    out.append(v - chroma * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0))
  return tuple(out)


def apply_colour(x: jax.Array, colour: jax.Array) -> jax.Array:
  """f32[B,T,H,W,3] in [0, 1] with each clip's `augment.colour_transform` f32[B,6] applied."""
  # [B] -> [B,1,1,1], to broadcast over the [B,T,H,W] colour planes.
  apply, brightness, saturation, contrast, hue, drop = (
    colour[:, i, None, None, None] for i in range(6)
  )
  rgb = (x[..., 0], x[..., 1], x[..., 2])
  jittered = _saturate(tuple(c + brightness for c in rgb), saturation)
  means = [jnp.mean(c, axis=(2, 3), keepdims=True) for c in jittered]
  jittered = _shift_hue(
    tuple((c - m) * contrast + m for c, m in zip(jittered, means, strict=True)), hue
  )
  rgb = tuple(
    jnp.where(apply > 0, jnp.clip(j, 0.0, 1.0), c) for j, c in zip(jittered, rgb, strict=True)
  )
  luma = augment.LUMA
  grey = rgb[0] * luma[0] + rgb[1] * luma[1] + rgb[2] * luma[2]
  return jnp.stack([jnp.where(drop > 0, grey, c) for c in rgb], axis=-1)


def erase(x: jax.Array, box: jax.Array, rng: jax.Array, low: float, high: float) -> jax.Array:
  """Fills each clip's `augment.erasing_box` i32[B,5] with uniform noise in [low, high).

  The noise f32[B,1,H,W,3] is the same in every frame of a clip, as on the host.
  """
  b, _, h, w, c = x.shape
  erase_it, top, left, eh, ew = (box[:, i, None, None] for i in range(5))
  rows = jnp.arange(h)[None, :, None]
  cols = jnp.arange(w)[None, None, :]
  inside = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
  mask = (inside & (erase_it > 0))[:, None, :, :, None]
  noise = jax.random.uniform(rng, (b, 1, h, w, c), minval=low, maxval=high)
  return jnp.where(mask, noise, x)


@dataclasses.dataclass(frozen=True)
class DeviceAugment:
  """Train batches from the host -> model inputs, inside the train step.

  Attributes:
    zero_centering: inputs in [-1, 1] rather than [0, 1].
    colour: the batches carry colour changes to apply (`do_color_augment`).
    erasing: the batches carry erasing boxes (`do_random_erasing`).
  """

  zero_centering: bool
  colour: bool
  erasing: bool

  @classmethod
  def from_spec(cls, spec: ClipSpec) -> DeviceAugment | None:
    """The device work `spec`'s train batches need, or None without `augment_on_device`."""
    if not spec.augment_on_device:
      return None
    aug = spec.augmentation
    return cls(spec.zero_centering, aug.do_color_augment, aug.do_random_erasing)

  def __call__(self, batch: dict[str, jax.Array], rng: jax.Array) -> jax.Array:
    """{'inputs': u8[B,T,H,W,3], 'colour': f32[B,6], 'erase': i32[B,5]} -> f32[B,T,H,W,3].

    `rng` draws the erasing noise (unused without erasing).
    """
    # Clipped so that float rounding cannot leave the range, as on the host.
    x = jnp.clip(batch['inputs'].astype(jnp.float32) * (1.0 / 255.0), 0.0, 1.0)
    if self.colour:
      x = apply_colour(x, batch['colour'])
    low = 0.0
    if self.zero_centering:
      x, low = x * 2.0 - 1.0, -1.0
    if self.erasing:
      x = erase(x, batch['erase'], rng, low, 1.0)
    return x

  def host_batch_inputs(self, batch: dict[str, jax.Array], rng: jax.Array) -> jax.Array:
    """A host train batch [D,B,...] -> its model inputs f32[D,B,T,H,W,3] (on the default
    device), as the train step makes them: for tools that show or time them."""
    keys = ('inputs', 'colour', 'erase')
    return _host_batch_inputs(self, {k: batch[k] for k in keys}, rng)


@functools.partial(jax.jit, static_argnums=0)
def _host_batch_inputs(
  augment: DeviceAugment, batch: dict[str, jax.Array], rng: jax.Array
) -> jax.Array:
  shape = batch['inputs'].shape
  flat = {k: v.reshape(shape[0] * shape[1], *v.shape[2:]) for k, v in batch.items()}
  return augment(flat, rng).reshape(shape)

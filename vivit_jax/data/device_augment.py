"""The train step's part of the augmentation with `dataset_configs.augment_on_device`.

With that switch the host decodes, samples, crops and flips train clips and
draws every random choice from the clip's seed, as without it, and sends uint8
pixels with what it drew: the color change (`augment.color_transform`,
f32[6]) and the random-erasing box (`augment.erasing_box`, i32[5]). Without
RandAugment (`ClipSpec.device_resize`) it sends the crop window itself, padded
to a fixed size with zeros, with the window's size ('window', i32[2]), and
the resize runs here too; RandAugment works on the resized clip, so with it
the host resizes and rounds to uint8. `DeviceAugment` turns such a batch into model
inputs inside the jitted train step, the same XLA program on CPU, GPU and TPU:

  (bilinear resize of the window) -> pixels / 255 -> color change (DMVR's
  `color_default_augm`: brightness, saturation, contrast, hue, clip to [0, 1];
  then color drop) -> [-1, 1] (zero_centering) or [0, 1] -> random erasing.

It is the arithmetic of `video_ops.resize_region`, `augment.finish_clip` and
`augment.random_erasing` with two differences: the contrast pivot is each
frame's exact channel mean (the host estimates it from every 4th row and
column to save a pass), and the erasing noise comes from the train step's
random key rather than TensorFlow's. Which color change, box, window and flip
a clip gets is drawn on the host as without the switch, so the stream of
augmentations is the same and resumes exactly.

Why: on CPU hosts the resize and the float pass (color in particular) cost
more than decoding the JPEG frames, while on an accelerator they are a small
fraction of a train step (by operation count: about 5 GFLOP a clip for the
resize against about 840 for a ViViT-B step), and uint8 windows are about a
third of the bytes to copy to the devices. On a CPU-only machine the work
moves onto the same cores, where XLA does it more slowly than tf.data (the
resize as two small matrix products per frame): leave the switch off there
(docs/data.md has the measurements).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from vivit_jax.data import augment
from vivit_jax.data.clip_spec import ClipSpec


def apply_color(x: jax.Array, color: jax.Array) -> jax.Array:
  """f32[B,T,H,W,3] in [0, 1] with each clip's `augment.color_transform` f32[B,6] applied."""
  # Each field [B] -> [B,1,1,1], to broadcast over the [B,T,H,W] color planes.
  fields = range(len(augment.ColorDraw._fields))
  draw = augment.ColorDraw(*(color[:, i, None, None, None] for i in fields))
  rgb = (x[..., 0], x[..., 1], x[..., 2])
  jittered = augment.saturate(tuple(c + draw.brightness for c in rgb), draw.saturation, jnp)
  means = [jnp.mean(c, axis=(2, 3), keepdims=True) for c in jittered]
  contrasted = tuple((c - m) * draw.contrast + m for c, m in zip(jittered, means, strict=True))
  jittered = augment.shift_hue(contrasted, draw.hue, jnp)
  rgb = tuple(
    jnp.where(draw.apply > 0, jnp.clip(j, 0.0, 1.0), c) for j, c in zip(jittered, rgb, strict=True)
  )
  luma = augment.LUMA
  grey = rgb[0] * luma[0] + rgb[1] * luma[1] + rgb[2] * luma[2]
  return jnp.stack([jnp.where(draw.drop > 0, grey, c) for c in rgb], axis=-1)


def erase(x: jax.Array, box: jax.Array, rng: jax.Array, low: float, high: float) -> jax.Array:
  """Fills each clip's `augment.erasing_box` i32[B,5] with uniform noise in [low, high).

  The noise f32[B,1,H,W,3] is the same in every frame of a clip, as on the host.
  """
  b, _, h, w, c = x.shape
  fields = range(len(augment.EraseBox._fields))
  drawn = augment.EraseBox(*(box[:, i, None, None] for i in fields))  # each [B,1,1]
  rows = jnp.arange(h)[None, :, None]
  cols = jnp.arange(w)[None, None, :]
  inside = (
    (rows >= drawn.top)
    & (rows < drawn.top + drawn.height)
    & (cols >= drawn.left)
    & (cols < drawn.left + drawn.width)
  )
  mask = (inside & (drawn.erase > 0))[:, None, :, :, None]
  noise = jax.random.uniform(rng, (b, 1, h, w, c), minval=low, maxval=high)
  return jnp.where(mask, noise, x)


def resize(windows: jax.Array, sizes: jax.Array, side: int) -> jax.Array:
  """Bilinear resize of each clip's window to side x side, as `tf.image.resize` does it.

  Args:
    windows: [B,T,M,M,3] (u8 or float); clip b's window is its top-left
      `sizes[b]` pixels (the rest is padding).
    sizes: i32[B,2], each window's (height, width).
    side: the output side S.

  Returns:
    f32[B,T,S,S,3]. Half-pixel centres, no antialiasing, samples clamped to the
    window's edge; a window of S x S comes back unchanged.
  """

  def one(window: jax.Array, size: jax.Array) -> jax.Array:
    # Clamped indices: past the window, rows and columns repeat its last ones,
    # as TensorFlow clamps the samples that fall beyond the edge.
    rows = jnp.minimum(jnp.arange(window.shape[1]), size[0] - 1)
    cols = jnp.minimum(jnp.arange(window.shape[2]), size[1] - 1)
    window = window[:, rows][:, :, cols].astype(jnp.float32)
    shape = (window.shape[0], side, side, window.shape[-1])
    scale = side / size.astype(jnp.float32)
    return jax.image.scale_and_translate(
      window, shape, (1, 2), scale, jnp.zeros(2), method='linear', antialias=False
    )

  return jax.vmap(one)(windows, sizes)


@dataclasses.dataclass(frozen=True)
class DeviceAugment:
  """Train batches from the host -> model inputs, inside the train step.

  Attributes:
    zero_centering: inputs in [-1, 1] rather than [0, 1].
    color: the batches carry color changes to apply (`do_color_augment`).
    erasing: the batches carry erasing boxes (`do_random_erasing`).
    resize_to: the batches carry crop windows with their 'window' sizes, to be
      resized to this side (`ClipSpec.device_resize`); None: already resized.
  """

  zero_centering: bool
  color: bool
  erasing: bool
  resize_to: int | None

  @classmethod
  def from_spec(cls, spec: ClipSpec) -> DeviceAugment | None:
    """The device work `spec`'s train batches need, or None without `augment_on_device`."""
    if not spec.augment_on_device:
      return None
    aug = spec.augmentation
    resize_to = spec.crop_size if spec.device_resize else None
    return cls(spec.zero_centering, aug.do_color_augment, aug.do_random_erasing, resize_to)

  def __call__(self, batch: dict[str, jax.Array], rng: jax.Array) -> jax.Array:
    """{'inputs': u8[B,T,H,W,3], 'color': f32[B,6], 'erase': i32[B,5], ('window':
    i32[B,2])} -> f32[B,T,S,S,3].

    `rng` draws the erasing noise (unused without erasing).
    """
    x = batch['inputs']
    if self.resize_to is not None:
      x = resize(x, batch['window'], self.resize_to)
    x = x.astype(jnp.float32)
    # Clipped so that float rounding cannot leave the range, as on the host.
    x = jnp.clip(x * (1.0 / 255.0), 0.0, 1.0)
    if self.color:
      x = apply_color(x, batch['color'])
    low = 0.0
    if self.zero_centering:
      x, low = x * 2.0 - 1.0, -1.0
    if self.erasing:
      x = erase(x, batch['erase'], rng, low, 1.0)
    return x

  def host_batch_inputs(self, batch: dict[str, jax.Array], rng: jax.Array) -> jax.Array:
    """A host train batch [D,B,...] -> its model inputs f32[D,B,T,H,W,3] (on the default
    device), as the train step makes them: for tools that show or time them."""
    keys = ('inputs', 'color', 'erase', 'window')
    return _host_batch_inputs(self, {k: batch[k] for k in keys if k in batch}, rng)


@functools.partial(jax.jit, static_argnums=0)
def _host_batch_inputs(
  augment: DeviceAugment, batch: dict[str, jax.Array], rng: jax.Array
) -> jax.Array:
  d, b = batch['inputs'].shape[:2]
  flat = {k: v.reshape(d * b, *v.shape[2:]) for k, v in batch.items()}
  out = augment(flat, rng)
  return out.reshape(d, b, *out.shape[1:])

"""Video tokenisation: tubelet embedding and uniform frame sampling.

Both produce tokens flattened time-major (index = t * (h * w) + y * w + x), as
Scenic does, so positional embeddings and Models 3 and 4 agree on the order.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax.models.options import TokenOptions

Dtype = Any


def central_frame_initializer(base=None):
  """Initialiser for a [t, h, w, c, d] kernel that sees only the central frame.

  Scenic's version zeroes slices of the width axis instead of time; this one
  zeroes every temporal slice except t // 2.
  """

  base = base or nn.initializers.lecun_normal()

  def init(key, shape, dtype=jnp.float32):
    if len(shape) != 5:
      raise ValueError(f'central_frame_initializer needs a 5-d kernel shape, got {shape}.')
    kernel = base(key, shape, dtype)
    mask = np.zeros((shape[0], 1, 1, 1, 1), dtype=np.float32)
    mask[shape[0] // 2] = 1.0
    return kernel * jnp.asarray(mask, dtype)

  return init


def scenic_central_frame_initializer(base=None):
  """Scenic's `central_frame_initializer` as released, for reproducing its runs.

  It keeps the slice t // 2 of the width axis (axis 2) of every frame and zeroes
  the other widths, instead of keeping the central frame: a kernel that sees
  every frame through one column of each patch.
  """

  base = base or nn.initializers.lecun_normal()

  def init(key, shape, dtype=jnp.float32):
    if len(shape) != 5:
      raise ValueError(f'scenic_central_frame_initializer needs a 5-d kernel shape, got {shape}.')
    kernel = base(key, shape, dtype)
    mask = np.zeros((1, 1, shape[2], 1, 1), dtype=np.float32)
    if shape[0] // 2 < shape[2]:
      mask[:, :, shape[0] // 2] = 1.0
    return kernel * jnp.asarray(mask, dtype)

  return init


def average_frame_initializer(base=None):
  """Initialiser for a [t, h, w, c, d] kernel with the same weights on every frame.

  The slice is drawn with the fan-in of the whole kernel, so the response to a
  static video has the variance of a single-frame kernel.
  """

  base = base or nn.initializers.lecun_normal()

  def init(key, shape, dtype=jnp.float32):
    if len(shape) != 5:
      raise ValueError(f'average_frame_initializer needs a 5-d kernel shape, got {shape}.')
    kernel = base(key, shape, dtype)
    return jnp.broadcast_to(kernel[:1], shape)

  return init


KERNEL_INITIALIZERS = {
  None: nn.initializers.lecun_normal,
  'central_frame_initializer': central_frame_initializer,
  'average_frame_initializer': average_frame_initializer,
  'scenic_central_frame_initializer': scenic_central_frame_initializer,
}


def uniform_frame_indices(num_frames: int, n_sampled: int) -> np.ndarray:
  """Indices of `n_sampled` frames spread uniformly over `num_frames`.

  Frame k (1-based) of n is round(k * T / (n + 1)), rounded half to even; all
  T frames when n >= T. For T=8, n=4: [2, 3, 5, 6]. (Scenic computes this with
  a float arange that returns n + 1 frames for some pairs, e.g. T=32, n=2.)
  """
  if n_sampled >= num_frames:
    return np.arange(num_frames)
  k = np.arange(1, n_sampled + 1)
  return np.round(k * num_frames / (n_sampled + 1)).astype(np.int64)


class PatchEmbedding(nn.Module):
  """Non-overlapping patch (or tubelet) projection, as a VALID strided conv.

  Parameters `kernel` [*patch, c, d] and `bias` [d] have the shapes of Flax's
  `nn.Conv` with kernel_size = strides = patch, so checkpoints of either load.
  Computed as a reshape and one matmul, which avoids the convolution's
  im2col on CPU and is the same arithmetic.

  Input x: [b, *spatial, c] with each spatial size divisible by its patch size.
  Returns: [b, *(spatial / patch), d].
  """

  features: int
  patch: tuple[int, ...]
  kernel_init: Any
  dtype: Dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    spatial = x.shape[1:-1]
    if len(spatial) != len(self.patch):
      raise ValueError(f'Patch size {self.patch} does not match the input axes {spatial}.')
    for size, p in zip(spatial, self.patch):
      if size % p:
        raise ValueError(
          f'Input shape {x.shape[1:]} is not divisible by the patch size {self.patch}: '
          'change the crop size / number of frames or model.patches.size.'
        )
    kernel = self.param('kernel', self.kernel_init, tuple(self.patch) + (c, self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    grid = tuple(s // p for s, p in zip(spatial, self.patch))
    # [b, g0, p0, g1, p1, ..., c] -> [b, g0, g1, ..., p0, p1, ..., c].
    split = (x.shape[0],) + sum(((g, p) for g, p in zip(grid, self.patch)), ()) + (c,)
    n = len(grid)
    order = (0,) + tuple(1 + 2 * i for i in range(n)) + tuple(2 + 2 * i for i in range(n))
    patches = x.reshape(split).transpose(order + (2 * n + 1,))
    patches = patches.reshape((x.shape[0],) + grid + (-1,))
    kernel = kernel.reshape(-1, self.features)
    dtype = self.dtype
    y = jnp.dot(patches.astype(dtype), kernel.astype(dtype))
    return y + bias.astype(dtype)


def tokenize(video: jax.Array, tokens: TokenOptions, *, dtype: Dtype) -> jax.Array:
  """Turns a video into a grid of tokens.

  Must be called inside a compact method: it creates the `embedding` module.

  Args:
    video: f32[b, T, H, W, c].
    tokens: '3d_conv' (tubelets of patch_size = (h, w, t)) or
      'temporal_sampling' (n_sampled_frames frames, 2D patches (h, w)).
    dtype: the computation dtype.

  Returns:
    f32[b, t, gh, gw, hidden_size]: t temporal tokens of gh x gw each.
  """
  if video.ndim != 5:
    raise ValueError(
      f'ViViT expects video shaped [batch, time, height, width, 3]; got {video.shape}.'
    )
  fh, fw, ft = tokens.patch_size
  hidden_size = tokens.hidden_size
  if tokens.method == '3d_conv':
    embed = PatchEmbedding(
      hidden_size,
      (ft, fh, fw),
      kernel_init=KERNEL_INITIALIZERS[tokens.kernel_init_method](),
      dtype=dtype,
      name='embedding',
    )
    return embed(video)
  if tokens.method == 'temporal_sampling':
    b, t, h, w, c = video.shape
    frames = video[:, uniform_frame_indices(t, tokens.n_sampled_frames)]
    n = frames.shape[1]
    if h % fh:
      raise ValueError(
        f'Frame height {h} is not divisible by the patch height {fh}: patches would '
        'straddle frames. Change the crop size or model.patches.size.'
      )
    # Frames stacked along the height axis and embedded by the 2D patch
    # projection, as Scenic does; the grid is then split back per frame.
    embed = PatchEmbedding(
      hidden_size,
      (fh, fw),
      kernel_init=nn.initializers.lecun_normal(),
      dtype=dtype,
      name='embedding',
    )
    grid = embed(frames.reshape(b, n * h, w, c))
    return grid.reshape(b, n, h // fh, w // fw, hidden_size)
  raise ValueError(f"Unknown temporal encoding method '{tokens.method}'.")

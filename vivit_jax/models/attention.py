"""Attention functions for `flax.linen.MultiHeadDotProductAttention`.

Flax's attention module owns the query/key/value/out projections (and so the
parameter names Scenic's checkpoints use); these functions replace only the
softmax(QK^T)V core. Without attention dropout the core is
`jax.nn.dot_product_attention`, which lets XLA pick cuDNN's fused kernel on a
GPU. `'splash'` runs Pallas's splash attention kernel on a TPU, which never
holds the [length, length] scores in HBM (ViViT-L Model 1 has 3137 tokens:
16 x 3137^2 scores per layer and clip). Attention dropout needs the
probabilities themselves, so then the core is Flax's explicit implementation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as splash_mask

AttentionFn = Callable[..., jax.Array]

_IMPLEMENTATIONS = {'default': None, 'xla': 'xla', 'cudnn': 'cudnn'}

# The splash kernel works on blocks of 128 query and 128 key tokens.
SPLASH_BLOCK = 128


def partitioned_mesh() -> jax.sharding.AbstractMesh | None:
  """The mesh XLA partitions the program being traced over, or None.

  That is the trainer's mesh step (`jax.set_mesh`, whose axes XLA splits arrays
  over). Under pmap, or inside shard_map, the mesh's axes are manual: each device
  runs its own program, and there is nothing to gather or to run per device.
  """
  mesh = jax.sharding.get_abstract_mesh()
  return mesh if mesh.auto_axes or mesh.explicit_axes else None


def _padded(length: int) -> int:
  """`length` rounded up to whole kernel blocks."""
  return -(-length // SPLASH_BLOCK) * SPLASH_BLOCK


def splash_pays(length: int, head_dim: int) -> bool:
  """Whether the splash kernel holds less than XLA's attention for this sequence.

  Per head and clip, the kernel keeps for its backward pass heads-major copies of
  q, k and v padded to whole blocks (3 x padded x head_dim values) where XLA's
  attention keeps the probabilities (length^2). Compiled for a v5litepod-16 at 4
  clips per chip (docs/fitting.md), the kernel on ViViT-B's 196-token spatial
  attention raised the peak (Model 3: 10.5 -> 13.1 GiB, Model 4: 6.8 -> 7.9) and on
  Model 1's 3137 tokens halved it (13.6 -> 7.6), as this count says.
  """
  return length * length > 3 * _padded(length) * head_dim


@functools.cache
def _splash_kernel(length: int, padded: int, num_heads: int, interpret: bool):
  """A splash kernel for one clip's [heads, padded, head_dim] q/k/v.

  Every query sees the first `length` keys and none of the padding; the mask
  is static, so the kernel skips the key blocks that are padding only.
  """
  keys = np.zeros((padded, padded), dtype=np.bool_)
  keys[:, :length] = True
  mask = splash_mask.MultiHeadMask([splash_mask.NumpyMask(keys)] * num_heads)
  return splash.make_splash_mha(mask, head_shards=1, q_seq_shards=1, interpret=interpret)


def splash_attention(
  query: jax.Array, key: jax.Array, value: jax.Array, *, interpret: bool = False
) -> jax.Array:
  """softmax(q k^T / sqrt(d)) v with Pallas's TPU splash kernel.

  Args:
    query, key, value: [batch, length, heads, head_dim].
    interpret: run the kernel in Pallas's interpreter (any backend; for tests).

  Returns:
    [batch, length, heads, head_dim], in the query's dtype.
  """
  _, length, num_heads, head_dim = query.shape
  padded = _padded(length)
  kernel = _splash_kernel(length, padded, num_heads, interpret)

  def heads_major(a):
    a = jnp.swapaxes(a, 1, 2)
    return jnp.pad(a, ((0, 0), (0, 0), (0, padded - length), (0, 0)))

  def attend(q, k, v):
    return jax.vmap(kernel)(heads_major(q), heads_major(k), heads_major(v))

  # XLA cannot split a Pallas kernel over a mesh: under `jax.set_mesh` (the
  # trainer's mesh step) it runs inside shard_map, on each device's own rows
  # (the trainer's vmap maps them onto the mesh's axes).
  mesh = partitioned_mesh()
  if mesh is not None:
    spec = jax.sharding.PartitionSpec()
    attend = jax.shard_map(attend, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
  scaled = query * jnp.asarray(head_dim**-0.5, query.dtype)
  out = attend(scaled, key, value)
  return jnp.swapaxes(out[:, :, :length], 1, 2).astype(query.dtype)


def _attend(query: jax.Array, key: jax.Array, value: jax.Array, *, implementation: str, **options):
  """softmax(q k^T / sqrt(d)) v over axis -3.

  Args:
    query, key, value: [batch..., length, heads, head_dim]; any number of
      leading batch axes, which are flattened for the fused kernel.
    implementation: 'default', 'xla' or 'cudnn' (see jax.nn.dot_product_attention),
      or 'splash': the TPU kernel where the computation runs on a TPU and the
      kernel holds less than XLA's attention (`splash_pays`), XLA's otherwise.
    **options: the keywords Flax gives an attention_fn (dropout_rng,
      dropout_rate, broadcast_dropout, deterministic, dtype, precision).

  Returns:
    [batch..., length, heads, head_dim].
  """
  if not options['deterministic'] and options['dropout_rate'] > 0.0:
    return nn.dot_product_attention(query, key, value, **options)
  batch_shape = query.shape[:-3]
  flat = lambda a: a.reshape((-1,) + a.shape[-3:])
  query, key, value = flat(query), flat(key), flat(value)
  if implementation == 'splash':
    if not splash_pays(query.shape[-3], query.shape[-1]):
      out = jax.nn.dot_product_attention(query, key, value, implementation='xla')
    else:
      # Chosen when the program is lowered, for the platform it is lowered for:
      # a TPU slice compiled from this CPU gets the kernel, a CPU test XLA's.
      out = jax.lax.platform_dependent(
        query,
        key,
        value,
        tpu=splash_attention,
        default=functools.partial(jax.nn.dot_product_attention, implementation='xla'),
      )
  else:
    out = jax.nn.dot_product_attention(
      query, key, value, implementation=_IMPLEMENTATIONS[implementation]
    )
  return out.reshape(batch_shape + out.shape[-3:])


def _with_flax_signature(core: Callable[..., jax.Array]) -> AttentionFn:
  """`core(query, key, value, **options)` as an `attention_fn` for Flax's attention module.

  Flax passes an `attention_fn` only the keyword arguments its signature names,
  so they are spelt out here, once, for both attention functions.
  """

  def attention_fn(
    query,
    key,
    value,
    dropout_rng=None,
    dropout_rate=0.0,
    broadcast_dropout=True,
    deterministic=False,
    dtype=None,
    precision=None,
  ):
    return core(
      query,
      key,
      value,
      dropout_rng=dropout_rng,
      dropout_rate=dropout_rate,
      broadcast_dropout=broadcast_dropout,
      deterministic=deterministic,
      dtype=dtype,
      precision=precision,
    )

  return attention_fn


def make_attention_fn(implementation: str) -> AttentionFn:
  """Returns an `attention_fn` for Flax attention over axis -3 of q/k/v."""
  return _with_flax_signature(functools.partial(_attend, implementation=implementation))


def make_factorized_attention_fn(implementation: str) -> AttentionFn:
  """Returns Model 4's attention: half of the heads over time, half over space.

  The returned function takes q/k/v shaped [batch, time, space, heads,
  head_dim]. The first heads/2 heads attend over time (tokens at the same
  spatial position), the others over space (tokens of the same time step);
  their outputs are concatenated along the head axis, as in Scenic.
  """

  def factorized(query, key, value, *, dropout_rng, **options):
    if query.ndim != 5:
      raise ValueError(
        'Factorized dot-product attention needs q/k/v shaped [batch, time, space, '
        f'heads, head_dim]; got {query.shape}.'
      )
    num_heads = query.shape[-2]
    if num_heads % 2:
      raise ValueError(
        f'Factorized dot-product attention splits the heads in two; {num_heads} heads is odd.'
      )
    half = num_heads // 2
    rngs = (None, None) if dropout_rng is None else tuple(jax.random.split(dropout_rng))
    attend = functools.partial(_attend, implementation=implementation, **options)
    # Time half: move time next to the head axis so it is the attended axis.
    to_time = lambda a: jnp.swapaxes(a[..., :half, :], 1, 2)
    out_time = attend(to_time(query), to_time(key), to_time(value), dropout_rng=rngs[0])
    out_time = jnp.swapaxes(out_time, 1, 2)
    space = lambda a: a[..., half:, :]
    out_space = attend(space(query), space(key), space(value), dropout_rng=rngs[1])
    return jnp.concatenate([out_time, out_space], axis=-2)

  return _with_flax_signature(factorized)

"""Attention functions for `flax.linen.MultiHeadDotProductAttention`.

Flax's attention module owns the query/key/value/out projections (and so the
parameter names Scenic's checkpoints use); these functions replace only the
softmax(QK^T)V core. Without attention dropout the core is
`jax.nn.dot_product_attention`, which lets XLA pick cuDNN's fused kernel on a
GPU. Attention dropout needs the probabilities themselves, so then the core is
Flax's explicit implementation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

AttentionFn = Callable[..., jax.Array]

_IMPLEMENTATIONS = {'default': None, 'xla': 'xla', 'cudnn': 'cudnn'}


def _attend(query: jax.Array, key: jax.Array, value: jax.Array, *, implementation: str, **options):
  """softmax(q k^T / sqrt(d)) v over axis -3.

  Args:
    query, key, value: [batch..., length, heads, head_dim]; any number of
      leading batch axes, which are flattened for the fused kernel.
    implementation: 'default', 'xla' or 'cudnn' (see jax.nn.dot_product_attention).
    **options: the keywords Flax gives an attention_fn (dropout_rng,
      dropout_rate, broadcast_dropout, deterministic, dtype, precision).

  Returns:
    [batch..., length, heads, head_dim].
  """
  if not options['deterministic'] and options['dropout_rate'] > 0.0:
    return nn.dot_product_attention(query, key, value, **options)
  batch_shape = query.shape[:-3]
  flat = lambda a: a.reshape((-1,) + a.shape[-3:])
  out = jax.nn.dot_product_attention(
    flat(query),
    flat(key),
    flat(value),
    implementation=_IMPLEMENTATIONS[implementation],
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
        'Factorised dot-product attention needs q/k/v shaped [batch, time, space, '
        f'heads, head_dim]; got {query.shape}.'
      )
    num_heads = query.shape[-2]
    if num_heads % 2:
      raise ValueError(
        f'Factorised dot-product attention splits the heads in two; {num_heads} heads is odd.'
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

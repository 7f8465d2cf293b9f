"""Transformer layers with Scenic's ViViT parameter names.

Module and parameter names here are a contract: they equal Scenic's, so
Scenic's checkpoints load into these modules unchanged. Do not rename them.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vivit_jax.models import attention as attention_lib

Dtype = Any
Initializer = Any

ATTENTION_KERNEL_INITS = {
  'xavier': nn.initializers.xavier_uniform(),
  'zero': nn.initializers.zeros,
}


class MlpBlock(nn.Module):
  """Dense -> GELU (tanh approximation) -> Dropout -> Dense -> Dropout."""

  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
    dense = lambda features: nn.Dense(
      features,
      dtype=self.dtype,
      kernel_init=nn.initializers.xavier_uniform(),
      bias_init=nn.initializers.normal(stddev=1e-6),
    )
    out_dim = x.shape[-1]
    x = dense(self.mlp_dim)(x)
    x = nn.gelu(x)
    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)
    x = dense(out_dim)(x)
    return nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)


class StochasticDepth(nn.Module):
  """Drops a residual branch for whole examples (axis 0) with probability `rate`.

  With `rescale`, kept branches are divided by (1 - rate), so the expected
  activation in training equals the one at evaluation. Scenic does not rescale;
  `rescale=False` reproduces it.
  """

  rate: float
  rescale: bool = True

  @nn.compact
  def __call__(self, branch: jax.Array, *, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return branch
    shape = (branch.shape[0],) + (1,) * (branch.ndim - 1)
    keep = jax.random.bernoulli(self.make_rng('dropout'), 1.0 - self.rate, shape)
    scale = 1.0 / (1.0 - self.rate) if self.rescale else 1.0
    return branch * (keep.astype(branch.dtype) * jnp.asarray(scale, branch.dtype))


def _attention(
  num_heads: int,
  attention_fn,
  dropout_rate: float,
  kernel_init: Initializer,
  dtype: Dtype,
  name: str | None = None,
) -> nn.MultiHeadDotProductAttention:
  return nn.MultiHeadDotProductAttention(
    num_heads=num_heads,
    kernel_init=kernel_init,
    broadcast_dropout=False,
    dropout_rate=dropout_rate,
    attention_fn=attention_fn,
    dtype=dtype,
    name=name,
  )


class EncoderBlock(nn.Module):
  """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x)).

  Attention runs over axis -2 of `x`; leading axes are batch axes, except for
  Model 4 whose `attention_fn` attends over both axes of x[b, t, s, d].
  Parameters: LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1,
  MlpBlock_0 (as Scenic's EncoderBlock).
  """

  mlp_dim: int
  num_heads: int
  attention_fn: Any
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  droplayer_p: float = 0.0
  stochastic_depth_rescale: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool) -> jax.Array:
    drop_path = StochasticDepth(self.droplayer_p, self.stochastic_depth_rescale)
    x = nn.LayerNorm(dtype=self.dtype)(inputs)
    x = _attention(
      self.num_heads,
      self.attention_fn,
      self.attention_dropout_rate,
      ATTENTION_KERNEL_INITS['xavier'],
      self.dtype,
    )(x, x, deterministic=deterministic)
    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic)
    x = drop_path(x, deterministic=deterministic) + inputs

    y = nn.LayerNorm(dtype=self.dtype)(x)
    y = MlpBlock(self.mlp_dim, self.dropout_rate, self.dtype)(y, deterministic=deterministic)
    return drop_path(y, deterministic=deterministic) + x


class FactorizedSelfAttentionBlock(nn.Module):
  """Model 3's block: attention over time, then over space (or the reverse), then MLP.

  Each attention and the MLP has its own pre-norm residual and its own
  stochastic-depth draw (Scenic's version ignores stochastic depth here).

  Input x: [b, t*s, d] with tokens time-major; `temporal_dims` is t.
  Parameters: LayerNorm_time, MultiHeadDotProductAttention_time, LayerNorm_space,
  MultiHeadDotProductAttention_space, LayerNorm_mlp, MlpBlock.
  """

  mlp_dim: int
  num_heads: int
  temporal_dims: int
  attention_fn: Any
  attention_order: str = 'time_space'
  attention_kernel_init: str = 'xavier'
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  droplayer_p: float = 0.0
  stochastic_depth_rescale: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool) -> jax.Array:
    b, n, d = inputs.shape
    x = inputs.reshape(b, self.temporal_dims, n // self.temporal_dims, d)
    drop_path = StochasticDepth(self.droplayer_p, self.stochastic_depth_rescale)
    for axis in self.attention_order.split('_'):
      # Attention runs over axis -2: bring time there for temporal attention.
      y = jnp.swapaxes(x, 1, 2) if axis == 'time' else x
      y = nn.LayerNorm(dtype=self.dtype, name=f'LayerNorm_{axis}')(y)
      y = _attention(
        self.num_heads,
        self.attention_fn,
        self.attention_dropout_rate,
        ATTENTION_KERNEL_INITS[self.attention_kernel_init],
        self.dtype,
        name=f'MultiHeadDotProductAttention_{axis}',
      )(y, y, deterministic=deterministic)
      y = nn.Dropout(rate=self.dropout_rate)(y, deterministic)
      y = jnp.swapaxes(y, 1, 2) if axis == 'time' else y
      x = drop_path(y, deterministic=deterministic) + x

    x = x.reshape(b, n, d)
    y = nn.LayerNorm(dtype=self.dtype, name='LayerNorm_mlp')(x)
    y = MlpBlock(self.mlp_dim, self.dropout_rate, self.dtype, name='MlpBlock')(
      y, deterministic=deterministic
    )
    return drop_path(y, deterministic=deterministic) + x


class AddPositionEmbs(nn.Module):
  """Adds a learned embedding [1, tokens, d] over axis -2 of x."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pos = self.param(
      'pos_embedding', nn.initializers.normal(stddev=0.02), (1,) + x.shape[-2:], jnp.float32
    )
    return x + pos.astype(x.dtype)


class Encoder(nn.Module):
  """Positional embedding, dropout, `num_layers` blocks, final LayerNorm.

  `block` is 'standard' (Models 1 and 2), 'factorized_self_attention'
  (Model 3) or 'factorized_dot_product' (Model 4). Input x: [b, ..., n, d];
  attention runs over axis -2 (for Models 3 and 4, over the t*s time-major
  tokens as their blocks describe). Stochastic depth grows linearly with
  depth: block l of L drops with probability l / (L - 1) * rate.
  """

  num_layers: int
  mlp_dim: int
  num_heads: int
  block: str = 'standard'
  temporal_dims: int | None = None
  attention_order: str = 'time_space'
  attention_kernel_init: str = 'xavier'
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  stochastic_droplayer_rate: float = 0.0
  stochastic_depth_rescale: bool = True
  attention_implementation: str = 'default'
  remat: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = AddPositionEmbs(name='posembed_input')(x)
    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not train)
    shape = x.shape
    if self.block == 'factorized_dot_product':
      b, n, d = shape
      x = x.reshape(b, self.temporal_dims, n // self.temporal_dims, d)
      attention_fn = attention_lib.make_factorized_attention_fn(self.attention_implementation)
    else:
      attention_fn = attention_lib.make_attention_fn(self.attention_implementation)

    if self.block == 'factorized_self_attention':
      block_cls = FactorizedSelfAttentionBlock
      extra = dict(
        temporal_dims=self.temporal_dims,
        attention_order=self.attention_order,
        attention_kernel_init=self.attention_kernel_init,
      )
    else:
      block_cls, extra = EncoderBlock, {}
    if self.remat:
      block_cls = nn.remat(block_cls, static_argnums=(2,))

    for layer in range(self.num_layers):
      x = block_cls(
        mlp_dim=self.mlp_dim,
        num_heads=self.num_heads,
        attention_fn=attention_fn,
        dropout_rate=self.dropout_rate,
        attention_dropout_rate=self.attention_dropout_rate,
        droplayer_p=layer / max(self.num_layers - 1, 1) * self.stochastic_droplayer_rate,
        stochastic_depth_rescale=self.stochastic_depth_rescale,
        dtype=self.dtype,
        name=f'encoderblock_{layer}',
        **extra,
      )(x, not train)
    x = x.reshape(shape)
    return nn.LayerNorm(name='encoder_norm')(x)

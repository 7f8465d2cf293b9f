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
from vivit_jax.models.options import AttentionOptions, BlockOptions, EncoderSize

Dtype = Any
Initializer = Any

ATTENTION_KERNEL_INITS = {
  'xavier': nn.initializers.xavier_uniform(),
  'zero': nn.initializers.zeros,
}


class MlpBlock(nn.Module):
  """Dense -> GELU (tanh approximation) -> Dropout -> Dense -> Dropout."""

  mlp_dim: int
  dropout_rate: float
  dtype: Dtype

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
  rescale: bool

  @nn.compact
  def __call__(self, branch: jax.Array, *, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return branch
    shape = (branch.shape[0],) + (1,) * (branch.ndim - 1)
    keep = jax.random.bernoulli(self.make_rng('dropout'), 1.0 - self.rate, shape)
    scale = 1.0 / (1.0 - self.rate) if self.rescale else 1.0
    return branch * (keep.astype(branch.dtype) * jnp.asarray(scale, branch.dtype))


class _Block(nn.Module):
  """What both blocks share: their size, options, attention core and drop rate.

  Attributes:
    size: the encoder's heads and MLP width (its depth is the encoder's).
    options: dropout, stochastic depth, dtype.
    attention_fn: the attention core (see attention.py).
    droplayer_p: this block's stochastic-depth rate (the encoder sets it by depth).
  """

  size: EncoderSize
  options: BlockOptions
  attention_fn: Any
  droplayer_p: float

  def _drop_path(self) -> StochasticDepth:
    return StochasticDepth(self.droplayer_p, self.options.stochastic_depth_rescale)

  def _attention(
    self,
    kernel_init: Initializer,
    name: str | None = None,
    out_kernel_init: Initializer | None = None,
  ):
    """`out_kernel_init`: the output projection's init; None is `kernel_init`."""
    return nn.MultiHeadDotProductAttention(
      num_heads=self.size.num_heads,
      kernel_init=kernel_init,
      out_kernel_init=out_kernel_init,
      broadcast_dropout=False,
      dropout_rate=self.options.attention_dropout_rate,
      attention_fn=self.attention_fn,
      dtype=self.options.dtype,
      name=name,
    )

  def _mlp(self, name: str | None = None) -> MlpBlock:
    return MlpBlock(self.size.mlp_dim, self.options.dropout_rate, self.options.dtype, name=name)


class EncoderBlock(_Block):
  """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x)).

  Attention runs over axis -2 of `x`; leading axes are batch axes, except for
  Model 4 whose `attention_fn` attends over both axes of x[b, t, s, d].
  Parameters: LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1,
  MlpBlock_0 (as Scenic's EncoderBlock).
  """

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool) -> jax.Array:
    drop_path = self._drop_path()
    dtype = self.options.dtype
    x = nn.LayerNorm(dtype=dtype)(inputs)
    x = self._attention(ATTENTION_KERNEL_INITS['xavier'])(x, x, deterministic=deterministic)
    x = nn.Dropout(rate=self.options.dropout_rate)(x, deterministic)
    x = drop_path(x, deterministic=deterministic) + inputs

    y = nn.LayerNorm(dtype=dtype)(x)
    y = self._mlp()(y, deterministic=deterministic)
    return drop_path(y, deterministic=deterministic) + x


class FactorizedSelfAttentionBlock(_Block):
  """Model 3's block: attention over time, then over space (or the reverse), then MLP.

  Each attention and the MLP has its own pre-norm residual and its own
  stochastic-depth draw (Scenic's version ignores stochastic depth here).
  With `attention.zero_init_temporal_out` the temporal attention's output
  projection starts at zero, so the block starts as identity over time.

  Input x: [b, t*s, d] with tokens time-major; `temporal_dims` is t.
  Parameters: LayerNorm_time, MultiHeadDotProductAttention_time, LayerNorm_space,
  MultiHeadDotProductAttention_space, LayerNorm_mlp, MlpBlock.
  """

  attention: AttentionOptions
  temporal_dims: int

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool) -> jax.Array:
    b, n, d = inputs.shape
    dtype = self.options.dtype
    x = inputs.reshape(b, self.temporal_dims, n // self.temporal_dims, d)
    drop_path = self._drop_path()
    kernel_init = ATTENTION_KERNEL_INITS[self.attention.attention_kernel_init_method]
    zero_time_out = self.attention.zero_init_temporal_out
    for axis in self.attention.attention_order.split('_'):
      # Attention runs over axis -2: bring time there for temporal attention.
      y = jnp.swapaxes(x, 1, 2) if axis == 'time' else x
      y = nn.LayerNorm(dtype=dtype, name=f'LayerNorm_{axis}')(y)
      out_init = nn.initializers.zeros if axis == 'time' and zero_time_out else None
      y = self._attention(kernel_init, f'MultiHeadDotProductAttention_{axis}', out_init)(
        y, y, deterministic=deterministic
      )
      y = nn.Dropout(rate=self.options.dropout_rate)(y, deterministic)
      y = jnp.swapaxes(y, 1, 2) if axis == 'time' else y
      x = drop_path(y, deterministic=deterministic) + x

    x = x.reshape(b, n, d)
    y = nn.LayerNorm(dtype=dtype, name='LayerNorm_mlp')(x)
    y = self._mlp(name='MlpBlock')(y, deterministic=deterministic)
    return drop_path(y, deterministic=deterministic) + x


class AddPositionEmbs(nn.Module):
  """Adds a learned embedding [1, tokens, d] over axis -2 of x."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pos = self.param(
      'pos_embedding', nn.initializers.normal(stddev=0.02), (1,) + x.shape[-2:], jnp.float32
    )
    return x + pos.astype(x.dtype)


# attention_config.type -> the block of its encoders (Model 2's are standard blocks).
BLOCKS = {
  'spacetime': EncoderBlock,
  'factorized_encoder': EncoderBlock,
  'factorized_self_attention_block': FactorizedSelfAttentionBlock,
  'factorized_dot_product_attention': EncoderBlock,
}


def _whole(params: Any) -> Any:
  """`params` gathered whole on every device of the current mesh."""
  whole = jax.sharding.PartitionSpec()
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, whole), params)


class Encoder(nn.Module):
  """Positional embedding, dropout, `size.num_layers` blocks, final LayerNorm.

  The block is the one `attention.type` names: standard (Models 1 and 2),
  factorised self-attention (Model 3) or standard with factorised dot-product
  attention (Model 4). Input x: [b, ..., n, d]; attention runs over axis -2
  (for Models 3 and 4, over the t*s time-major tokens as their blocks
  describe, with t = `temporal_dims`). Stochastic depth grows linearly with
  depth: block l of L drops with probability l / (L - 1) * rate.
  """

  size: EncoderSize
  attention: AttentionOptions
  options: BlockOptions
  temporal_dims: int | None  # Token time steps t, which Models 3 and 4 need; else None.

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    options = self.options
    x = AddPositionEmbs(name='posembed_input')(x)
    x = nn.Dropout(rate=options.dropout_rate)(x, deterministic=not train)
    shape = x.shape
    if self.attention.type == 'factorized_dot_product_attention':
      b, n, d = shape
      x = x.reshape(b, self.temporal_dims, n // self.temporal_dims, d)
      attention_fn = attention_lib.make_factorized_attention_fn(options.attention_implementation)
    else:
      attention_fn = attention_lib.make_attention_fn(options.attention_implementation)

    block_cls = BLOCKS[self.attention.type]
    extra = {}
    if block_cls is FactorizedSelfAttentionBlock:
      extra = dict(attention=self.attention, temporal_dims=self.temporal_dims)
    if attention_lib.partitioned_mesh() is not None:
      # Under the trainer's mesh step the stored parameters are split over the devices
      # (FSDP): each block gathers its own as it runs, so one block's weights are whole
      # at a time (with remat, gathered again for the backward pass) instead of all.
      block_cls = nn.map_variables(
        block_cls, 'params', trans_in_fn=_whole, init=self.is_initializing()
      )
    if options.remat:
      block_cls = nn.remat(block_cls, static_argnums=(2,))

    num_layers = self.size.num_layers
    for layer in range(num_layers):
      x = block_cls(
        size=self.size,
        options=options,
        attention_fn=attention_fn,
        droplayer_p=layer / max(num_layers - 1, 1) * options.stochastic_droplayer_rate,
        name=f'encoderblock_{layer}',
        **extra,
      )(x, not train)
    x = x.reshape(shape)
    return nn.LayerNorm(name='encoder_norm')(x)

"""The four ViViT models (Arnab et al., ICCV 2021).

`ViViT` is Model 1 (spatio-temporal attention), Model 3 (factorised
self-attention) and Model 4 (factorised dot-product attention): one encoder
over all tokens with a different block. `FactorisedEncoderViViT` is Model 2: a
spatial encoder on every frame with shared weights, then a temporal encoder on
the frame representations. Both take plain values; `build_model` maps a config
to them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vivit_jax.models.embedding import tokenize
from vivit_jax.models.layers import Encoder

Dtype = Any

# attention_config.type -> the block of the single encoder.
BLOCKS = {
  'spacetime': 'standard',
  'factorized_self_attention_block': 'factorized_self_attention',
  'factorized_dot_product_attention': 'factorized_dot_product',
}
_POOL = {'gap': jnp.mean, 'gmp': jnp.max, 'gsp': jnp.sum}


@dataclasses.dataclass(frozen=True)
class EncoderSize:
  """Depth and width of one transformer encoder."""

  num_layers: int
  num_heads: int
  mlp_dim: int


def _prepend_cls(module: nn.Module, x: jax.Array, name: str) -> jax.Array:
  """Prepends a learned token (zero-initialised) along axis -2 of x."""
  cls = module.param(name, nn.initializers.zeros, (1, 1, x.shape[-1]), jnp.float32)
  cls = jnp.broadcast_to(cls.astype(x.dtype), x.shape[:-2] + (1, x.shape[-1]))
  return jnp.concatenate([cls, x], axis=-2)


def _tokens(module: nn.Module, video: jax.Array) -> jax.Array:
  """The module's video tokens [b, t, h, w, d] (creates its `embedding`)."""
  return tokenize(
    video,
    method=module.temporal_encoding,
    patch_size=module.patch_size,
    hidden_size=module.hidden_size,
    n_sampled_frames=module.n_sampled_frames,
    kernel_init_method=module.kernel_init_method,
    dtype=module.dtype,
  )


def _pool(x: jax.Array, classifier: str) -> jax.Array:
  """[..., n, d] -> [..., d]: the class token or a pooling over tokens."""
  if classifier == 'token':
    return x[..., 0, :]
  return _POOL[classifier](x, axis=-2)


def _head(
  x: jax.Array,
  *,
  num_classes: int,
  representation_size: int | None,
  return_prelogits: bool,
) -> jax.Array:
  """Optional pre_logits (Dense + tanh), then the zero-initialised output_projection."""
  if representation_size is not None:
    x = nn.tanh(nn.Dense(representation_size, name='pre_logits')(x))
  if return_prelogits:
    return x
  logits = nn.Dense(num_classes, kernel_init=nn.initializers.zeros, name='output_projection')(x)
  return logits.astype(jnp.float32)


class ViViT(nn.Module):
  """Models 1, 3 and 4: one encoder over all space-time tokens.

  Attributes:
    num_classes: outputs of output_projection (sum over heads for multi-head).
    encoder: depth and width of the encoder.
    hidden_size: token width d.
    patch_size: (h, w, t) tubelet; t is unused with temporal_sampling.
    attention_type: 'spacetime', 'factorized_self_attention_block' or
      'factorized_dot_product_attention'.
    temporal_encoding: '3d_conv' or 'temporal_sampling'.
    classifier: 'token' (Model 1 only), 'gap', 'gmp' or 'gsp'.
  """

  num_classes: int
  encoder: EncoderSize
  hidden_size: int
  patch_size: tuple[int, int, int]
  attention_type: str = 'spacetime'
  temporal_encoding: str = '3d_conv'
  n_sampled_frames: int | None = None
  kernel_init_method: str | None = None
  classifier: str = 'gap'
  representation_size: int | None = None
  attention_order: str = 'time_space'
  attention_kernel_init: str = 'xavier'
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  stochastic_droplayer_rate: float = 0.0
  stochastic_depth_rescale: bool = True
  attention_implementation: str = 'default'
  remat: bool = False
  return_prelogits: bool = False
  return_preclassifier: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, video: jax.Array, *, train: bool) -> jax.Array:
    """Classifies videos.

    Args:
      video: f32[b, T, H, W, 3], values as the input pipeline makes them.
      train: enables dropout and stochastic depth (needs a 'dropout' rng).

    Returns:
      f32[b, num_classes] logits; [b, representation] with return_prelogits;
      the encoder's tokens [b, n, d] with return_preclassifier.
    """
    tokens = _tokens(self, video)
    b, t = tokens.shape[:2]
    x = tokens.reshape(b, -1, self.hidden_size)
    if self.classifier == 'token':
      x = _prepend_cls(self, x, 'cls')
    x = Encoder(
      num_layers=self.encoder.num_layers,
      mlp_dim=self.encoder.mlp_dim,
      num_heads=self.encoder.num_heads,
      block=BLOCKS[self.attention_type],
      temporal_dims=t,
      attention_order=self.attention_order,
      attention_kernel_init=self.attention_kernel_init,
      dropout_rate=self.dropout_rate,
      attention_dropout_rate=self.attention_dropout_rate,
      stochastic_droplayer_rate=self.stochastic_droplayer_rate,
      stochastic_depth_rescale=self.stochastic_depth_rescale,
      attention_implementation=self.attention_implementation,
      remat=self.remat,
      dtype=self.dtype,
      name='Transformer',
    )(x, train=train)
    if self.return_preclassifier:
      return x
    return _head(
      _pool(x, self.classifier),
      num_classes=self.num_classes,
      representation_size=self.representation_size,
      return_prelogits=self.return_prelogits,
    )


class FactorisedEncoderViViT(nn.Module):
  """Model 2: spatial encoder per frame (shared weights), then temporal encoder.

  With `spatial_only_baseline`, the temporal encoder is replaced by the mean of
  the frame representations (the paper's average-pool baseline).

  Parameters: embedding, [cls_SpatialTransformer], SpatialTransformer,
  [cls_TemporalTransformer], TemporalTransformer, [pre_logits],
  output_projection, as Scenic's SpaceTimeViViT.
  """

  num_classes: int
  spatial: EncoderSize
  temporal: EncoderSize
  hidden_size: int
  patch_size: tuple[int, int, int]
  spatial_only_baseline: bool = False
  temporal_encoding: str = '3d_conv'
  n_sampled_frames: int | None = None
  kernel_init_method: str | None = None
  classifier: str = 'token'
  representation_size: int | None = None
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  stochastic_droplayer_rate: float = 0.0
  stochastic_depth_rescale: bool = True
  attention_implementation: str = 'default'
  remat: bool = False
  return_prelogits: bool = False
  dtype: Dtype = jnp.float32

  def _encode(self, x: jax.Array, size: EncoderSize, name: str, train: bool) -> jax.Array:
    """[b, ..., n, d] -> [b, ..., d]: one encoder and its pooling."""
    if self.classifier == 'token':
      x = _prepend_cls(self, x, f'cls_{name}')
    x = Encoder(
      num_layers=size.num_layers,
      mlp_dim=size.mlp_dim,
      num_heads=size.num_heads,
      dropout_rate=self.dropout_rate,
      attention_dropout_rate=self.attention_dropout_rate,
      stochastic_droplayer_rate=self.stochastic_droplayer_rate,
      stochastic_depth_rescale=self.stochastic_depth_rescale,
      attention_implementation=self.attention_implementation,
      remat=self.remat,
      dtype=self.dtype,
      name=name,
    )(x, train=train)
    return _pool(x, self.classifier)

  @nn.compact
  def __call__(self, video: jax.Array, *, train: bool) -> jax.Array:
    """Classifies videos; arguments and results as `ViViT.__call__`."""
    tokens = _tokens(self, video)
    b, t = tokens.shape[:2]
    # [b, t, h*w, d]: the spatial encoder attends within each frame; frames are
    # a batch axis, so stochastic depth still drops whole videos.
    frames = self._encode(
      tokens.reshape(b, t, -1, self.hidden_size), self.spatial, 'SpatialTransformer', train
    )
    if self.spatial_only_baseline:
      x = jnp.mean(frames, axis=1)
    else:
      x = self._encode(frames, self.temporal, 'TemporalTransformer', train)
    return _head(
      x,
      num_classes=self.num_classes,
      representation_size=self.representation_size,
      return_prelogits=self.return_prelogits,
    )

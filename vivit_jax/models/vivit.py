"""The four ViViT models (Arnab et al., ICCV 2021).

`ViViT` is Model 1 (spatio-temporal attention), Model 3 (factorised
self-attention) and Model 4 (factorised dot-product attention): one encoder
over all tokens with a different block. `FactorizedEncoderViViT` is Model 2: a
spatial encoder on every frame with shared weights, then a temporal encoder on
the frame representations. Both take the option groups of options.py;
`build_model` fills them from a config.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vivit_jax.models.embedding import tokenize
from vivit_jax.models.layers import Encoder
from vivit_jax.models.options import (
  AttentionOptions,
  BlockOptions,
  EncoderSize,
  HeadOptions,
  TokenOptions,
)

_POOL = {'gap': jnp.mean, 'gmp': jnp.max, 'gsp': jnp.sum}


def _prepend_cls(module: nn.Module, x: jax.Array, name: str) -> jax.Array:
  """Prepends a learned token (zero-initialised) along axis -2 of x."""
  cls = module.param(name, nn.initializers.zeros, (1, 1, x.shape[-1]), jnp.float32)
  cls = jnp.broadcast_to(cls.astype(x.dtype), x.shape[:-2] + (1, x.shape[-1]))
  return jnp.concatenate([cls, x], axis=-2)


def _pool(x: jax.Array, classifier: str) -> jax.Array:
  """[..., n, d] -> [..., d]: the class token or a pooling over tokens."""
  if classifier == 'token':
    return x[..., 0, :]
  return _POOL[classifier](x, axis=-2)


def _head(x: jax.Array, head: HeadOptions) -> jax.Array:
  """Optional pre_logits (Dense + tanh), then the zero-initialised output_projection."""
  if head.representation_size is not None:
    x = nn.tanh(nn.Dense(head.representation_size, name='pre_logits')(x))
  if head.return_prelogits:
    return x
  logits = nn.Dense(head.num_classes, kernel_init=nn.initializers.zeros, name='output_projection')(
    x
  )
  return logits.astype(jnp.float32)


class ViViT(nn.Module):
  """Models 1, 3 and 4: one encoder over all space-time tokens.

  Attributes:
    tokens: how the video becomes tokens.
    encoder: depth and width of the encoder.
    attention: `type` is 'spacetime', 'factorized_self_attention_block' or
      'factorized_dot_product_attention'.
    options: the blocks' regularisation and speed options.
    head: the classifier ('token' for Model 1 only, 'gap', 'gmp' or 'gsp').
    return_preclassifier: return the encoder's tokens instead of the head's output.
  """

  tokens: TokenOptions
  encoder: EncoderSize
  attention: AttentionOptions
  options: BlockOptions
  head: HeadOptions
  return_preclassifier: bool

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
    tokens = tokenize(video, self.tokens, dtype=self.options.dtype)
    b, t = tokens.shape[:2]
    x = tokens.reshape(b, -1, self.tokens.hidden_size)
    if self.head.classifier == 'token':
      x = _prepend_cls(self, x, 'cls')
    x = Encoder(
      size=self.encoder,
      attention=self.attention,
      options=self.options,
      temporal_dims=t,
      name='Transformer',
    )(x, train=train)
    if self.return_preclassifier:
      return x
    return _head(_pool(x, self.head.classifier), self.head)


class FactorizedEncoderViViT(nn.Module):
  """Model 2: spatial encoder per frame (shared weights), then temporal encoder.

  With `attention.spatial_only_baseline`, the temporal encoder is replaced by
  the mean of the frame representations (the paper's average-pool baseline)
  and `temporal` is None.

  Parameters: embedding, [cls_SpatialTransformer], SpatialTransformer,
  [cls_TemporalTransformer], TemporalTransformer, [pre_logits],
  output_projection, as Scenic's SpaceTimeViViT.
  """

  tokens: TokenOptions
  spatial: EncoderSize
  temporal: EncoderSize | None
  attention: AttentionOptions
  options: BlockOptions
  head: HeadOptions

  def _encode(self, x: jax.Array, size: EncoderSize, name: str, train: bool) -> jax.Array:
    """[b, ..., n, d] -> [b, ..., d]: one encoder and its pooling."""
    if self.head.classifier == 'token':
      x = _prepend_cls(self, x, f'cls_{name}')
    encoder = Encoder(
      size=size, attention=self.attention, options=self.options, temporal_dims=None, name=name
    )
    return _pool(encoder(x, train=train), self.head.classifier)

  @nn.compact
  def __call__(self, video: jax.Array, *, train: bool) -> jax.Array:
    """Classifies videos; arguments and results as `ViViT.__call__`."""
    tokens = tokenize(video, self.tokens, dtype=self.options.dtype)
    b, t = tokens.shape[:2]
    # [b, t, h*w, d]: the spatial encoder attends within each frame; frames are
    # a batch axis, so stochastic depth still drops whole videos.
    frames = self._encode(
      tokens.reshape(b, t, -1, self.tokens.hidden_size), self.spatial, 'SpatialTransformer', train
    )
    if self.attention.spatial_only_baseline:
      x = jnp.mean(frames, axis=1)
    else:
      x = self._encode(frames, self.temporal, 'TemporalTransformer', train)
    return _head(x, self.head)

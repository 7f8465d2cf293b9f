"""Attention rollout (Abnar & Zuidema, 2020) for ViViT Models 1 and 2.

The models are left untouched: one forward pass with Flax's
`capture_intermediates` records the outputs of every attention layer's `query`
and `key` projections, and the attention weights softmax(q k^T / sqrt(d)) are
recomputed from them, exactly what the attention core computes inside. Rollout
then multiplies the head-averaged weights of successive layers, each mixed
half-and-half with the identity for the residual connection.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

_BLOCK = re.compile(r'encoderblock_(\d+)')


def _layers(tree: dict[str, Any]) -> list[np.ndarray]:
  """Head-averaged attention weights [..., n, n] of each block of one encoder, in order."""
  blocks = sorted(tree, key=lambda name: int(_BLOCK.match(name).group(1)))
  out = []
  for name in blocks:
    mha = tree[name]['MultiHeadDotProductAttention_0']
    q = np.asarray(mha['query']['__call__'][0], np.float64)
    k = np.asarray(mha['key']['__call__'][0], np.float64)
    logits = np.einsum('...qhd,...khd->...hqk', q, k) / np.sqrt(q.shape[-1])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out.append(weights.mean(axis=-3))
  return out


def rollout(layers: list[np.ndarray]) -> np.ndarray:
  """[..., n, n]: how much each output token draws on each input token through all layers."""
  n = layers[0].shape[-1]
  result = np.broadcast_to(np.eye(n), layers[0].shape)
  for weights in layers:
    mixed = 0.5 * weights + 0.5 * np.eye(n)
    mixed /= mixed.sum(-1, keepdims=True)
    result = mixed @ result
  return result


def _relevance(rolled: np.ndarray, has_cls: bool) -> np.ndarray:
  """[..., n] -> relevance of the input tokens: the class token's row, else the mean row."""
  if has_cls:
    return rolled[..., 0, 1:]
  return rolled.mean(axis=-2)


def attention_maps(
  module: Any,
  params: Any,
  video: np.ndarray,
  *,
  attention_type: str,
  has_cls: bool,
  patch_size: int,
) -> np.ndarray:
  """Where the model looks: one relevance map per token time step.

  Args:
    module: a ViViT of type 'spacetime' (Model 1) or 'factorized_encoder' (Model 2).
    params: its parameters.
    video: f32[1, T, S, S, 3], one preprocessed view.
    attention_type: `config.model.attention_config.type`.
    has_cls: the model classifies from a class token (`classifier='token'`).
    patch_size: spatial patch side (`config.model.patches.size[0]`).

  Returns:
    f32[t, h, w] relevances over the token grid (t = T / temporal patch size),
    scaled to sum to 1 over the whole clip: one scale for every time step, so
    `maps.sum((1, 2))` is each step's share of the attention.
  """
  _, state = module.apply(
    {'params': params},
    video,
    train=False,
    capture_intermediates=lambda mdl, _: mdl.name in ('query', 'key'),
  )
  tree = state['intermediates']
  if attention_type == 'spacetime':
    relevance = _relevance(rollout(_layers(tree['Transformer'])), has_cls)[0]
  elif attention_type == 'factorized_encoder':
    # Spatial rollout per frame, weighted by the temporal rollout over frames.
    spatial = _relevance(rollout(_layers(tree['SpatialTransformer'])), has_cls)[0]
    temporal = _relevance(rollout(_layers(tree['TemporalTransformer'])), has_cls)[0]
    relevance = temporal[:, None] * spatial
  else:
    raise ValueError(
      f"Attention rollout supports 'spacetime' and 'factorized_encoder', not {attention_type!r}."
    )
  side = video.shape[2] // patch_size
  maps = relevance.reshape(-1, side, side)
  return (maps / max(float(maps.sum()), 1e-12)).astype(np.float32)

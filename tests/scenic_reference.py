"""A float64 NumPy forward pass of Scenic's ViViT, written from its definition.

It reads a parameter tree with Scenic's names and computes the logits the way
Scenic's modules do (REFERENCE.md section 2): tubelet conv, time-major tokens,
pre-norm blocks with LayerNorm eps 1e-6 and tanh-GELU, per-axis attention for
Model 3, head-split attention for Model 4, per-frame spatial encoder for
Model 2. It shares no code with vivit_jax, so agreement means the parameter
tree and the arithmetic both match. Evaluation mode only.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _np(tree):
  if isinstance(tree, dict):
    return {k: _np(v) for k, v in tree.items()}
  return np.asarray(tree, dtype=np.float64)


def layer_norm(x, p, eps=1e-6):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p['scale'] + p['bias']


def gelu(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def softmax(x, axis=-1):
  e = np.exp(x - x.max(axis, keepdims=True))
  return e / e.sum(axis, keepdims=True)


def dense(x, p):
  return x @ p['kernel'] + p['bias']


def qkv(x, p):
  """x [..., n, d] -> q, k, v [..., n, heads, head_dim]."""
  proj = lambda name: np.einsum('...d,dhk->...hk', x, p[name]['kernel']) + p[name]['bias']
  return proj('query'), proj('key'), proj('value')


def attend(q, k, v):
  """Attention over axis -3 of [..., n, heads, head_dim]."""
  logits = np.einsum('...qhc,...khc->...hqk', q, k) / np.sqrt(q.shape[-1])
  weights = softmax(logits)
  return np.einsum('...hqk,...khc->...qhc', weights, v)


def out_proj(o, p):
  return np.einsum('...hk,hkd->...d', o, p['out']['kernel']) + p['out']['bias']


def mha(x, p):
  q, k, v = qkv(x, p)
  return out_proj(attend(q, k, v), p)


def mlp(x, p):
  return dense(gelu(dense(x, p['Dense_0'])), p['Dense_1'])


def standard_block(x, p, attention=mha):
  x = x + attention(layer_norm(x, p['LayerNorm_0']), p['MultiHeadDotProductAttention_0'])
  return x + mlp(layer_norm(x, p['LayerNorm_1']), p['MlpBlock_0'])


def factorized_dot_product(x, p):
  """Model 4: x [b, t, s, d]; first half of heads over t, second over s."""
  q, k, v = qkv(x, p)
  h = q.shape[-2] // 2
  # Time half: attend over axis 1 (t), per spatial position.
  tq, tk, tv = (np.swapaxes(a[..., :h, :], 1, 2) for a in (q, k, v))
  out_t = np.swapaxes(attend(tq, tk, tv), 1, 2)
  out_s = attend(q[..., h:, :], k[..., h:, :], v[..., h:, :])
  return out_proj(np.concatenate([out_t, out_s], axis=-2), p)


def fsa_block(x, p, t, order):
  """Model 3: x [b, t*s, d]."""
  b, n, d = x.shape
  x = x.reshape(b, t, n // t, d)
  for axis in order.split('_'):
    if axis == 'time':
      y = np.swapaxes(x, 1, 2)  # [b, s, t, d]
      y = y + mha(layer_norm(y, p['LayerNorm_time']), p['MultiHeadDotProductAttention_time'])
      x = np.swapaxes(y, 1, 2)
    else:
      x = x + mha(layer_norm(x, p['LayerNorm_space']), p['MultiHeadDotProductAttention_space'])
  x = x.reshape(b, n, d)
  return x + mlp(layer_norm(x, p['LayerNorm_mlp']), p['MlpBlock'])


def encoder(x, p, block):
  x = x + p['posembed_input']['pos_embedding']
  i = 0
  while f'encoderblock_{i}' in p:
    x = block(x, p[f'encoderblock_{i}'])
    i += 1
  return layer_norm(x, p['encoder_norm'])


def tubelets(video, kernel, bias):
  """Conv with kernel [ft, fh, fw, c, d], stride = kernel, VALID: [b, t, h, w, d]."""
  ft, fh, fw = kernel.shape[:3]
  win = sliding_window_view(video, (ft, fh, fw), axis=(1, 2, 3))[:, ::ft, ::fh, ::fw]
  # win: [b, t, h, w, c, ft, fh, fw]
  return np.einsum('bthwcxyz,xyzcd->bthwd', win, kernel) + bias


def sampled_frame_tokens(video, kernel, bias, n_sampled):
  """Uniform frame sampling + 2D patches: [b, n, h, w, d]."""
  t = video.shape[1]
  if n_sampled >= t:
    idx = np.arange(t)
  else:
    idx = np.array([int(np.round(k * t / (n_sampled + 1))) for k in range(1, n_sampled + 1)])
  frames = video[:, idx]  # [b, n, H, W, c]
  tokens = tubelets(frames, kernel[None], bias)  # a 2D conv is a depth-1 tubelet
  return tokens


def pool(x, classifier):
  if classifier == 'token':
    return x[..., 0, :]
  return {'gap': np.mean, 'gmp': np.max, 'gsp': np.sum}[classifier](x, axis=-2)


def head(x, params):
  if 'pre_logits' in params:
    x = np.tanh(dense(x, params['pre_logits']))
  return dense(x, params['output_projection'])


def forward(
  params,
  video,
  *,
  attention_type,
  classifier,
  n_sampled_frames=None,
  attention_order='time_space',
  spatial_only_baseline=False,
):
  """Logits [b, classes] of Scenic's ViViT for `video` [b, T, H, W, 3]."""
  p = _np(params)
  video = np.asarray(video, np.float64)
  if n_sampled_frames is None:
    tokens = tubelets(video, p['embedding']['kernel'], p['embedding']['bias'])
  else:
    tokens = sampled_frame_tokens(
      video, p['embedding']['kernel'], p['embedding']['bias'], n_sampled_frames
    )
  b, t, h, w, d = tokens.shape

  if attention_type == 'factorized_encoder':
    frames = []
    for i in range(t):
      x = tokens[:, i].reshape(b, h * w, d)
      if classifier == 'token':
        x = np.concatenate([np.broadcast_to(p['cls_SpatialTransformer'], (b, 1, d)), x], 1)
      frames.append(pool(encoder(x, p['SpatialTransformer'], standard_block), classifier))
    x = np.stack(frames, axis=1)  # [b, t, d]
    if spatial_only_baseline:
      return head(x.mean(1), p)
    if classifier == 'token':
      x = np.concatenate([np.broadcast_to(p['cls_TemporalTransformer'], (b, 1, d)), x], 1)
    return head(pool(encoder(x, p['TemporalTransformer'], standard_block), classifier), p)

  x = tokens.reshape(b, t * h * w, d)
  if classifier == 'token':
    x = np.concatenate([np.broadcast_to(p['cls'], (b, 1, d)), x], 1)
  if attention_type == 'spacetime':
    block = standard_block
  elif attention_type == 'factorized_self_attention_block':
    block = lambda x, bp: fsa_block(x, bp, t, attention_order)
  else:

    def block(x, bp):
      x4 = x.reshape(b, t, h * w, d)
      return standard_block(x4, bp, attention=factorized_dot_product).reshape(b, -1, d)

  return head(pool(encoder(x, p['Transformer'], block), classifier), p)

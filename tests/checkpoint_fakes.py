"""Tiny fake checkpoints in the real layouts, and a numpy ViT that reads them.

The ViT forward is written from the .npz key names alone (either block
numbering), independent of vivit_jax.models, so the surgery tests compare two
implementations.
"""

import math

import numpy as np

D, HEADS, MLP, LAYERS, PATCH, IMAGE, CLASSES = 16, 4, 32, 2, 4, 8, 5
_PRE_LINEN = {
  'MultiHeadDotProductAttention_0': 'MultiHeadDotProductAttention_1',
  'LayerNorm_1': 'LayerNorm_2',
  'MlpBlock_0': 'MlpBlock_3',
}


def make_vit(seed=0, classifier='token', representation=None):
  """Flat ViT weights with AugReg (Linen) numbering and a `head`."""
  rng = np.random.RandomState(seed)
  n = (IMAGE // PATCH) ** 2 + (classifier == 'token')
  hd = D // HEADS
  shapes = {
    'embedding/kernel': (PATCH, PATCH, 3, D),
    'embedding/bias': (D,),
    'Transformer/posembed_input/pos_embedding': (1, n, D),
    'Transformer/encoder_norm/scale': (D,),
    'Transformer/encoder_norm/bias': (D,),
  }
  if classifier == 'token':
    shapes['cls'] = (1, 1, D)
  for i in range(LAYERS):
    b = f'Transformer/encoderblock_{i}/'
    for ln in ('LayerNorm_0', 'LayerNorm_1'):
      shapes.update({f'{b}{ln}/scale': (D,), f'{b}{ln}/bias': (D,)})
    for name in ('query', 'key', 'value'):
      a = f'{b}MultiHeadDotProductAttention_0/{name}/'
      shapes.update({a + 'kernel': (D, HEADS, hd), a + 'bias': (HEADS, hd)})
    a = f'{b}MultiHeadDotProductAttention_0/out/'
    shapes.update({a + 'kernel': (HEADS, hd, D), a + 'bias': (D,)})
    m = f'{b}MlpBlock_0/'
    shapes.update({m + 'Dense_0/kernel': (D, MLP), m + 'Dense_0/bias': (MLP,)})
    shapes.update({m + 'Dense_1/kernel': (MLP, D), m + 'Dense_1/bias': (D,)})
  width = D
  if representation:
    shapes.update({'pre_logits/kernel': (D, representation), 'pre_logits/bias': (representation,)})
    width = representation
  shapes.update({'head/kernel': (width, CLASSES), 'head/bias': (CLASSES,)})
  out = {}
  for k, s in shapes.items():
    scale = 1.0 / math.sqrt(s[0]) if k.endswith('kernel') and len(s) > 1 else 0.3
    value = rng.normal(0, scale, s)
    out[k] = (1.0 + value if k.endswith('scale') else value).astype(np.float32)
  return out


def pre_linen(flat):
  """The same weights in the 2020 files' numbering."""
  out = {}
  for k, v in flat.items():
    parts = k.split('/')
    if len(parts) > 2 and parts[1].startswith('encoderblock_'):
      parts[2] = _PRE_LINEN.get(parts[2], parts[2])
    out['/'.join(parts)] = v
  return out


def write_npz(path, flat, prefix=''):
  np.savez(path, **{prefix + k: v for k, v in flat.items()})
  return str(path)


def _ln(x, w, name):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-6) * w[f'{name}/scale'] + w[f'{name}/bias']


def _dense(x, w, name):
  return x @ w[f'{name}/kernel'] + w[f'{name}/bias']


def _gelu(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _attention(x, w, name):
  q, k, v = (
    np.einsum('bnd,dhk->bnhk', x, w[f'{name}/{p}/kernel']) + w[f'{name}/{p}/bias']
    for p in ('query', 'key', 'value')
  )
  logits = np.einsum('bqhk,bshk->bhqs', q, k) / np.sqrt(q.shape[-1])
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  o = np.einsum('bhqs,bshk->bqhk', p, v)
  return np.einsum('bqhk,hkd->bqd', o, w[f'{name}/out/kernel']) + w[f'{name}/out/bias']


def vit_forward(w, images):
  """images [b, H, W, 3] -> (tokens after encoder_norm [b, n, D], logits [b, C])."""
  w = {k: np.asarray(v, np.float64) for k, v in w.items()}
  old = any('MlpBlock_3' in k for k in w)
  ln1, att, mlp = (
    ('LayerNorm_2', 'MultiHeadDotProductAttention_1', 'MlpBlock_3')
    if old
    else ('LayerNorm_1', 'MultiHeadDotProductAttention_0', 'MlpBlock_0')
  )
  kernel = w['embedding/kernel']
  ph, pw, c, d = kernel.shape
  b, h, wd, _ = images.shape
  x = np.asarray(images, np.float64).reshape(b, h // ph, ph, wd // pw, pw, c)
  x = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, ph * pw * c)
  x = x @ kernel.reshape(-1, d) + w['embedding/bias']
  if 'cls' in w:
    x = np.concatenate([np.broadcast_to(w['cls'], (b, 1, d)), x], axis=1)
  x = x + w['Transformer/posembed_input/pos_embedding']
  i = 0
  while f'Transformer/encoderblock_{i}/LayerNorm_0/scale' in w:
    blk = f'Transformer/encoderblock_{i}/'
    x = x + _attention(_ln(x, w, blk + 'LayerNorm_0'), w, blk + att)
    y = _gelu(_dense(_ln(x, w, blk + ln1), w, blk + mlp + '/Dense_0'))
    x = x + _dense(y, w, blk + mlp + '/Dense_1')
    i += 1
  x = _ln(x, w, 'Transformer/encoder_norm')
  pooled = x[:, 0] if 'cls' in w else x.mean(1)
  if 'pre_logits/kernel' in w:
    pooled = np.tanh(_dense(pooled, w, 'pre_logits'))
  return x, _dense(pooled, w, 'head')


def vivit_config(
  path,
  attention_type='spacetime',
  classifier='token',
  num_frames=2,
  patch_t=2,
  representation=None,
  num_classes=CLASSES,
  **init_from,
):
  enc = {'num_heads': HEADS, 'mlp_dim': MLP, 'num_layers': LAYERS}
  return {
    'model': {
      'hidden_size': D,
      **enc,
      'spatial_transformer': dict(enc),
      'temporal_transformer': dict(enc, num_layers=1),
      'patches': {'size': (PATCH, PATCH, patch_t)},
      'attention_config': {'type': attention_type},
      'classifier': classifier,
      'representation_size': representation,
    },
    'dataset_configs': {'num_classes': num_classes, 'num_frames': num_frames, 'crop_size': IMAGE},
    'init_from': {'checkpoint_path': str(path), **init_from},
  }

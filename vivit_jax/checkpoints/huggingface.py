"""HF transformers' ViViT (Model 1, token classifier) <-> Scenic's parameter tree.

An HF ViViT directory, as `save_pretrained` writes it, holds `config.json` and
`model.safetensors`. PyTorch's Linear stores weight [out, in]; Flax stores
kernel [in, out], with attention kernels split per head: query/key/value
[D, heads, D/heads] and out [heads, D/heads, D]. The Conv3d weight
[D, C, t, h, w] is Flax's [t, h, w, C, D].
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vivit_jax import fileio
from vivit_jax.checkpoints import safetensors
from vivit_jax.config import ConfigError
from vivit_jax.models.build import describe_model

WEIGHTS_NAME = 'model.safetensors'
CONFIG_NAME = 'config.json'
_BLOCK = 'Transformer/encoderblock_{}'
_LAYER = 'vivit.encoder.layer.{}'
# (Scenic suffix inside a block, HF suffix inside a layer) for plain Dense/LayerNorm.
_DENSE = (
  ('MlpBlock_0/Dense_0', 'intermediate.dense'),
  ('MlpBlock_0/Dense_1', 'output.dense'),
)
_NORMS = (('LayerNorm_0', 'layernorm_before'), ('LayerNorm_1', 'layernorm_after'))
_QKV = ('query', 'key', 'value')


def _split_dir(path: str) -> tuple[str, str]:
  if fileio.isdir(path):
    return os.path.join(path, WEIGHTS_NAME), os.path.join(path, CONFIG_NAME)
  return path, os.path.join(os.path.dirname(path), CONFIG_NAME)


def read(path: str) -> dict[str, np.ndarray]:
  """Reads an HF ViViT directory (or its model.safetensors) into Scenic's flat names."""
  weights_path, config_path = _split_dir(path)
  hf_config = fileio.read_json(config_path)
  return from_hf(safetensors.load(weights_path), hf_config['num_attention_heads'])


def from_hf(tensors: Mapping[str, np.ndarray], num_heads: int) -> dict[str, np.ndarray]:
  """HF ViViT state dict -> Scenic flat params."""
  t = {
    k.removeprefix('vivit.') if not k.startswith('classifier') else k: v for k, v in tensors.items()
  }
  out = {
    'embedding/kernel': t['embeddings.patch_embeddings.projection.weight'].transpose(2, 3, 4, 1, 0),
    'embedding/bias': t['embeddings.patch_embeddings.projection.bias'],
    'cls': t['embeddings.cls_token'],
    'Transformer/posembed_input/pos_embedding': t['embeddings.position_embeddings'],
    'Transformer/encoder_norm/scale': t['layernorm.weight'],
    'Transformer/encoder_norm/bias': t['layernorm.bias'],
  }
  if 'classifier.weight' in t:
    out['output_projection/kernel'] = t['classifier.weight'].T
    out['output_projection/bias'] = t['classifier.bias']
  layer = 0
  while f'encoder.layer.{layer}.layernorm_before.weight' in t:
    hf, sc = f'encoder.layer.{layer}', _BLOCK.format(layer)
    for s, h in _NORMS:
      out[f'{sc}/{s}/scale'] = t[f'{hf}.{h}.weight']
      out[f'{sc}/{s}/bias'] = t[f'{hf}.{h}.bias']
    for s, h in _DENSE:
      out[f'{sc}/{s}/kernel'] = t[f'{hf}.{h}.weight'].T
      out[f'{sc}/{s}/bias'] = t[f'{hf}.{h}.bias']
    attn = f'{sc}/MultiHeadDotProductAttention_0'
    for name in _QKV:
      w, b = (
        t[f'{hf}.attention.attention.{name}.weight'],
        t[f'{hf}.attention.attention.{name}.bias'],
      )
      d = w.shape[1]
      out[f'{attn}/{name}/kernel'] = w.T.reshape(d, num_heads, -1)
      out[f'{attn}/{name}/bias'] = b.reshape(num_heads, -1)
    w = t[f'{hf}.attention.output.dense.weight']
    out[f'{attn}/out/kernel'] = w.T.reshape(num_heads, -1, w.shape[0])
    out[f'{attn}/out/bias'] = t[f'{hf}.attention.output.dense.bias']
    layer += 1
  return {k: np.asarray(v) for k, v in out.items()}


def to_hf(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Scenic flat params of a token-classifier Model 1 -> HF ViViT state dict."""
  p = params
  if 'cls' not in p or any(k.startswith('pre_logits') for k in p):
    raise ConfigError(
      "HF ViViT holds Model 1 with model.classifier='token' and no representation_size; "
      'these params do not match it.'
    )
  out = {
    'embeddings.patch_embeddings.projection.weight': p['embedding/kernel'].transpose(4, 3, 0, 1, 2),
    'embeddings.patch_embeddings.projection.bias': p['embedding/bias'],
    'embeddings.cls_token': p['cls'],
    'embeddings.position_embeddings': p['Transformer/posembed_input/pos_embedding'],
    'layernorm.weight': p['Transformer/encoder_norm/scale'],
    'layernorm.bias': p['Transformer/encoder_norm/bias'],
  }
  layer = 0
  while f'{_BLOCK.format(layer)}/LayerNorm_0/scale' in p:
    hf, sc = f'encoder.layer.{layer}', _BLOCK.format(layer)
    for s, h in _NORMS:
      out[f'{hf}.{h}.weight'] = p[f'{sc}/{s}/scale']
      out[f'{hf}.{h}.bias'] = p[f'{sc}/{s}/bias']
    for s, h in _DENSE:
      out[f'{hf}.{h}.weight'] = p[f'{sc}/{s}/kernel'].T
      out[f'{hf}.{h}.bias'] = p[f'{sc}/{s}/bias']
    attn = f'{sc}/MultiHeadDotProductAttention_0'
    for name in _QKV:
      k = p[f'{attn}/{name}/kernel']
      out[f'{hf}.attention.attention.{name}.weight'] = k.reshape(k.shape[0], -1).T
      out[f'{hf}.attention.attention.{name}.bias'] = p[f'{attn}/{name}/bias'].reshape(-1)
    k = p[f'{attn}/out/kernel']
    out[f'{hf}.attention.output.dense.weight'] = k.reshape(-1, k.shape[-1]).T
    out[f'{hf}.attention.output.dense.bias'] = p[f'{attn}/out/bias']
    layer += 1
  out = {f'vivit.{k}': v for k, v in out.items()}
  out['classifier.weight'] = p['output_projection/kernel'].T
  out['classifier.bias'] = p['output_projection/bias']
  return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


# (config key, the value HF's ViViT needs): VivitForVideoClassification is
# Model 1 (joint space-time attention) on 3D-convolution tubelets, classified
# from the class token by one linear layer.
HF_REQUIREMENTS = (
  ('model.attention_config.type', 'spacetime'),
  ('model.temporal_encoding_config.method', '3d_conv'),
  ('model.classifier', 'token'),
  ('model.representation_size', None),
  ('dataset_configs.class_splits', None),
)


def check_config(config: Any) -> None:
  """Raises ConfigError unless a resolved config's model can be written as HF's ViViT.

  Checked before anything is read or written, so a refused conversion leaves no
  output behind; the message names every key to set.
  """
  wrong = []
  for key, needed in HF_REQUIREMENTS:
    value = config
    for part in key.split('.'):
      value = value[part]
    if value != needed:
      wrong.append(f'{key}={needed!r} (this config: {value!r})')
  if wrong:
    raise ConfigError(
      "HF transformers' ViViT (VivitForVideoClassification) is Model 1 with a class token, "
      f'so this model cannot be written in its format: it needs {"; ".join(wrong)}. Train a '
      'model with those settings (--config.KEY=VALUE; docs/pretrained.md shows the command), '
      'or convert without --to=huggingface.'
    )


def hf_config(
  config: Any, num_classes: int, label_names: Sequence[str] | None = None
) -> dict[str, Any]:
  """config.json of HF's VivitForVideoClassification for a Model 1 config.

  Args:
    config: the resolved config.
    num_classes: the classifier's outputs.
    label_names: class i's name at index i (`id2label`, `label2id`); LABEL_i
      when None, as transformers names them.
  """
  model = describe_model(config, num_classes)
  ph, pw, pt = model.tokens.patch_size
  encoder = model.encoders['Transformer']
  num_frames, image_size = model.input_shape[:2]
  if label_names is not None and len(label_names) != num_classes:
    raise ConfigError(
      f'The label map has {len(label_names)} names for a model of {num_classes} classes: give '
      'the label map of the data the model was trained on (--label_map).'
    )
  names = list(label_names) if label_names is not None else None
  labels = {str(i): names[i] if names else f'LABEL_{i}' for i in range(num_classes)}
  return {
    'architectures': ['VivitForVideoClassification'],
    'model_type': 'vivit',
    'num_frames': num_frames,
    'image_size': image_size,
    'tubelet_size': [pt, ph, pw],
    'num_channels': 3,
    'hidden_size': model.tokens.hidden_size,
    'num_hidden_layers': encoder.num_layers,
    'num_attention_heads': encoder.num_heads,
    'intermediate_size': encoder.mlp_dim,
    'hidden_act': 'gelu_fast',  # The tanh approximation, as Flax's nn.gelu.
    'hidden_dropout_prob': 0.0,
    'attention_probs_dropout_prob': 0.0,
    'initializer_range': 0.02,
    'layer_norm_eps': 1e-6,
    'qkv_bias': True,
    'id2label': labels,
    'label2id': {v: int(k) for k, v in labels.items()},
  }


def write(
  path: str,
  params: Mapping[str, np.ndarray],
  config: Any,
  num_classes: int,
  label_names: Sequence[str] | None = None,
) -> None:
  """Writes Model 1 params as an HF ViViT directory (config.json, model.safetensors).

  Everything is converted before the directory is made, so a refusal leaves
  nothing behind; a directory this call made is removed if writing fails.
  """
  tensors = to_hf(params)
  description = json.dumps(hf_config(config, num_classes, label_names), indent=2)
  created = not fileio.exists(path)
  try:
    fileio.makedirs(path)
    safetensors.save(os.path.join(path, WEIGHTS_NAME), tensors)
    with fileio.atomic_write(os.path.join(path, CONFIG_NAME)) as f:
      f.write(description)
  except BaseException:
    if created:
      fileio.rmtree(path)
    raise

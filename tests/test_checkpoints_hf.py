"""HF ViViT directories (import, export) and the convert_checkpoint tool."""

import json
import struct

import checkpoint_fakes as fakes
import jax
import numpy as np

from vivit_jax.checkpoints import convert, detect_format, huggingface, read_checkpoint, safetensors
from vivit_jax.checkpoints.formats import flatten
from vivit_jax.config import resolve
from vivit_jax.inference.convert import convert_checkpoint
from vivit_jax.models import build_model


def _model1(path='', **init_from):
  config = fakes.vivit_config(path, num_frames=4, patch_t=2, **init_from)
  module = build_model(config)
  x = np.zeros((1, 4, 8, 8, 3), np.float32)
  init = jax.device_get(module.init(jax.random.key(0), x, train=False)['params'])
  rng = np.random.RandomState(1)
  trained = jax.tree_util.tree_map(lambda p: p + rng.normal(0, 0.3, p.shape).astype(p.dtype), init)
  return config, module, init, trained


def _write_hf_dir(path, p):
  """An HF ViViT directory written by hand: PyTorch layouts, safetensors bytes."""
  p = flatten(p)
  t = {
    'vivit.embeddings.cls_token': p['cls'],
    'vivit.embeddings.position_embeddings': p['Transformer/posembed_input/pos_embedding'],
    'vivit.embeddings.patch_embeddings.projection.weight': np.moveaxis(
      p['embedding/kernel'], (0, 1, 2, 3, 4), (2, 3, 4, 1, 0)
    ),
    'vivit.embeddings.patch_embeddings.projection.bias': p['embedding/bias'],
    'vivit.layernorm.weight': p['Transformer/encoder_norm/scale'],
    'vivit.layernorm.bias': p['Transformer/encoder_norm/bias'],
    'classifier.weight': p['output_projection/kernel'].T,
    'classifier.bias': p['output_projection/bias'],
  }
  for i in range(fakes.LAYERS):
    s, h = f'Transformer/encoderblock_{i}/', f'vivit.encoder.layer.{i}.'
    for a, b in (('LayerNorm_0', 'layernorm_before'), ('LayerNorm_1', 'layernorm_after')):
      t[f'{h}{b}.weight'], t[f'{h}{b}.bias'] = p[f'{s}{a}/scale'], p[f'{s}{a}/bias']
    for a, b in (
      ('MlpBlock_0/Dense_0', 'intermediate.dense'),
      ('MlpBlock_0/Dense_1', 'output.dense'),
    ):
      t[f'{h}{b}.weight'], t[f'{h}{b}.bias'] = p[f'{s}{a}/kernel'].T, p[f'{s}{a}/bias']
    m = f'{s}MultiHeadDotProductAttention_0/'
    for n in ('query', 'key', 'value'):
      t[f'{h}attention.attention.{n}.weight'] = p[f'{m}{n}/kernel'].reshape(fakes.D, fakes.D).T
      t[f'{h}attention.attention.{n}.bias'] = p[f'{m}{n}/bias'].reshape(-1)
    t[f'{h}attention.output.dense.weight'] = p[f'{m}out/kernel'].reshape(fakes.D, fakes.D).T
    t[f'{h}attention.output.dense.bias'] = p[f'{m}out/bias']
  header, blobs, offset = {}, [], 0
  for name, value in t.items():
    raw = np.ascontiguousarray(value, '<f4').tobytes()
    header[name] = {
      'dtype': 'F32',
      'shape': list(value.shape),
      'data_offsets': [offset, offset + len(raw)],
    }
    blobs.append(raw)
    offset += len(raw)
  encoded = json.dumps(header).encode()
  path.mkdir()
  with open(path / 'model.safetensors', 'wb') as f:
    f.write(struct.pack('<Q', len(encoded)) + encoded + b''.join(blobs))
  config = {
    'model_type': 'vivit',
    'num_attention_heads': fakes.HEADS,
    'hidden_size': fakes.D,
    'num_hidden_layers': fakes.LAYERS,
    'tubelet_size': [2, 4, 4],
    'num_frames': 4,
  }
  (path / 'config.json').write_text(json.dumps(config))
  return t


def test_hf_import_gives_model1_logits_and_export_round_trips(tmp_path):
  config, module, init, trained = _model1()
  tensors = _write_hf_dir(tmp_path / 'hf', trained)
  assert detect_format(str(tmp_path / 'hf')) == 'huggingface'
  config['init_from'] = {'checkpoint_path': str(tmp_path / 'hf'), 'restore_output_proj': True}
  params, entries = convert(config, init)
  assert {e.action for e in entries} == {'copied'}
  video = np.random.RandomState(2).uniform(-1, 1, (2, 4, 8, 8, 3)).astype(np.float32)
  apply = lambda p: module.apply({'params': p}, video, train=False)
  np.testing.assert_array_equal(apply(params), apply(trained))

  huggingface.write(str(tmp_path / 'out'), flatten(params), resolve(config), 5)
  exported = safetensors.load(str(tmp_path / 'out' / 'model.safetensors'))
  assert sorted(exported) == sorted(tensors)
  for name, value in tensors.items():
    np.testing.assert_array_equal(exported[name], value, err_msg=name)
  hf_config = json.loads((tmp_path / 'out' / 'config.json').read_text())
  assert hf_config['tubelet_size'] == [2, 4, 4] and hf_config['hidden_act'] == 'gelu_fast'
  again, _ = read_checkpoint(str(tmp_path / 'out'))
  for name, value in flatten(trained).items():
    np.testing.assert_array_equal(again[name], value)


def test_safetensors_round_trip_keeps_dtypes(tmp_path):
  tensors = {'a': np.arange(6, dtype=np.float16).reshape(2, 3), 'b': np.array([1, -2], np.int64)}
  safetensors.save(str(tmp_path / 'x.safetensors'), tensors)
  raw = (tmp_path / 'x.safetensors').read_bytes()
  assert (8 + struct.unpack('<Q', raw[:8])[0]) % 8 == 0
  back = safetensors.load(str(tmp_path / 'x.safetensors'))
  for k, v in tensors.items():
    assert back[k].dtype == v.dtype
    np.testing.assert_array_equal(back[k], v)


def test_convert_tool_writes_a_scenic_checkpoint_and_reports_every_parameter(tmp_path):
  vit = fakes.make_vit(seed=3, representation=12)
  path = fakes.write_npz(tmp_path / 'vit.npz', fakes.pre_linen(vit))
  config = fakes.vivit_config('', num_frames=4, patch_t=2)
  report = convert_checkpoint(config, path, str(tmp_path / 'out'))
  lines = report.splitlines()
  assert lines[-1] == f'Wrote {tmp_path / "out" / "checkpoint"}'
  assert lines[-2] == '36 copied, 2 adapted, 2 new, 4 dropped'
  assert any(line.split()[:2] == ['dropped', 'pre_logits/kernel'] for line in lines)
  assert any(line.split()[:2] == ['new', 'output_projection/kernel'] for line in lines)
  flat, fmt = read_checkpoint(str(tmp_path / 'out'))
  assert fmt == 'scenic'
  np.testing.assert_array_equal(flat['cls'], vit['cls'])
  np.testing.assert_array_equal(flat['embedding/kernel'][1], vit['embedding/kernel'])
  assert flat['Transformer/posembed_input/pos_embedding'].shape == (1, 1 + 2 * 4, fakes.D)

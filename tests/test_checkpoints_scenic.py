"""Scenic msgpack train states, and Models 3 and 4 from a ViT."""

import os

import checkpoint_fakes as fakes
import flax.serialization
import jax
import numpy as np
import pytest

from vivit_jax.checkpoints import convert, detect_format, formats, read_checkpoint
from vivit_jax.checkpoints.formats import flatten
from vivit_jax.models import build_model


def _init(config, frames, seed=0):
  module = build_model(config)
  x = np.zeros((1, frames, fakes.IMAGE, fakes.IMAGE, 3), np.float32)
  params = module.init(jax.random.key(seed), x, train=False)['params']
  return module, jax.device_get(params)


def _perturbed(params, seed):
  rng = np.random.RandomState(seed)
  return jax.tree_util.tree_map(lambda p: p + rng.normal(0, 0.3, p.shape).astype(p.dtype), params)


def _write_msgpack(path, state):
  with open(path, 'wb') as f:
    f.write(flax.serialization.msgpack_serialize(state))
  return str(path)


def test_model3_with_zero_temporal_attention_on_static_video_is_gap_vit(tmp_path):
  vit = fakes.make_vit(seed=6, classifier='gap')
  path = fakes.write_npz(tmp_path / 'vit.npz', vit)
  config = fakes.vivit_config(
    path,
    'factorized_self_attention_block',
    'gap',
    num_frames=4,
    patch_t=2,
    restore_output_proj=True,
    kernel_init_method='average_frame_initializer',
  )
  module, init = _init(config, 4)
  params, entries = convert(config, init)
  image = np.random.RandomState(7).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
  video = np.repeat(image[:, None], 4, axis=1)
  _, expected = fakes.vit_forward(vit, image)
  logits = module.apply({'params': params}, video, train=False)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
  block = params['Transformer']['encoderblock_0']
  time, space = (
    block['MultiHeadDotProductAttention_time'],
    block['MultiHeadDotProductAttention_space'],
  )
  assert not np.any(time['out']['kernel']) and not np.any(time['out']['bias'])
  np.testing.assert_array_equal(time['query']['kernel'], space['query']['kernel'])
  assert not [e for e in entries if e.action in ('new', 'dropped')]


def test_model3_copy_spatial_option_copies_the_whole_attention(tmp_path):
  path = fakes.write_npz(tmp_path / 'vit.npz', fakes.make_vit(classifier='gap'))
  config = fakes.vivit_config(
    path, 'factorized_self_attention_block', 'gap', temporal_attention_init='copy_spatial'
  )
  _, init = _init(config, 2)
  params, _ = convert(config, init)
  block = params['Transformer']['encoderblock_1']
  np.testing.assert_array_equal(
    block['MultiHeadDotProductAttention_time']['out']['kernel'],
    block['MultiHeadDotProductAttention_space']['out']['kernel'],
  )


def test_model4_copies_vit_blocks_one_to_one(tmp_path):
  vit = fakes.make_vit(seed=8, classifier='gap')
  path = fakes.write_npz(tmp_path / 'vit.npz', fakes.pre_linen(vit))
  config = fakes.vivit_config(path, 'factorized_dot_product_attention', 'gap', num_frames=4)
  _, init = _init(config, 4)
  params, entries = convert(config, init)
  flat = flatten(params)
  for name, value in vit.items():
    if name.startswith('Transformer/encoderblock_'):
      np.testing.assert_array_equal(flat[name], value)
  assert {e.action for e in entries if e.name.startswith('Transformer/encoderblock_')} == {'copied'}


@pytest.mark.parametrize('layout', ['params_file', 'optimizer_target_dir'])
def test_scenic_train_state_loads_exactly(tmp_path, layout):
  config = fakes.vivit_config('', classifier='token', representation=12)
  _, init = _init(config, 2)
  trained = _perturbed(init, seed=9)
  if layout == 'params_file':
    path = _write_msgpack(tmp_path / 'model.msgpack', {'params': trained, 'global_step': 3})
  else:
    _write_msgpack(tmp_path / 'checkpoint_7', {'optimizer': {'target': init}})
    _write_msgpack(tmp_path / 'checkpoint_12', {'optimizer': {'target': trained, 'state': {}}})
    path = str(tmp_path)
  assert detect_format(path) == 'scenic'
  config['init_from'] = {'checkpoint_path': path, 'restore_output_proj': True}
  params, entries = convert(config, init)
  for name, value in flatten(trained).items():
    np.testing.assert_array_equal(flatten(params)[name], value, err_msg=name)
  assert {e.action for e in entries} == {'copied'}


def test_factorised_encoder_from_scenic_fe_interpolates_temporal_posemb(tmp_path):
  source_config = fakes.vivit_config('', 'factorized_encoder', num_frames=4, patch_t=2)
  _, source = _init(source_config, 4)
  source = _perturbed(source, seed=10)
  path = _write_msgpack(tmp_path / 'checkpoint', {'params': source})
  config = fakes.vivit_config(os.path.dirname(path), 'factorized_encoder', num_frames=8)
  _, init = _init(config, 8)
  params, entries = convert(config, init)
  old = source['TemporalTransformer']['posembed_input']['pos_embedding']  # [1, 1 + 2, d]
  new = params['TemporalTransformer']['posembed_input']['pos_embedding']  # [1, 1 + 4, d]
  np.testing.assert_array_equal(new[0, 0], old[0, 0])
  np.testing.assert_allclose(
    new[0, 1:],
    [
      old[0, 1],
      0.75 * old[0, 1] + 0.25 * old[0, 2],
      0.25 * old[0, 1] + 0.75 * old[0, 2],
      old[0, 2],
    ],
    rtol=1e-6,
  )
  np.testing.assert_array_equal(
    params['TemporalTransformer']['encoderblock_0']['MlpBlock_0']['Dense_0']['kernel'],
    source['TemporalTransformer']['encoderblock_0']['MlpBlock_0']['Dense_0']['kernel'],
  )
  assert read_checkpoint(path)[1] == 'scenic'
  assert {e.action for e in entries if e.name.startswith('TemporalTransformer/')} == {
    'copied',
    'adapted',
  }


def test_one_msgpack_reader_finds_params_and_names_what_is_wrong(tmp_path):
  params = {'Dense_0': {'kernel': np.arange(6.0).reshape(2, 3)}}
  for state in ({'params': params, 'global_step': 3}, {'optimizer': {'target': params}}):
    path = _write_msgpack(tmp_path / 'state', state)
    tree = formats.read_msgpack_params(path, 'Point at another file.')
    np.testing.assert_array_equal(tree['Dense_0']['kernel'], params['Dense_0']['kernel'])
  junk = tmp_path / 'junk'
  junk.write_bytes(b'not msgpack at all')
  with pytest.raises(formats.CheckpointFormatError, match=r"junk' is not a Scenic/Flax msgpack "):
    formats.read_msgpack_params(str(junk), 'Point at another file.')
  with pytest.raises(formats.CheckpointFormatError, match=r'\. Point at another file\.$'):
    formats.read_msgpack_params(str(junk), 'Point at another file.')
  empty = _write_msgpack(tmp_path / 'empty', {'params': {}})
  with pytest.raises(formats.CheckpointFormatError, match='holds no parameters under `params`'):
    formats.read_msgpack_params(empty, 'Point at another file.')


def test_a_failed_msgpack_write_leaves_the_old_checkpoint_whole(tmp_path):
  path = str(tmp_path / 'out' / 'checkpoint')
  formats.write_scenic(path, {'a': {'b': np.ones(3, np.float32)}})
  before = open(path, 'rb').read()
  with pytest.raises(ValueError, match='not supported'):
    formats.write_scenic(path, {'a': {'b': object()}})  # msgpack cannot hold an object array.
  assert open(path, 'rb').read() == before
  assert os.listdir(tmp_path / 'out') == ['checkpoint']

"""ViT .npz checkpoints (both numberings, big_vision trees) into Models 1 and 2."""

import checkpoint_fakes as fakes
import jax
import numpy as np
import pytest

from vivit_jax.checkpoints import ShapeError, adapters, convert, detect_format, read_checkpoint
from vivit_jax.config import ConfigError
from vivit_jax.models import build_model


def _init(config, frames, seed=0):
  module = build_model(config)
  x = np.zeros((1, frames, fakes.IMAGE, fakes.IMAGE, 3), np.float32)
  params = module.init(jax.random.key(seed), x, train=False)['params']
  return module, jax.device_get(params)


def _apply(module, params, x, **kw):
  return module.apply({'params': params}, x, train=False, **kw)


def _report(entries):
  return {e.name: (e.action, e.detail) for e in entries if e.action != 'dropped'}


@pytest.mark.parametrize('numbering', ['linen', 'pre_linen'])
@pytest.mark.parametrize('prefix', ['', 'params/', 'opt/target/'])
def test_reads_every_npz_layout_into_scenic_names(tmp_path, numbering, prefix):
  vit = fakes.make_vit(representation=12)
  weights = fakes.pre_linen(vit) if numbering == 'pre_linen' else vit
  path = fakes.write_npz(tmp_path / 'vit.npz', weights, prefix)
  flat, fmt = read_checkpoint(path)
  assert fmt == detect_format(path) == 'big_vision'
  expected = {k.replace('head/', 'output_projection/'): v for k, v in vit.items()}
  assert sorted(flat) == sorted(expected)
  for k, v in expected.items():
    np.testing.assert_array_equal(flat[k], v)


def test_npz_is_read_without_pickle(tmp_path):
  path = tmp_path / 'evil.npz'
  np.savez(path, cls=np.array([object()], dtype=object))
  with pytest.raises(ValueError, match='pickle'):
    read_checkpoint(str(path))


def test_model1_single_temporal_token_central_frame_gives_vit_logits(tmp_path):
  vit = fakes.make_vit(seed=1, representation=12)
  path = fakes.write_npz(tmp_path / 'vit.npz', fakes.pre_linen(vit))
  config = fakes.vivit_config(
    path,
    num_frames=2,
    patch_t=2,
    representation=12,
    restore_output_proj=True,
    kernel_init_method='central_frame_initializer',
  )
  module, init = _init(config, 2)
  params, entries = convert(config, init)
  rng = np.random.RandomState(0)
  image = rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
  # Only the central frame (index t // 2 = 1) may matter: frame 0 is noise.
  video = np.stack([rng.uniform(-1, 1, image.shape).astype(np.float32), image], axis=1)
  _, expected = fakes.vit_forward(vit, image)
  np.testing.assert_allclose(_apply(module, params, video), expected, rtol=1e-4, atol=1e-5)
  report = _report(entries)
  assert report['embedding/kernel'][0] == 'adapted'
  assert report['output_projection/kernel'] == ('copied', '')
  assert report['pre_logits/kernel'] == ('copied', '')
  assert not [e for e in entries if e.action in ('new', 'dropped')]


@pytest.mark.parametrize('kernel', ['average_frame_initializer', 'central_frame_initializer'])
def test_gap_model1_on_static_video_gives_gap_vit_logits(tmp_path, kernel):
  vit = fakes.make_vit(seed=2, classifier='gap')
  path = fakes.write_npz(tmp_path / 'vit.npz', vit, 'params/')
  config = fakes.vivit_config(
    path,
    classifier='gap',
    num_frames=4,
    patch_t=2,
    restore_output_proj=True,
    kernel_init_method=kernel,
    positional_embed_size_change='tile',
  )
  module, init = _init(config, 4)
  params, entries = convert(config, init)
  image = np.random.RandomState(3).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
  video = np.repeat(image[:, None], 4, axis=1)
  _, expected = fakes.vit_forward(vit, image)
  np.testing.assert_allclose(_apply(module, params, video), expected, rtol=1e-4, atol=1e-5)
  posemb = _report(entries)['Transformer/posembed_input/pos_embedding']
  assert posemb == ('adapted', 'tile grid (1, 2, 2) -> (2, 2, 2)')


def test_factorised_encoder_spatial_output_and_cls_equal_vit(tmp_path):
  vit = fakes.make_vit(seed=4)
  path = fakes.write_npz(tmp_path / 'vit.npz', fakes.pre_linen(vit))
  config = fakes.vivit_config(path, 'factorized_encoder', num_frames=4, patch_t=2)
  module, init = _init(config, 4)
  params, entries = convert(config, init)
  video = np.random.RandomState(5).uniform(-1, 1, (2, 4, 8, 8, 3)).astype(np.float32)
  _, state = _apply(
    module,
    params,
    video,
    capture_intermediates=lambda m, _: m.name == 'SpatialTransformer',
    mutable=['intermediates'],
  )
  (spatial,) = state['intermediates']['SpatialTransformer']['__call__']
  assert spatial.shape == (2, 2, 5, fakes.D)  # [b, tubelets, cls + 4 patches, d]
  for tubelet, frame in enumerate((1, 3)):  # The central frame of each tubelet.
    tokens, _ = fakes.vit_forward(vit, video[:, frame])
    np.testing.assert_allclose(spatial[:, tubelet], tokens, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(params['cls_SpatialTransformer'], vit['cls'])
  report = _report(entries)
  assert report['cls_SpatialTransformer'] == ('copied', 'from cls')
  temporal = [e for e in entries if e.name.startswith('TemporalTransformer/')]
  assert temporal and all(e.action == 'new' for e in temporal)
  np.testing.assert_array_equal(
    params['TemporalTransformer']['encoderblock_0']['LayerNorm_0']['scale'],
    init['TemporalTransformer']['encoderblock_0']['LayerNorm_0']['scale'],
  )
  assert report['output_projection/kernel'][0] == 'new'
  assert [e.name for e in entries if e.action == 'dropped'] == [
    'output_projection/bias',
    'output_projection/kernel',
  ]


def test_posemb_resize_and_resize_tile():
  rng = np.random.RandomState(0)
  source = rng.normal(size=(1, 1 + 4, 3))  # cls + a 2x2 grid.
  init = np.zeros((1, 1 + 2 * 4 * 4, 3))
  common = dict(source_grid=(1, 2, 2), target_grid=(2, 4, 4), source_cls=True)
  resized, how = adapters.adapt_posemb('p', source, init, method='resize', **common)
  tiled, _ = adapters.adapt_posemb('p', source, init, method='resize_tile', **common)
  np.testing.assert_allclose(resized, tiled)  # One source frame: both repeat it.
  grid = resized[0, 1:].reshape(2, 4, 4, 3)
  # Half-pixel linear interpolation 2 -> 4: corners copy, inner rows mix 3:1.
  np.testing.assert_allclose(grid[0, 0, 0], source[0, 1])
  np.testing.assert_allclose(grid[0, 1, 0], 0.75 * source[0, 1] + 0.25 * source[0, 3])
  np.testing.assert_array_equal(resized[0, 0], source[0, 0])
  assert how == 'adapted: resize grid (1, 2, 2) -> (2, 4, 4); class-token row copied'


def test_temporal_tokens_that_do_not_divide_are_an_error():
  source, init = np.zeros((1, 2 * 4, 3)), np.zeros((1, 3 * 4, 3))
  with pytest.raises(ShapeError, match=r"'pos'.*\(1, 12, 3\).*\(1, 8, 3\).*do not divide"):
    adapters.adapt_posemb(
      'pos',
      source,
      init,
      source_grid=(2, 2, 2),
      target_grid=(3, 2, 2),
      source_cls=False,
      method='tile',
    )


def test_unadaptable_shape_names_parameter_and_both_shapes(tmp_path):
  vit = fakes.make_vit()
  vit['Transformer/encoderblock_1/MlpBlock_0/Dense_0/kernel'] = np.zeros((16, 64), np.float32)
  path = fakes.write_npz(tmp_path / 'vit.npz', vit)
  config = fakes.vivit_config(path)
  _, init = _init(config, 2)
  with pytest.raises(ShapeError) as error:
    convert(config, init)
  message = str(error.value)
  assert "'Transformer/encoderblock_1/MlpBlock_0/Dense_0/kernel'" in message
  assert '(16, 32)' in message and '(16, 64)' in message


def test_arp_inflation_divides_the_rank_pooling_weights_by_t():
  # Scenic: kernel_k = 2D kernel * a_k / t. For t = 2, H = [0, 1, 1.5]:
  # a_1 = 2*2 - 3*1.5 = -0.5, a_2 = 2*1 - 3*0.5 = 0.5, so the frames get -0.25 and 0.25.
  source = np.full((1, 1, 1, 1), 2.0, np.float32)
  kernel, _ = adapters.inflate_kernel('k', source, (2, 1, 1, 1, 1), 'average_arp_frame_initializer')
  np.testing.assert_allclose(kernel.ravel(), [-0.5, 0.5])
  kernel, _ = adapters.inflate_kernel('k', source, (4, 1, 1, 1, 1), 'average_arp_frame_initializer')
  np.testing.assert_allclose(kernel.ravel(), 2.0 * adapters.arp_weights(4) / 4)


def _config_error(config, params):
  with pytest.raises(ConfigError) as error:
    convert(config, params)
  return str(error.value)


def test_params_that_disagree_with_the_config_are_named_before_any_surgery(tmp_path):
  path = fakes.write_npz(tmp_path / 'vit.npz', fakes.make_vit())
  # Params of 8x8 inputs handed with a config of 16x16 inputs: the config's
  # token grid (1, 4, 4) is not the params' (1, 2, 2).
  _, params = _init(fakes.vivit_config(path), 2)
  big = fakes.vivit_config(path)
  big['dataset_configs']['crop_size'] = 16
  message = _config_error(big, params)
  assert 'do not match what the config describes' in message
  assert 'crop_size=16' in message and 'token grid' in message
  assert "'Transformer/posembed_input/pos_embedding'" in message
  assert '(1, 5, 16)' in message and '(1, 17, 16)' in message
  assert 'Cannot initialise' not in message
  # Params of Model 1 handed with a Model 2 config: the variant is named.
  message = _config_error(fakes.vivit_config(path, attention_type='factorized_encoder'), params)
  assert "attention_config.type='factorized_encoder'" in message
  assert "'SpatialTransformer/" in message


def test_a_checkpoint_array_of_the_target_shape_is_copied(tmp_path):
  # Non-square 4x2 patches: the 2x4 token grid cannot be read from the 8 tokens
  # alone, but the array already has the model's shape, so it is copied (as Scenic does).
  vit = fakes.make_vit()
  vit['embedding/kernel'] = vit['embedding/kernel'][:, :2]
  vit['Transformer/posembed_input/pos_embedding'] = (
    np.random.RandomState(1).normal(size=(1, 9, fakes.D)).astype(np.float32)
  )
  path = fakes.write_npz(tmp_path / 'vit.npz', vit)
  config = fakes.vivit_config(path, num_frames=1, patch_t=1)
  config['model']['patches']['size'] = (4, 2, 1)
  _, params = _init(config, 1)
  new, entries = convert(config, params)
  name = 'Transformer/posembed_input/pos_embedding'
  np.testing.assert_array_equal(new['Transformer']['posembed_input']['pos_embedding'], vit[name])
  assert _report(entries)[name] == ('copied', '')

"""The ablation tool end to end: a two-row sweep trains, reports, plots and resumes;
tubelet_init's image pre-training is inflated into every row."""

import json
import os
import re

import jax
import numpy as np
import pytest
from train_fakes import compilation_cache, write_tiny_split  # noqa: F401 (fixture)

from vivit_jax import config as config_lib
from vivit_jax.checkpoints import formats, load_pretrained
from vivit_jax.checkpoints.formats import read_checkpoint, read_orbax
from vivit_jax.config import load_config_file
from vivit_jax.harness import ablation
from vivit_jax.harness.ablation import pretrain, runner
from vivit_jax.models import build_model
from vivit_jax.models.stats import abstract_params, count_params
from vivit_jax.train.state import init_params
from vivit_jax.train.trainer import train_and_evaluate

pytestmark = pytest.mark.usefixtures('compilation_cache')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {'train': 16, 'validation': 8, 'test': 8}


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
  """configs/synthetic.py shrunk: width 16, 1 layer, 4 frames of 16x16, 2 steps."""
  data_dir = str(tmp_path_factory.mktemp('data'))
  for split, num in SIZES.items():
    write_tiny_split(data_dir, split, num)
  config = load_config_file(os.path.join(REPO, 'configs', 'synthetic.py'))
  d = config.dataset_configs
  d.base_dir = data_dir
  d.generate_synthetic_if_missing = False
  d.tables = {split: f'tiny_{split}@1' for split in SIZES}
  d.examples_per_subset = dict(SIZES)
  d.update(num_classes=3, num_frames=4, stride=1, min_resize=16, crop_size=16)
  d.shuffle_buffer_size = 16
  d.do_multicrop_test = False  # One evaluation program fewer to compile.
  config.model.update(hidden_size=16, num_layers=1, num_heads=2, mlp_dim=16)
  config.update(batch_size=8, eval_batch_size=8, num_training_steps=2, log_eval_steps=2)
  config.update(checkpoint_steps=1, log_summary_steps=1, write_summary=False, count_flops=False)
  config.lr_configs.update(steps_per_cycle=2, warmup_steps=1)
  return config_lib.resolve(config)


def _row_dir(workdir, label):
  return os.path.join(workdir, 'temporal_layers', label, 'seed_0')


def _read(path):
  with open(path) as f:
    return f.read()


def test_two_row_sweep_resumes_skips_finished_rows_and_reports(tiny_config, tmp_path):
  workdir = str(tmp_path / 'sweep')
  trained = []

  def train(config, directory, interrupt=False):
    trained.append(os.path.basename(os.path.dirname(directory)))
    if interrupt and trained[-1] == '1_temporal_layers':
      # Killed after the checkpoint of step 1 of 2: a 1-step run leaves that
      # checkpoint; a killed run would not have written results.json.
      short = config_lib.resolve(config)
      short.num_training_steps = 1
      train_and_evaluate(short, directory)
      os.remove(os.path.join(directory, 'results.json'))
      raise KeyboardInterrupt
    return train_and_evaluate(config, directory)

  def ablate(interrupt):
    return ablation.ablate(
      'temporal_layers',
      tiny_config,
      workdir,
      values=[0, 1],
      train_fn=lambda c, d: train(c, d, interrupt),
    )

  with pytest.raises(KeyboardInterrupt):
    ablate(interrupt=True)
  assert trained == ['0_temporal_layers', '1_temporal_layers']
  assert os.path.exists(os.path.join(_row_dir(workdir, '0_temporal_layers'), 'results.json'))
  assert not os.path.exists(os.path.join(_row_dir(workdir, '1_temporal_layers'), 'results.json'))

  # The rerun skips the finished row and resumes the interrupted one from step 1.
  trained.clear()
  md, png = ablate(interrupt=False)
  assert trained == ['1_temporal_layers']
  resumed = _row_dir(workdir, '1_temporal_layers')
  assert sorted(os.listdir(os.path.join(resumed, 'checkpoints'))) == ['1', '2']
  assert json.loads(_read(os.path.join(resumed, 'results.json')))['step'] == 2

  # A third run trains nothing.
  trained.clear()
  ablate(interrupt=False)
  assert trained == []

  assert md == os.path.join(workdir, 'temporal_layers.md')
  with open(png, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  lines = [line for line in _read(md).splitlines() if line.startswith('| ')]
  assert len(lines) == 3  # Header and two rows.
  zero, one = (line.split('|')[1:-1] for line in lines[1:])
  assert zero[0].strip() == '0 temporal layers' and one[0].strip() == '1 temporal layers'
  # The paper's Table 3 numbers sit beside ours.
  assert zero[8].strip() == '75.8' and one[8].strip() == '78.6'
  for row, label in ((zero, '0_temporal_layers'), (one, '1_temporal_layers')):
    results = json.loads(_read(os.path.join(_row_dir(workdir, label), 'results.json')))
    # Top-1 is the validation split's (no test run), in percent, from one seed;
    # costs were measured.
    assert row[1].strip() == f'{100 * results["validation"]["top1"]:.1f}'
    assert row[3].strip() == '1'
    assert float(row[4]) > 0 and float(row[5]) > 0 and float(row[6]) > 0 and float(row[7]) > 0
  # The baseline has no temporal encoder: fewer parameters than one temporal layer.
  assert float(zero[5]) < float(one[5])


def test_rows_override_the_config_each_row_and_seed(tiny_config):
  sweep = ablation.get_sweep('regularisers', tiny_config)
  configs = [runner.row_config(tiny_config, row, seed=1) for row in sweep.rows]
  assert [c.model.stochastic_droplayer_rate for c in configs] == [0.0, 0.2, 0.2, 0.2, 0.2]
  aug = [c.dataset_configs.augmentation_params.do_rand_augment for c in configs]
  assert aug == [False, False, True, True, True]
  assert [c.label_smoothing for c in configs] == [0.0, 0.0, 0.0, 0.2, 0.2]
  assert [c.mixup.alpha for c in configs] == [None, None, None, None, 0.1]
  assert {c.rng_seed for c in configs} == {tiny_config.rng_seed + 1}
  with pytest.raises(config_lib.ConfigError, match='model.num_layerz'):
    config_lib.with_overrides(tiny_config, {'model.num_layerz': 2})


def _row_params(config):
  module = build_model(config)
  d = config.dataset_configs
  params = init_params(module, jax.random.key(0), (d.num_frames, d.crop_size, d.crop_size, 3))
  return load_pretrained(config, params)


def test_image_pretraining_feeds_every_tubelet_init_row(tiny_config, tmp_path):
  workdir = str(tmp_path)
  path = pretrain.pretrain_image_model(tiny_config, workdir, num_steps=2)
  source, _ = read_checkpoint(path, 'scenic')
  kernel_2d = source['embedding/kernel']
  assert kernel_2d.shape == (8, 8, 3, 16)
  assert not any(k.startswith('output_projection') for k in source)
  # A second call reuses the file instead of training again.
  assert pretrain.pretrain_image_model(tiny_config, workdir, train_fn=None) == path

  sweep = ablation.get_sweep('tubelet_init', tiny_config, checkpoint=path)
  rows = {row.label: runner.row_config(tiny_config, row, 0) for row in sweep.rows}
  assert rows['random'].init_from.checkpoint_path is None
  t = tiny_config.model.patches.size[2]
  central = np.asarray(_row_params(rows['central frame'])['embedding']['kernel'])
  np.testing.assert_allclose(central[t // 2], kernel_2d, rtol=1e-6)
  assert not np.any(central[: t // 2])
  average = np.asarray(_row_params(rows['filter inflation'])['embedding']['kernel'])
  np.testing.assert_allclose(average, np.stack([kernel_2d / t] * t), rtol=1e-6)
  sampled = _row_params(rows['uniform frame sampling'])
  np.testing.assert_allclose(
    np.asarray(sampled['embedding']['kernel']).reshape(kernel_2d.shape), kernel_2d, rtol=1e-6
  )


def test_unknown_sweep_names_the_known_ones(tiny_config):
  with pytest.raises(ValueError, match='variants'):
    ablation.get_sweep('variant', tiny_config)


def test_variants_share_width_and_depth_and_count_params_as_the_paper():
  base = config_lib.resolve(load_config_file(os.path.join(REPO, 'configs', 'synthetic.py')))
  sweep = ablation.get_sweep('variants', base)
  shape = (base.dataset_configs.num_frames, 32, 32, 3)
  params = {}
  for row in sweep.rows:
    config = runner.row_config(base, row, 0)
    assert config.model.hidden_size == 96
    params[row.label] = count_params(abstract_params(build_model(config), shape))
    if config.model.attention_config.type == 'factorized_encoder':
      assert config.model.spatial_transformer.num_layers == 4
      assert config.model.temporal_transformer.num_layers == 1  # A third of 4, as 4 of 12.
    else:
      assert config.model.num_layers == 4
  # As in the paper's Table 2: Model 4 only regroups Model 1's heads (88.9M both); Model 2
  # adds a temporal encoder to the baseline's; Model 3 adds a temporal attention per block.
  assert params['4 factorised dot-product'] == params['1 spatio-temporal']
  assert params['2 average-pool baseline'] < params['2 factorised encoder']
  assert params['3 factorised self-attn'] > params['1 spatio-temporal']


def test_variants_pretrained_starts_each_row_from_the_baseline_frozen_and_resumes(
  tiny_config, tmp_path
):
  workdir = str(tmp_path)
  with pytest.raises(config_lib.ConfigError, match='--pretrain_config'):
    ablation.build_sweep('variants_pretrained', tiny_config, workdir)
  sweep = ablation.build_sweep(
    'variants_pretrained', tiny_config, workdir, pretrain_config=tiny_config
  )
  baseline_dir = os.path.join(workdir, 'variants_pretrained', 'pretrain', 'seed_0')
  assert runner.is_finished(baseline_dir)
  # A second build finds the finished pre-training and trains nothing.
  ablation.build_sweep(
    'variants_pretrained',
    tiny_config,
    workdir,
    pretrain_config=tiny_config,
    train_fn=lambda *a: pytest.fail('pre-trained again'),
  )
  rows = {row.label: runner.row_config(tiny_config, row, 0) for row in sweep.rows}
  assert {c.init_from.checkpoint_path for c in rows.values()} == {baseline_dir}

  # Model 3 starts from the baseline's spatial encoder: its blocks' spatial
  # halves renamed, the position embedding tiled over time, a new head.
  config = rows['3 factorised self-attn']
  baseline = read_orbax(baseline_dir)
  start = formats.flatten(_row_params(config))
  mlp = 'encoderblock_0/{}/Dense_0/kernel'
  np.testing.assert_array_equal(
    start['Transformer/' + mlp.format('MlpBlock')],
    baseline['SpatialTransformer/' + mlp.format('MlpBlock_0')],
  )
  posemb = 'posembed_input/pos_embedding'
  t = tiny_config.dataset_configs.num_frames // tiny_config.model.patches.size[2]
  np.testing.assert_array_equal(
    start[f'Transformer/{posemb}'], np.tile(baseline[f'SpatialTransformer/{posemb}'], (1, t, 1))
  )

  # Trained 1 step, then resumed to 2, it equals 2 steps in one go; what the
  # row freezes is still the baseline's, the temporal attention and head moved.
  one = config_lib.with_overrides(config, {'num_training_steps': 1})
  resumed, straight = str(tmp_path / 'resumed'), str(tmp_path / 'straight')
  train_and_evaluate(one, resumed)
  os.remove(os.path.join(resumed, 'results.json'))
  train_and_evaluate(config, resumed)
  train_and_evaluate(config, straight)
  after, again = read_orbax(resumed), read_orbax(straight)
  assert sorted(after) == sorted(again) == sorted(start)
  pattern, moved = config.optimizer_configs.freeze_params, []
  for name in start:
    np.testing.assert_array_equal(after[name], again[name], err_msg=name)
    if re.match(pattern, name):
      np.testing.assert_array_equal(after[name], start[name], err_msg=name)
    elif not np.array_equal(after[name], start[name]):
      moved.append(name)
  assert any('MultiHeadDotProductAttention_time' in n for n in moved)
  assert any(n.startswith('output_projection/') for n in moved)

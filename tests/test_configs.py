"""Every shipped config builds its model, and the paper's configs have its size and cost."""

import glob
import os

import jax
import pytest

from vivit_jax.config import load_config_file, resolve
from vivit_jax.models import build_model, input_shape, stats
from vivit_jax.models import stats as model_stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(
  p
  for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
  if not os.path.basename(p).startswith('_')
)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: os.path.basename(p)[:-3])
def test_config_builds_its_model(path):
  config = resolve(load_config_file(path))
  module = build_model(config)
  params = stats.abstract_params(module, input_shape(config))
  video = jax.ShapeDtypeStruct((2, *input_shape(config)), 'float32')
  logits = jax.eval_shape(lambda p, v: module.apply({'params': p}, v, train=False), params, video)
  splits = config.dataset_configs.class_splits
  num_classes = sum(splits) if splits else config.dataset_configs.num_classes
  assert logits.shape == (2, num_classes)


@pytest.mark.parametrize('name', sorted(model_stats.PAPER))
def test_paper_configs_match_table_2(name):
  config = load_config_file(os.path.join(ROOT, 'configs', f'{name}.py'))
  result = model_stats.model_stats(config, name)
  paper_params, paper_gflops = model_stats.PAPER[name]
  if paper_params is not None:
    assert abs(result.params_m - paper_params) < 0.1
  assert abs(result.gflops / paper_gflops - 1) < 0.02
  assert str(round(result.gflops, 1)) in result.row()

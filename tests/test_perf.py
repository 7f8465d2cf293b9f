"""Benchmark measurements: costs agree with model_stats, timings are real, the report is written."""

import os
import subprocess
import sys

import pytest
from cpu_env import xla_flags

from vivit_jax.harness import perf, variants
from vivit_jax.models import build_model, input_shape, stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIG = """
from vivit_jax.config import get_defaults

def get_config():
  c = get_defaults()
  c.model.hidden_size = 16
  c.model.update(num_heads=2, mlp_dim=32, num_layers=1)
  c.model.spatial_transformer.update(num_heads=2, mlp_dim=32, num_layers=1)
  c.model.temporal_transformer.update(num_heads=2, mlp_dim=32, num_layers=1)
  c.model.patches.size = (8, 8, 2)
  c.dataset_configs.update(num_classes=4, num_frames=4, crop_size=16)
  return c
"""


def tiny():
  """The same tiny config the tool test writes to a file."""
  namespace = {}
  exec(TINY_CONFIG, namespace)
  return namespace['get_config']()


@pytest.mark.parametrize('name', ['spacetime', 'average_pool_baseline'])
def test_measure_counts_what_model_stats_counts(name):
  config = variants.variant_config(tiny(), name)
  result = perf.measure(config, batch_size=2, repeats=1)
  module = build_model(config)
  params = stats.abstract_params(module, input_shape(config))
  assert result.params_m == pytest.approx(stats.count_params(params) / 1e6)
  forward = stats.forward_gflops(module, params, input_shape(config))
  assert result.gflops == pytest.approx(forward, rel=0.02)  # Batch 2 vs 1: a few ops differ.
  # A train step costs more than a forward pass; both were timed and take memory.
  assert result.train_flops > 2 * 2e9 * result.gflops
  assert 0 < result.infer_s and 0 < result.train_s
  assert result.train_bytes > 0


def test_variant_config_sets_the_attention_type():
  base = tiny()
  assert variants.variant_config(base, 'spacetime').model.attention_config.type == 'spacetime'
  baseline = variants.variant_config(base, 'average_pool_baseline').model.attention_config
  assert baseline.type == 'factorized_encoder' and baseline.spatial_only_baseline
  assert base.model.attention_config.type == 'spacetime'  # not mutated
  assert variants.variant_config(base, 'spacetime', remat=True).model.remat


def test_matmul_peak_and_embedding_comparison_are_positive():
  assert perf.matmul_peak('float32', repeats=1, n=128) > 0
  ours, conv = perf.embedding_comparison(tiny(), batch_size=1, repeats=1)
  assert ours > 0 and conv > 0


def test_benchmark_tool_writes_the_report(tmp_path):
  config = tmp_path / 'tiny.py'
  config.write_text(TINY_CONFIG)
  out = tmp_path / 'BENCH.md'
  subprocess.run(
    [
      sys.executable,
      '-m',
      'vivit_jax.tools.benchmark',
      f'--config={config}',
      '--variants=factorized_dot_product_attention',
      '--repeats=1',
      '--frames=2,4',
      '--nofast_paths',
      f'--out={out}',
    ],
    cwd=ROOT,
    check=True,
    capture_output=True,
    env={**os.environ, 'XLA_FLAGS': xla_flags()},
  )
  report = out.read_text()
  assert '| factorized_dot_product_attention |' in report
  assert 'Dense matmul bound measured in this run' in report
  assert (tmp_path / 'BENCH_scaling.png').stat().st_size > 1000

"""The accelerator check: at the tiny size on a CPU it writes every section, all numbers real.

The tool runs as a subprocess (as on the day it meets a GPU), on one CPU device, with the
smallest settings: the tiny size, one variant, one timed step, a 2-step training run of a
16-wide configs/synthetic.py.
"""

import math
import os
import re
import subprocess
import sys
import textwrap
import uuid

import pytest
from cpu_env import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = (
  'Host and devices',
  'Measured matmul peak',
  'Train step',
  'Input pipeline',
  'End-to-end training',
)
# The training run of configs/synthetic.py at its smallest (as tests/test_docs.py's _MODEL).
TINY_TRAINING = [
  '--config=configs/synthetic.py',
  '--config.model.hidden_size=16',
  '--config.model.num_heads=2',
  '--config.model.mlp_dim=32',
  '--config.model.num_layers=1',
  '--config.batch_size=8',
  '--config.eval_batch_size=8',
  '--config.count_flops=False',
]


def _run(args, timeout=300):
  # One CPU device, as on a one-accelerator machine (conftest gives tests eight).
  env = {**os.environ, 'XLA_FLAGS': xla_flags()}
  done = subprocess.run(
    [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return done


def section(report: str, title: str) -> str:
  """The text of `## title` up to the next section."""
  match = re.search(rf'^## {re.escape(title)}\n(.*?)(?=^## |\Z)', report, re.M | re.S)
  assert match, f'no section {title!r}'
  return match[1]


def table(text: str) -> list[dict[str, str]]:
  """The first Markdown table of `text` as one dict per row, keyed by the header."""
  rows = [line for line in text.splitlines() if line.startswith('|')]
  cells = [[c.strip() for c in line.strip('|').split('|')] for line in rows]
  header, body = cells[0], cells[2:]
  assert all(len(row) == len(header) for row in body), rows
  return [dict(zip(header, row, strict=True)) for row in body]


def positive(cell: str) -> float:
  value = float(cell)
  assert math.isfinite(value) and value > 0, cell
  return value


@pytest.fixture(scope='module')
def report(tmp_path_factory):
  """(report text, workdir) of one tiny run."""
  tmp = tmp_path_factory.mktemp('check')
  out, workdir = tmp / 'report.md', tmp / 'work'
  _run(
    [
      '-m',
      'vivit_jax.tools.accelerator_check',
      '--size=tiny',
      '--variants=spacetime',
      '--steps=1',
      '--train_steps=2',
      f'--workdir={workdir}',
      f'--out={out}',
      *TINY_TRAINING,
    ]
  )
  return out.read_text(), workdir


def test_every_section_ran_and_says_how_long_it_took(report):
  text, _ = report
  assert 'This section failed' not in text
  assert re.search(r'load average \(1, 5, 15 min\) [\d.]+, [\d.]+, [\d.]+; \d+ host cores', text)
  for title in SECTIONS:
    took = re.match(r'\nTook ([\d.]+) s\.', section(text, title))
    assert took and float(took[1]) >= 0, title
  assert re.search(r'^Whole check: [\d.]+ s', text, re.M)


def test_devices_and_matmul_peaks(report):
  text, _ = report
  devices = table(section(text, 'Host and devices'))
  assert [d['platform'] for d in devices] == ['cpu']  # One device: XLA_FLAGS has no count.
  peaks = table(section(text, 'Measured matmul peak'))
  assert [p['dtype'] for p in peaks] == ['float32', 'bfloat16']
  for p in peaks:
    positive(p['measured matmul peak (TFLOP/s)'])


def test_train_step_rows_are_measured(report):
  text, _ = report
  rows = table(section(text, 'Train step'))
  # The CPU's training dtype, remat in it, the other dtype; no xla/cudnn rows off a GPU
  # ('default' is xla there).
  assert [(r['dtype'], r['remat']) for r in rows] == [
    ('float32', 'off'),
    ('float32', 'on'),
    ('bfloat16', 'off'),
  ]
  for r in rows:
    assert r['variant'] == 'spacetime' and r['attention'] == 'default'
    step_ms = positive(r['step (ms)'])
    assert positive(r['clips/s']) == pytest.approx(2e3 / step_ms, rel=0.01)  # Batch 2.
    achieved = positive(r['achieved TFLOP/s'])
    assert 0 < positive(r['of measured matmul peak']) < 1e3 and achieved < 1e3
    positive(r['memory, XLA (MiB)'])
    positive(r['row (s)'])
    assert r['device peak in use (MiB)'] == 'n/a'  # The CPU reports no memory statistics.


def test_input_pipeline_with_and_without_device_augmentation(report):
  text, _ = report
  rows = table(section(text, 'Input pipeline'))
  assert [r['augment_on_device'] for r in rows] == ['off', 'on']
  for r in rows:
    alone = positive(r['pipeline alone (clips/s)'])
    step = positive(r['step on a resident batch (clips/s)'])
    positive(r['step fed by the pipeline (clips/s)'])
    assert positive(r['pipeline / step']) == pytest.approx(alone / step, rel=0.01)


def test_training_run_in_the_workdir(report):
  text, workdir = report
  body = section(text, 'End-to-end training')
  assert positive(re.search(r'wall time of train_and_evaluate: ([\d.]+) s', body)[1])
  results = {r['result']: r['value'] for r in table(body)}
  assert results['step'] == '2'
  for split in ('validation', 'test'):
    positive(results[f'{split}/loss'])
    assert 0 <= float(results[f'{split}/top1']) <= 1
  runs = [p for p in os.listdir(workdir) if p.startswith('train-')]
  assert len(runs) == 1 and (workdir / runs[0] / 'results.json').exists()


def test_a_failing_row_is_reported_not_raised_and_a_spent_budget_skips_rows():
  # cuDNN attention does not exist on a CPU: the row carries the error instead of numbers.
  script = textwrap.dedent(
    """
    from vivit_jax.tools import accelerator_check as ac
    base = ac.size_config(ac.SIZES['tiny'])
    row = ac.StepRow('spacetime', 'bfloat16', 'cudnn')
    print('\\n'.join(ac.step_section(base, [row], 2, 1, {}, budget_s=600)))
    print('\\n'.join(ac.step_section(base, [row], 2, 1, {}, budget_s=-1)))
    """
  )
  lines = _run(['-c', script]).stdout.splitlines()
  assert any('skipped: --step_budget_s=-1 would be exceeded' in line for line in lines)
  failed = next(line for line in lines if '| cudnn |' in line and 'skipped' not in line)
  assert re.search(r'\| [A-Za-z]+Error: .+', failed), failed
  assert len(failed.strip('|').split('|')) == 11


def test_each_accelerator_adds_its_fused_attention_rows():
  from vivit_jax.tools import accelerator_check as ac

  fused = lambda backend: [
    r.attention for r in ac.step_rows(['spacetime', 'factorized_encoder'], backend)
  ]
  assert fused('cpu') == ['default'] * 5
  assert fused('gpu')[3:5] == ['xla', 'cudnn']
  assert fused('tpu')[3:5] == ['xla', 'splash']


def test_a_bucket_workdir_keeps_its_synthetic_data_for_the_next_run(gcs, monkeypatch):
  from vivit_jax import fileio
  from vivit_jax.data import synthetic
  from vivit_jax.tools import accelerator_check as ac

  data_dir = f'gs://vivit-test/accelerator-check-{uuid.uuid4().hex[:8]}/training_data_4'
  first = ac.training_config(ac._default_config(), data_dir, steps=2, clips=4)
  assert fileio.exists(f'{data_dir}/{synthetic.INFO_FILENAME}')
  assert first.dataset_configs.base_dir == data_dir
  # The next check on the same --workdir reads what the first wrote; it writes nothing.
  written = []
  monkeypatch.setattr(synthetic, 'generate', lambda *args, **kwargs: written.append(args))
  again = ac.training_config(ac._default_config(), data_dir, steps=2, clips=4)
  assert written == []
  assert again.dataset_configs.base_dir == data_dir
  assert again.dataset_configs.examples_per_subset.train == 4
  # Another variant's data in that folder is not taken for it.
  other = ac._default_config()
  other.dataset_configs.synthetic_variant = 'temporal_order'
  ac.training_config(other, data_dir, steps=2, clips=4)
  assert written == [(data_dir,)]

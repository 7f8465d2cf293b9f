"""The end of the training log: what was written, and commands that work as printed."""

import os
import shlex
import sys

from vivit_jax import config as config_lib
from vivit_jax.harness import next_steps


def _config(base_dir: str, train_table: str = 'synthetic_train@8'):
  c = config_lib.get_defaults()
  c.dataset_configs.base_dir = base_dir
  c.dataset_configs.tables = {'train': train_table}
  return c


def _workdir(root):
  for path in ('checkpoints/256', 'checkpoints/512', 'train', 'validation', 'test'):
    os.makedirs(root / path)
  for name in ('results.json', 'predictions_test.jsonl', 'config.json'):
    (root / name).write_text('{}')


def test_closing_note_lists_outputs_and_relative_commands(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  _workdir(tmp_path / 'runs' / 'a')
  note = next_steps.closing_note(
    _config(str(tmp_path / 'data' / 'synthetic')),
    workdir='runs/a',
    config_file='configs/synthetic.py',
    overrides={'model.num_layers': 2, 'model.patches.size': (8, 8, 2), 'batch_size': 16},
  )
  lines = note.splitlines()
  assert lines[0] == 'Written to runs/a:'
  for expected in (
    'Orbax checkpoints (steps 256, 512)',
    'results.json',
    'predictions_test.jsonl',
    'train/ validation/ test/',
  ):
    assert expected in note, note
  assert 'predictions_validation' not in note  # only what exists is listed
  commands = [shlex.split(line) for line in lines if line.startswith('  ') and '-m' in line]
  predict = next(c for c in commands if 'vivit_jax.tools.predict' in c)
  # Relative paths stay relative; model overrides follow (training-only ones do not).
  assert '--checkpoint=runs/a' in predict and '--config=configs/synthetic.py' in predict
  assert '--config.model.patches.size=(8, 8, 2)' in predict
  assert '--config.model.num_layers=2' in predict
  assert not any('batch_size' in arg for arg in predict)
  assert predict[-1] == 'data/synthetic_mp4/test'
  make = next(c for c in commands if 'vivit_jax.tools.make_synthetic' in c)
  assert '--output_dir=data/synthetic_mp4' in make and '--format=mp4' in make
  assert lines[-1].split()[-2:] == ['--logdir', 'runs/a']


def test_other_datasets_get_a_generic_predict_command(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  _workdir(tmp_path / 'w')
  note = next_steps.closing_note(
    _config('/data/k400', 'train@64'), workdir='w', config_file='c.py', overrides={}
  )
  assert 'make_synthetic' not in note and note.count('VIDEO.mp4') == 1
  (tmp_path / 'w' / 'checkpoints' / '256').rmdir()
  note = next_steps.closing_note(_config('/k'), workdir='w', config_file='c.py', overrides={})
  assert 'Orbax checkpoints (step 512)' in note


def test_executable_is_bare_only_when_path_finds_this_environment(tmp_path, monkeypatch):
  bin_dir = tmp_path / 'env' / 'bin'
  bin_dir.mkdir(parents=True)
  for name in ('python', 'tensorboard'):
    (bin_dir / name).write_text('#!/bin/sh\n')
    (bin_dir / name).chmod(0o755)
  monkeypatch.setattr(sys, 'executable', str(bin_dir / 'python'))
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv('PATH', '/usr/bin:/bin')
  assert next_steps.executable('tensorboard') == os.path.join('env', 'bin', 'tensorboard')
  assert next_steps.executable('python') == os.path.join('env', 'bin', 'python')
  monkeypatch.setenv('PATH', f'{bin_dir}:/usr/bin')  # as after activation
  assert next_steps.executable('tensorboard') == 'tensorboard'
  (bin_dir / 'tensorboard').unlink()
  assert next_steps.executable('tensorboard') == 'python -m tensorboard.main'

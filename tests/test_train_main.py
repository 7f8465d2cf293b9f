"""main.py as a user runs it: a real ViViT on a tiny DMVR-format dataset, in a subprocess."""

import json
import os
import subprocess
import sys

from cpu_env import xla_flags
from train_fakes import tiny_main_overrides, write_tiny_split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(workdir, data_dir, steps, devices=2, **changes):
  cmd = [sys.executable, 'main.py', '--config=configs/synthetic.py', f'--workdir={workdir}']
  cmd += tiny_main_overrides(data_dir, steps, log_eval_steps=2, checkpoint_steps=2, **changes)
  env = dict(os.environ, XLA_FLAGS=xla_flags(devices))
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_main_trains_two_steps_then_a_restart_resumes_and_finishes(tmp_path):
  """On 8 devices over a mesh (every array split 8 ways), then resumed on 4 with pmap."""
  data_dir, workdir = str(tmp_path / 'data'), str(tmp_path / 'work')
  os.makedirs(data_dir)
  for split, num in (('train', 16), ('validation', 7), ('test', 5)):
    write_tiny_split(data_dir, split, num)

  mesh = {'parallelism': 'mesh', 'mesh__fsdp': 8, 'mesh__min_sharded_size': 0}
  first = _main(workdir, data_dir, steps=2, devices=8, **mesh)
  assert first.returncode == 0, first.stderr[-3000:]
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2']
  assert f'tensorboard --logdir {workdir}' in first.stdout
  assert 'Parallelism: jit over a mesh of 1 (data) x 8 (fsdp) devices' in first.stderr

  second = _main(workdir, data_dir, steps=4, devices=4)
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'Resumed from step 2' in second.stderr
  with open(os.path.join(workdir, 'results.json')) as f:
    results = json.load(f)
  assert results['step'] == 4 and results['validation']['num_examples'] == 7
  with open(os.path.join(workdir, 'predictions_validation.jsonl')) as f:
    keys = sorted(json.loads(line)['key'] for line in f)
  assert len(keys) == 7 == len(set(keys))
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']

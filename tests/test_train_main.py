"""main.py as a user runs it: a real ViViT on a tiny DMVR-format dataset, in a subprocess."""

import json
import os
import subprocess
import sys

from train_fakes import write_tiny_split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(workdir, data_dir, steps):
  overrides = {
    'dataset_configs.base_dir': data_dir,
    'dataset_configs.generate_synthetic_if_missing': False,
    'dataset_configs.tables.train': 'tiny_train@1',
    'dataset_configs.tables.validation': 'tiny_validation@1',
    'dataset_configs.tables.test': 'tiny_test@1',
    'dataset_configs.examples_per_subset.train': 16,
    'dataset_configs.examples_per_subset.validation': 7,
    'dataset_configs.examples_per_subset.test': 5,
    'dataset_configs.num_classes': 3,
    'dataset_configs.num_frames': 4,
    'dataset_configs.stride': 1,
    'dataset_configs.min_resize': 16,
    'dataset_configs.crop_size': 16,
    'dataset_configs.shuffle_buffer_size': 16,
    'model.hidden_size': 16,
    'model.num_layers': 1,
    'model.num_heads': 2,
    'model.mlp_dim': 16,
    'batch_size': 8,
    'eval_batch_size': 8,
    'num_training_steps': steps,
    'lr_configs.steps_per_cycle': steps,
    'lr_configs.warmup_steps': 1,
    'log_eval_steps': 2,
    'checkpoint_steps': 2,
    'log_summary_steps': 1,
  }
  cmd = [sys.executable, 'main.py', '--config=configs/synthetic.py', f'--workdir={workdir}']
  cmd += [f'--config.{k}={v}' for k, v in overrides.items()]
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_main_trains_two_steps_then_a_restart_resumes_and_finishes(tmp_path):
  data_dir, workdir = str(tmp_path / 'data'), str(tmp_path / 'work')
  os.makedirs(data_dir)
  for split, num in (('train', 16), ('validation', 7), ('test', 5)):
    write_tiny_split(data_dir, split, num)

  first = _main(workdir, data_dir, steps=2)
  assert first.returncode == 0, first.stderr[-3000:]
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2']
  assert f'tensorboard --logdir {workdir}' in first.stdout

  second = _main(workdir, data_dir, steps=4)
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'Resumed from step 2' in second.stderr
  with open(os.path.join(workdir, 'results.json')) as f:
    results = json.load(f)
  assert results['step'] == 4 and results['validation']['num_examples'] == 7
  with open(os.path.join(workdir, 'predictions_validation.jsonl')) as f:
    keys = sorted(json.loads(line)['key'] for line in f)
  assert len(keys) == 7 == len(set(keys))
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']

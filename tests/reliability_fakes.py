"""Helpers for the reliability tests: tiny DMVR-format data, a tiny config file, main.py runs.

Every run of `main.py` is a subprocess with its own fake CPU devices, a
timeout, and a compile cache in the test's own directory, so restarts compile
nothing twice and parallel tests share nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import tensorflow as tf
from cpu_env import xla_flags

from vivit_jax import fileio
from vivit_jax.data import records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 3


def write_tfrecords(directory: str, name: str = 'tiny_train', shards: int = 4, per_shard: int = 4):
  """Writes `shards` files of `per_shard` 6-frame 16x16 clips; returns the table spec."""
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(0)
  for s in range(shards):
    path = os.path.join(directory, f'{name}-{s:05d}-of-{shards:05d}')
    with tf.io.TFRecordWriter(path) as writer:
      for i in range(per_shard):
        label = (s * per_shard + i) % NUM_CLASSES
        frames = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
        frames[..., label] //= 4  # Something to learn.
        example = records.make_sequence_example(
          [records.encode_jpeg(f) for f in frames], [label], filename=f'{name}_{s}_{i}'
        )
        writer.write(example.SerializeToString())
  return f'{name}@{shards}'


CONFIG_TEMPLATE = """
from configs import synthetic


def get_config():
  c = synthetic.get_config()
  d = c.dataset_configs
  d.base_dir = {data_dir!r}
  d.generate_synthetic_if_missing = False
  d.tables = {{'train': {table!r}}}
  d.examples_per_subset = {{'train': {num_train}}}
  d.num_classes = {num_classes}
  d.num_frames = 4
  d.stride = 1
  d.min_resize = 16
  d.crop_size = 16
  d.shuffle_buffer_size = 16
  d.do_multicrop_test = False
  c.model.update(hidden_size={width}, num_heads=2, mlp_dim=16, num_layers=1)
  c.model.patches.size = (8, 8, 2)
  c.model.dropout_rate = 0.1
  c.batch_size = 8
  c.num_training_steps = {steps}
  c.lr_configs.warmup_steps = 1
  c.lr_configs.steps_per_cycle = {steps}
  c.checkpoint_steps = {checkpoint_steps}
  c.log_eval_steps = {steps}
  c.log_summary_steps = 1
  c.max_checkpoints_to_keep = {keep}
  c.count_flops = False
  c.write_summary = False
  return c
"""


def write_config(
  path: str,
  data_dir: str,
  *,
  table: str = 'tiny_train@4',
  num_train: int = 16,
  steps: int = 6,
  checkpoint_steps: int = 1,
  keep: int = 3,
  width: int = 16,
) -> str:
  """Writes a tiny ViViT config file (width `width`, 1 layer, 4 frames of 16x16)."""
  text = CONFIG_TEMPLATE.format(
    data_dir=data_dir,
    table=table,
    num_train=num_train,
    num_classes=NUM_CLASSES,
    steps=steps,
    checkpoint_steps=checkpoint_steps,
    keep=keep,
    width=width,
  )
  with open(path, 'w') as f:
    f.write(text)
  return path


def main_command(config: str, workdir: str, *flags: str) -> list[str]:
  return [sys.executable, 'main.py', f'--config={config}', f'--workdir={workdir}', *flags]


def main_env(cache_dir: str, devices: int = 4) -> dict[str, str]:
  """The environment of a main.py subprocess: `devices` fake CPU devices, a compile cache."""
  return dict(
    os.environ,
    XLA_FLAGS=xla_flags(devices),
    JAX_COMPILATION_CACHE_DIR=cache_dir,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0',
    TF_CPP_MIN_LOG_LEVEL='2',
    CUDA_VISIBLE_DEVICES='',
  )


def run_main(config: str, workdir: str, cache_dir: str, *flags: str, devices: int = 4, timeout=240):
  """Runs main.py to completion; returns the CompletedProcess."""
  return subprocess.run(
    main_command(config, workdir, *flags),
    cwd=REPO,
    env=main_env(cache_dir, devices),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


# The train run's logging writer: `[12] collection=train clips_per_sec=..., total_loss=0.9, ...`.
_LOSS = re.compile(r'\[(\d+)\] collection=train .*?\btotal_loss=([-+0-9.eE]+|nan|inf)')


def losses_from_log(log: str) -> dict[int, float]:
  """{step: total_loss of the train run} from the logging writer's lines in a main.py log."""
  return {int(s): float(v) for s, v in _LOSS.findall(log)}


def restore_raw(checkpoint_dir: str, step: int) -> dict:
  """Restores checkpoint `step` as a plain dict of numpy arrays (no target needed)."""
  import orbax.checkpoint as ocp

  with ocp.CheckpointManager(checkpoint_dir) as manager:
    return manager.restore(step, args=ocp.args.StandardRestore())


def saved_steps(checkpoint_dir: str) -> list[int]:
  """The complete checkpoints Orbax sees in `checkpoint_dir`."""
  import orbax.checkpoint as ocp

  if not fileio.isdir(checkpoint_dir):
    return []
  with ocp.CheckpointManager(checkpoint_dir) as manager:
    return sorted(manager.all_steps())

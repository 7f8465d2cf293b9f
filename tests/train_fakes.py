"""Test doubles shared by the trainer tests: a tiny model and an in-memory dataset.

The fake dataset implements the interface of `vivit_jax.data.build_dataset`
(meta, train_iter, eval_iter, test_iter) on a handful of clips whose class is
readable from their mean color, so a tiny model learns it in a few steps.
"""

from __future__ import annotations

import os
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from vivit_jax.config import get_defaults
from vivit_jax.data.meta import DatasetMeta
from vivit_jax.task import Task


class TinyModel(nn.Module):
  """Pools each frame's color, then a 2-layer MLP: f32[B,T,H,W,3] -> f32[B,C]."""

  num_classes: int
  width: int = 16
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, video, train: bool = False):
    x = jnp.mean(video, axis=(2, 3)).reshape(video.shape[0], -1)
    x = nn.gelu(nn.Dense(self.width)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes)(x)


def make_clips(num: int, num_classes: int, shape=(4, 8, 8, 3), seed: int = 0):
  """Clips whose color channel `label % 3` is bright: (f32[N,T,H,W,3], i32[N])."""
  rng = np.random.default_rng(seed)
  labels = np.arange(num) % num_classes
  clips = rng.normal(0.0, 0.1, (num, *shape)).astype(np.float32)
  for i, y in enumerate(labels):
    clips[i, ..., y % 3] += 1.0 if y < 3 else -1.0
  return clips, labels


class FakeDataset:  # Implements vivit_jax.data.meta.TrainingData.
  """In-memory stand-in for `vivit_jax.data.Dataset`.

  Args:
    num_devices: local devices D; batches are f32[D, B/D, ...].
    batch_size, eval_batch_size: global batch sizes.
    num_train, num_eval, num_test: examples per split.
    num_views: test views per clip.
  """

  def __init__(
    self,
    *,
    num_devices: int,
    batch_size: int = 16,
    eval_batch_size: int = 8,
    num_classes: int = 6,
    num_train: int = 48,
    num_eval: int = 13,
    num_test: int = 11,
    num_views: int = 2,
    shape=(4, 8, 8, 3),
  ):
    self.num_devices = num_devices
    self.batch_size = batch_size
    self.eval_batch_size = eval_batch_size
    self.num_classes = num_classes
    self.num_views = num_views
    self.splits = {
      'train': make_clips(num_train, num_classes, shape, seed=0),
      'validation': make_clips(num_eval, num_classes, shape, seed=1),
      'test': make_clips(num_test, num_classes, shape, seed=2),
    }
    self.meta = DatasetMeta(
      task=Task(num_classes),
      input_shape=tuple(shape),
      num_train_examples=num_train,
      num_eval_examples=num_eval,
      num_test_examples=num_test,
      num_test_views=num_views,
      label_names=[f'class{i}' for i in range(num_classes)],
      device_augment=None,
    )
    self.train_starts = []

  def _shard(self, x):
    return x.reshape(self.num_devices, -1, *x.shape[1:])

  def train_iter(self, start_step: int = 0):
    self.train_starts.append(start_step)
    clips, labels = self.splits['train']
    n, step = len(labels), start_step
    while True:
      idx = (np.arange(self.batch_size) + step * self.batch_size) % n
      yield {
        'inputs': self._shard(clips[idx]),
        'label': self._shard(np.eye(self.num_classes, dtype=np.float32)[labels[idx]]),
        'batch_mask': self._shard(np.ones(self.batch_size, np.float32)),
      }
      step += 1

  def _one_pass(self, split: str, views: int):
    clips, labels = self.splits[split]
    n, bs = len(labels), self.eval_batch_size
    for start in range(0, n, bs):
      idx = np.arange(start, start + bs)
      valid = idx < n
      idx = np.where(valid, idx, 0)
      x = clips[idx]
      if views:
        # View v is the clip shifted by v / 10: the average of the views'
        # logits differs from any single view's.
        x = np.stack([x + 0.1 * v for v in range(views)], axis=1)
      yield {
        'inputs': self._shard(x),
        'label': self._shard(np.eye(self.num_classes, dtype=np.float32)[labels[idx]]),
        'batch_mask': self._shard(valid.astype(np.float32)),
        'key': self._shard(np.array([f'{split}_{i}' for i in idx])),
      }

  def eval_iter(self, split: str = 'validation'):
    return self._one_pass(split, views=0)

  def test_iter(self):
    return self._one_pass('test', views=self.num_views)


def trainer_config(steps=4, **overrides):
  """A config for `train_and_evaluate` with `TinyModel` and `FakeDataset` (8 devices, batch 16)."""
  c = get_defaults()
  c.batch_size = 16
  c.num_training_steps = steps
  c.log_eval_steps = 2
  c.checkpoint_steps = 2
  c.log_summary_steps = 1
  c.count_flops = False
  c.label_smoothing = 0.1
  c.max_grad_norm = 1.0
  c.mixup.alpha = 0.3
  c.lr_configs.factors = 'constant*linear_warmup*cosine_decay'
  c.lr_configs.warmup_steps = 1
  c.lr_configs.base_learning_rate = 0.3
  c.dataset_configs.do_multicrop_test = True
  c.dataset_configs.log_test_epochs = 100
  c.update(overrides)
  return c


class SigtermDataset(FakeDataset):
  """Sends this process SIGTERM while yielding the batch of step `at`."""

  def __init__(self, at: int, **kwargs):
    super().__init__(**kwargs)
    self.at = at

  def train_iter(self, start_step=0):
    for step, batch in enumerate(super().train_iter(start_step), start=start_step + 1):
      if step == self.at:
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch


TINY_CLASSES = ('left', 'right', 'up')


def write_tiny_split(directory: str, split: str, num: int) -> None:
  """Writes shard `tiny_<split>-00000-of-00001` of `num` random 6x16x16 clips and the label map."""
  from vivit_jax.data import records

  rng = np.random.default_rng(len(split))
  path = os.path.join(directory, f'tiny_{split}-00000-of-00001')
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(num):
      label = i % len(TINY_CLASSES)
      frames = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
      example = records.make_sequence_example(
        [records.encode_jpeg(f) for f in frames],
        [label],
        label_texts=[TINY_CLASSES[label]],
        filename=f'{split}_{i}',
        start_us=0,
        end_us=240_000,
      )
      writer.write(example.SerializeToString())
  records.write_label_map(os.path.join(directory, records.LABEL_MAP_FILENAME), TINY_CLASSES)


def tiny_main_overrides(data_dir: str, steps: int, **changes) -> list[str]:
  """`--config.key=value` flags that make configs/synthetic.py a ~5k-parameter Model 1.

  It reads the `write_tiny_split` shards in `data_dir` (16 / 7 / 5 clips of 3 classes) and
  trains `steps` steps; `changes` overrides or adds keys (dots as '__': `model__classifier`).
  """
  values = {
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
    'log_summary_steps': 1,
  }
  values.update({key.replace('__', '.'): value for key, value in changes.items()})
  return [f'--config.{k}={v}' for k, v in values.items()]


@pytest.fixture(scope='module')
def compilation_cache(tmp_path_factory):
  """Runs in one module compile the same tiny programs; a disk cache compiles them once.

  Use with `pytestmark = pytest.mark.usefixtures('compilation_cache')` after importing it.
  """
  from jax._src import compilation_cache as cc

  names = (
    'jax_compilation_cache_dir',
    'jax_persistent_cache_min_compile_time_secs',
    'jax_persistent_cache_min_entry_size_bytes',
  )
  saved = {n: getattr(jax.config, n) for n in names}
  jax.config.update(names[0], str(tmp_path_factory.mktemp('jax_cache')))
  jax.config.update(names[1], 0)
  jax.config.update(names[2], 0)
  cc.reset_cache()
  yield
  for name, value in saved.items():
    jax.config.update(name, value)
  cc.reset_cache()

"""A small image model for the `tubelet_init` sweep, pre-trained on single frames.

The paper inflates an ImageNet ViT into ViViT. Without ImageNet, the nearest
honest stand-in is an image-only model trained on single frames of the same
data: Model 1 at the base width and depth with one frame per clip and 2D
patches, trained through the same trainer. Its 2D patch kernel and its
positional embedding are written as a ViT-shaped Scenic msgpack
(`{'params': ...}` with `embedding/kernel` [h, w, 3, D]), so `load_pretrained`
inflates it exactly as it would an ImageNet ViT.

On data whose classes are motions (the synthetic set) one frame says little
about the label, so this pre-training learns appearance (the shape, its
color and place), not the classes: a weaker image model than ImageNet's.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from vivit_jax import config as config_lib
from vivit_jax import fileio
from vivit_jax.checkpoints.formats import flatten, write_scenic
from vivit_jax.harness.ablation import runner, sweeps
from vivit_jax.models import build_module, describe_model
from vivit_jax.train.checkpointing import Checkpointer
from vivit_jax.train.state import build_train_state
from vivit_jax.train.trainer import train_and_evaluate

CHECKPOINT = 'image_model/checkpoint'


def image_config(
  config: ml_collections.ConfigDict, num_steps: int | None
) -> ml_collections.ConfigDict:
  """Model 1 on one frame per clip with 2D (h, w, 1) patches, no init_from."""
  overrides = dict(sweeps.variant_overrides(config, 'spacetime'))
  h, w, _ = describe_model(config).tokens.patch_size
  overrides.update(
    {
      'model.patches.size': (h, w, 1),
      'model.temporal_encoding_config.method': '3d_conv',
      'model.temporal_encoding_config.kernel_init_method': None,
      'dataset_configs.num_frames': 1,
      'init_from.checkpoint_path': None,
    }
  )
  if num_steps:
    overrides.update({'num_training_steps': num_steps, 'lr_configs.steps_per_cycle': num_steps})
  return config_lib.with_overrides(config, overrides)


def _final_params(config: ml_collections.ConfigDict, workdir: str):
  """The trained parameters, restored from the workdir's latest checkpoint."""
  model = describe_model(config)
  # Only the target's structure matters: the restore replaces every value.
  target = build_train_state(config, build_module(model), model.input_shape, 1, jax.random.key(0))
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'))
  try:
    return checkpointer.restore(target).params
  finally:
    checkpointer.close()


def pretrain_image_model(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  num_steps: int | None = None,
  train_fn: Callable | None = None,
) -> str:
  """Trains (or reuses) the single-frame image model; returns its checkpoint path.

  Args:
    config: the sweep's base config (resolved).
    workdir: the sweep's root; the run goes to `<workdir>/tubelet_init/image_pretrain`.
    num_steps: training steps (default: the config's).
    train_fn: `train_and_evaluate` (the default) or a test's replacement.

  Returns:
    The path of the ViT-shaped Scenic msgpack file.
  """
  directory = os.path.join(workdir, 'tubelet_init', 'image_pretrain')
  path = os.path.join(directory, CHECKPOINT)
  if fileio.exists(path):
    return path
  image = image_config(config, num_steps)
  if not runner.is_finished(directory):
    if train_fn is None:
      train_fn = train_and_evaluate
    print(f'[ablate] tubelet_init: image pre-training -> {directory}', flush=True)
    train_fn(image, directory)
  flat = {k: np.asarray(v) for k, v in flatten(_final_params(image, directory)).items()}
  flat['embedding/kernel'] = flat['embedding/kernel'][0]  # [1, h, w, 3, D] -> [h, w, 3, D]
  # The image model's head knows the video labels only from single frames: never reuse it.
  flat = {k: v for k, v in flat.items() if not k.startswith('output_projection')}
  write_scenic(path, flat)
  return path


BASELINE_PRETRAIN = 'pretrain'


def pretrain_baselines(
  pretrain_config: ml_collections.ConfigDict,
  workdir: str,
  seeds: int,
  *,
  num_steps: int | None = None,
  train_fn: Callable | None = None,
) -> Callable[[int], str]:
  """Trains (or reuses) the average-pool baseline for `variants_pretrained`, per seed.

  The `variants` sweep's baseline row on `pretrain_config` (the data whose
  per-tubelet features the rows start from: for the temporal-order data, the
  motion data), seed i in `<workdir>/variants_pretrained/pretrain/seed_<i>`
  through the same resumable runner.

  Returns:
    seed -> that seed's training workdir (an `init_from.checkpoint_path`).

  Raises:
    runner.Preempted: a run was preempted (SIGTERM); rerun to continue.
  """
  overrides = sweeps.variant_overrides(pretrain_config, 'average_pool_baseline')
  if num_steps:
    overrides.update({'num_training_steps': num_steps, 'lr_configs.steps_per_cycle': num_steps})
  sweep = sweeps.Sweep(
    'variants_pretrained',
    'pre-training of the average-pool baseline',
    (sweeps.Row(BASELINE_PRETRAIN, overrides),),
    'row',
    '',
    'none',
  )
  if not runner.run_sweep(sweep, pretrain_config, workdir, seeds, train_fn=train_fn, costs=False):
    raise runner.Preempted('variants_pretrained: pre-training')
  return lambda seed: runner.seed_dir(workdir, sweep, sweep.rows[0], seed)

"""Converts a pretrained checkpoint or a training workdir for a config's model.

The library side of `python -m vivit_jax.tools.convert_checkpoint` (see that
tool for the command line): a ViT .npz, a Scenic msgpack train state or an HF
ViViT directory goes through `init_from`'s surgery; a training workdir is
written unchanged once its params are checked to be the config's model. The
output is Scenic's Flax msgpack (`OUTPUT/checkpoint`) or an HF ViViT directory.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from vivit_jax import config as config_lib
from vivit_jax.checkpoints import formats, huggingface, load, surgery, workdir
from vivit_jax.data import records
from vivit_jax.errors import MissingFileError
from vivit_jax.inference import checkpoint as checkpoint_lib
from vivit_jax.models import build_model, input_shape


def _read_workdir(
  config: ml_collections.ConfigDict, checkpoint: str, step: int | None
) -> tuple[dict, str]:
  """A training run's params, checked to be exactly this config's model; and the report."""
  item = workdir.find_item(checkpoint, step)
  if item is None:
    raise MissingFileError(f'{workdir.resolve_path(checkpoint)} holds no Orbax checkpoint.')
  params = workdir.read_params(item)
  num_classes = surgery.num_classes_of(formats.flatten(params))
  module = build_model(config, num_classes)
  workdir.check_fits(module, params, input_shape(config), item, config)
  count = len(formats.flatten(params))
  return params, f'{count} parameters copied from {item} (the trained model, unchanged)'


def _convert(config: ml_collections.ConfigDict, checkpoint: str, checkpoint_format: str | None):
  """A pretrained checkpoint adapted by init_from's surgery; and the per-parameter report."""
  config.init_from.checkpoint_path = checkpoint
  config.init_from.checkpoint_format = checkpoint_format
  module = build_model(config)
  video = np.zeros((1,) + input_shape(config), np.float32)
  init = jax.jit(lambda key: module.init(key, video, train=False))
  params = jax.device_get(init(jax.random.key(config.rng_seed))['params'])
  params, entries = load.convert(config, params)
  return params, surgery.format_report(entries)


def convert_checkpoint(
  config: ml_collections.ConfigDict,
  checkpoint: str,
  output: str,
  *,
  checkpoint_format: str | None = None,
  to: str = 'scenic',
  step: int | None = None,
  label_map: str | None = None,
) -> str:
  """Converts `checkpoint` for `config`'s model and writes it under `output`.

  A training workdir (or one of its Orbax checkpoints) is written as it is,
  once its params are checked to be exactly this config's model. Any other
  checkpoint goes through `init_from`'s surgery: parameters it lacks are
  initialised as the trainer would (`config.rng_seed`). Every check runs
  before anything is written.

  Args:
    config: the config of the model to write.
    checkpoint: a ViT .npz, a Scenic msgpack, an HF directory, or a training
      workdir (relative paths start from the current directory).
    output: the directory to write.
    checkpoint_format: one of formats.FORMATS; detected when None.
    to: 'scenic' (OUTPUT/checkpoint, Flax msgpack) or 'huggingface'.
    step: which step of a training workdir; None for the latest.
    label_map: class names, one a line (HF's id2label); default: the
      workdir's or the dataset's label_map.txt when found, else LABEL_i.

  Returns:
    The report, one line per parameter, ending with the path written.

  Raises:
    ConfigError: the model cannot be written as HF's ViViT (names the keys to set).
    ModelMismatchError: the workdir was trained with another config.
    MissingFileError: no checkpoint there, or no such step.
  """
  config = config_lib.resolve(config)
  if to == 'huggingface':
    huggingface.check_config(config)
  checkpoint_format = checkpoint_format or formats.detect_format(checkpoint)
  if checkpoint_format == 'orbax':
    params, report = _read_workdir(config, checkpoint, step)
  elif step is not None:
    raise config_lib.ConfigError(
      f'--step applies to a training workdir; {checkpoint} is a {checkpoint_format} checkpoint.'
    )
  else:
    params, report = _convert(config, checkpoint, checkpoint_format)
  flat = formats.flatten(params)
  label_map = label_map or checkpoint_lib.default_label_map(
    checkpoint, config.dataset_configs.base_dir
  )
  names = records.read_label_map(label_map) if label_map else None
  if to == 'huggingface':
    huggingface.write(output, flat, config, surgery.num_classes_of(flat), names)
    written = output
  else:
    written = os.path.join(output, 'checkpoint')
    formats.write_scenic(written, params)
  if names is not None and to == 'scenic':
    # Beside the checkpoint, where predict and from_checkpoint look for it.
    records.write_label_map(os.path.join(output, records.LABEL_MAP_FILENAME), names)
  labels = f' (labels from {label_map})' if names is not None else ''
  return f'{report}\nWrote {written}{labels}'

"""`load_pretrained`: initialise a model's params from a pretrained checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections
from absl import logging

from vivit_jax import config as config_lib
from vivit_jax.checkpoints import formats, surgery


def convert(
  config: ml_collections.ConfigDict | Mapping, params: Mapping[str, Any]
) -> tuple[dict[str, Any], list[surgery.Entry]]:
  """Like `load_pretrained`, and also returns the per-parameter report entries."""
  config = config_lib.resolve(config)
  init = config.init_from
  if not init.checkpoint_path:
    raise config_lib.ConfigError('Set init_from.checkpoint_path to the pretrained checkpoint.')
  if init.checkpoint_format is not None:
    config_lib.check_choice('init_from.checkpoint_format', init.checkpoint_format, formats.FORMATS)
  source, fmt = formats.read_checkpoint(init.checkpoint_path, init.checkpoint_format)
  flat = formats.flatten(params)
  num_classes = surgery.num_classes_of(flat) if 'output_projection/bias' in flat else None
  plan = surgery.make_plan(config, num_classes)
  new, report = surgery.adapt(source, flat, plan)
  if not any(entry.action in ('copied', 'adapted') for entry in report):
    # Loading nothing would silently train from scratch.
    names = ', '.join(sorted(source)[:4]) or 'nothing'
    raise formats.CheckpointFormatError(
      f'{init.checkpoint_path!r} ({fmt} format) holds no parameter of this model: it has '
      f'{names}{" ..." if len(source) > 4 else ""}. Point init_from.checkpoint_path at a '
      'ViT (.npz), Scenic/Flax (msgpack) or Hugging Face checkpoint, or set '
      'init_from.checkpoint_format if the format was guessed wrong.'
    )
  return formats.unflatten(new), report


def load_pretrained(
  config: ml_collections.ConfigDict | Mapping, params: Mapping[str, Any]
) -> dict[str, Any]:
  """Initialises `params` from `config.init_from.checkpoint_path`.

  Pure: `params` is not modified. The per-parameter report (copied, adapted
  how, new, dropped) is logged at INFO.

  Args:
    config: the experiment config; `init_from` says which checkpoint and how
      (see docs/pretrained.md), `model` and `dataset_configs` give the shapes.
    params: the model's freshly initialised params (nested dict of arrays).

  Returns:
    A new nested dict of numpy arrays with the structure, shapes and dtypes
    of `params`.

  Raises:
    ShapeError: a parameter cannot be adapted (names it and both shapes).
    ConfigError: a bad `init_from` option.
  """
  new, report = convert(config, params)
  logging.info(
    'Initialised from %s:\n%s',
    config_lib.resolve(config).init_from.checkpoint_path,
    surgery.format_report(report),
  )
  return new

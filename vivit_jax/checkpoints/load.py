"""`load_pretrained`: initialise a model's params from a pretrained checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from vivit_jax import config as config_lib
from vivit_jax.checkpoints import formats, surgery
from vivit_jax.models.build import ModelDescription, build_module, describe_model

_POSEMB = 'posembed_input/pos_embedding'


def described_shapes(description: ModelDescription) -> dict:
  """{flat name: shape} of the params of the described model (traced, nothing computed)."""
  module = build_module(description)
  video = jax.ShapeDtypeStruct((1, *description.input_shape), jnp.float32)
  shapes = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), video)
  # Shapes as 0-d arrays of objects would lose them in formats.flatten; carry them as tuples.
  leaves = jax.tree_util.tree_leaves_with_path(shapes['params'])
  return {'/'.join(str(k.key) for k in path): tuple(x.shape) for path, x in leaves}


def check_params_match_config(
  config: ml_collections.ConfigDict, flat: Mapping[str, Any], num_classes: int | None
) -> None:
  """Raises ConfigError naming what differs when `flat` is not what `config` describes.

  Surgery adapts the checkpoint to the shapes the config implies (token grid,
  tubelet), so params built from another config would otherwise fail later on
  a parameter whose checkpoint array is fine, with a message about the wrong thing.
  """
  model = describe_model(config, num_classes)
  expected = described_shapes(model)
  given = {name: tuple(np.shape(x)) for name, x in flat.items()}
  if expected == given:
    return
  problems = []
  missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
  if missing or extra:
    problems.append(
      f'the variant: model.attention_config.type={model.attention.type!r} '
      f'(classifier={model.head.classifier!r}) has {", ".join(map(repr, missing[:3])) or "nothing"}'
      f'{" ..." if len(missing) > 3 else ""} that the params lack, and the params have '
      f'{", ".join(map(repr, extra[:3])) or "nothing"}{" ..." if len(extra) > 3 else ""} '
      'that it does not'
    )
  shared = sorted(n for n in set(expected) & set(given) if expected[n] != given[n])
  num_frames, crop_size = model.input_shape[:2]
  sizes = (
    f'dataset_configs.num_frames={num_frames}, crop_size={crop_size}, '
    f'model.patches.size (h, w, t)={model.tokens.patch_size}'
  )
  posembs = [n for n in shared if n.endswith(_POSEMB)]
  if posembs:
    problems.append(
      f'the input size and token grid: {sizes} give a token grid (t, h, w) = '
      f'{model.token_grid}, so '
      + ', '.join(f'{n!r} should be {expected[n]}, but the params have {given[n]}' for n in posembs)
    )
  if 'embedding/kernel' in shared:
    problems.append(
      f"the tubelet: model.patches.size gives 'embedding/kernel' {expected['embedding/kernel']}, "
      f'but the params have {given["embedding/kernel"]}'
    )
  others = [n for n in shared if not n.endswith(_POSEMB) and n != 'embedding/kernel']
  if others:
    problems.append(
      'the widths or depths (model.hidden_size, mlp_dim, num_heads, num_classes): '
      + ', '.join(f'{n!r} should be {expected[n]}, the params have {given[n]}' for n in others[:3])
      + (' ...' if len(others) > 3 else '')
    )
  raise config_lib.ConfigError(
    'The params handed to load_pretrained do not match what the config describes; they differ '
    'in ' + '; and '.join(problems) + '. Initialise the params from this same config (with '
    'inputs of dataset_configs.num_frames x crop_size x crop_size), or pass the config they '
    'were built from.'
  )


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
  check_params_match_config(config, flat, num_classes)
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

"""A training workdir (or one of its Orbax checkpoints) as a checkpoint to read params from.

The trainer writes `WORKDIR/checkpoints/<step>/default/` (vivit_jax/train/
checkpointing.py). Any of these paths designates a checkpoint: the workdir,
its `checkpoints/` folder, one step directory, or the step's `default/` item.
Paths are made absolute here, once: Orbax reads the metadata of a relative
path as missing (and then fails far from the cause).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from vivit_jax import fileio
from vivit_jax.errors import MissingFileError, UserError

_STEP = re.compile(r'^\d+$')
_ITEM = 'default'
CONFIG_NAME = 'config.json'


class ModelMismatchError(UserError, ValueError):
  """A checkpoint's parameters do not fit the model of the config it is used with."""


def resolve_path(path: str) -> str:
  """`path` made absolute (and `~` expanded; a URI as it is): where checkpoint paths resolve."""
  return fileio.absolute(path)


def steps_in(directory: str) -> list[int]:
  """Complete step directories in `directory` (those whose item is written), ascending."""
  if not fileio.isdir(directory):
    return []
  return sorted(
    int(name)
    for name in fileio.listdir(directory)
    if _STEP.match(name) and fileio.isdir(os.path.join(directory, name, _ITEM))
  )


def _choose(directory: str, steps: list[int], step: int | None) -> str:
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise MissingFileError(
      f'No checkpoint of step {step} in {directory}: the steps there are '
      f'{", ".join(map(str, steps))}. Give one of them (--step), or omit it for the latest.'
    )
  return os.path.join(directory, str(step), _ITEM)


def find_item(path: str, step: int | None = None) -> str | None:
  """The Orbax item directory `path` designates, or None when `path` is no Orbax checkpoint.

  Args:
    path: a training workdir, its `checkpoints/` folder, a step directory or
      its `default/` item; relative to the current directory or absolute.
    step: the step to read from a workdir or `checkpoints/` folder; None for
      the latest. A step directory must be that step.

  Raises:
    MissingFileError: `step` is not among the saved steps (the message lists them).
  """
  path = resolve_path(path)
  for directory in (os.path.join(path, 'checkpoints'), path):
    steps = steps_in(directory)
    if steps:
      return _choose(directory, steps, step)
  name = os.path.basename(path)
  if _STEP.match(name) and fileio.isdir(os.path.join(path, _ITEM)):
    item = os.path.join(path, _ITEM)
  elif name == _ITEM and fileio.exists(os.path.join(path, '_METADATA')):
    item = path
  else:
    return None
  saved = int(os.path.basename(os.path.dirname(item)))
  if step is not None and step != saved:
    raise MissingFileError(
      f'{path} is the checkpoint of step {saved}, not {step}. Give the workdir to choose a step.'
    )
  return item


def workdir_of(item: str) -> str:
  """The training workdir that holds the item directory `.../checkpoints/<step>/default`."""
  return os.path.dirname(os.path.dirname(os.path.dirname(item)))


def saved_config(item: str) -> dict[str, Any] | None:
  """The `config.json` the trainer wrote next to the checkpoint, or None."""
  path = os.path.join(workdir_of(item), CONFIG_NAME)
  if not fileio.isfile(path):
    return None
  return fileio.read_json(path)


def _missing_step_metadata(record: logging.LogRecord) -> bool:
  # The step-level metadata the trainer's CheckpointManager keeps is one level up; a warning
  # that the item lacks it would only alarm a user of predict or visualize.
  return 'Metadata file does not exist' not in record.getMessage()


def read_params(item: str) -> dict[str, Any]:
  """Reads only `params` of the train state at the Orbax item directory `item`.

  Returns:
    The params as a nested dict of numpy arrays (optimizer moments stay on disk).
  """
  item = resolve_path(item)
  checkpointer = ocp.PyTreeCheckpointer()
  absl_logger = logging.getLogger('absl')
  absl_logger.addFilter(_missing_step_metadata)
  try:
    metadata = checkpointer.metadata(item)
  finally:
    absl_logger.removeFilter(_missing_step_metadata)
  tree = getattr(getattr(metadata, 'item_metadata', None), 'tree', None)
  if tree is None:
    raise MissingFileError(
      f'{item} is not a complete Orbax checkpoint (its metadata cannot be read). Point at '
      'a training workdir or another of its checkpoints/<step> directories.'
    )
  if 'params' not in tree:
    raise MissingFileError(f'Orbax checkpoint {item} has no `params` (keys: {sorted(tree)}).')
  # A params-only target with partial_restore reads nothing else from disk.
  target = {'params': jax.tree_util.tree_map(lambda m: np.zeros(m.shape, m.dtype), tree['params'])}
  restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
  restored = checkpointer.restore(
    item, args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True)
  )
  return restored['params']


def param_layout(tree: Any) -> dict[str, tuple[int, ...]]:
  """{'a/b/kernel': shape} of a params tree, a state dict or an Orbax metadata tree.

  Names are '/'-joined dict keys (or sequence indices), in the tree's flattening
  order; a metadata leaf has no value, so its `shape` is read.
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
    '/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path): tuple(
      getattr(leaf, 'shape', None) or np.shape(leaf)
    )
    for path, leaf in leaves
  }


def layout_differences(
  saved: dict[str, tuple[int, ...]], wanted: dict[str, tuple[int, ...]], limit: int = 3
) -> list[str]:
  """What keeps a checkpoint's layout `saved` from fitting the model's `wanted`, in words.

  Args:
    saved: {name: shape} of the checkpoint (`param_layout`).
    wanted: {name: shape} of the model.
    limit: how many differences to name; the rest are counted.

  Returns:
    Different shapes and missing names in the order of `wanted`, then the
    checkpoint's extra names in the order of `saved`; empty when they fit.
  """
  problems = [
    f'{k} has shape {saved[k]} in the checkpoint but {wanted[k]} in the model'
    for k in wanted
    if k in saved and saved[k] != wanted[k]
  ]
  problems += [f'{k} is missing from the checkpoint' for k in wanted if k not in saved]
  problems += [f'{k} is in the checkpoint but not in the model' for k in saved if k not in wanted]
  if len(problems) > limit:
    problems = problems[:limit] + [f'and {len(problems) - limit} more differences']
  return problems


# Config keys that change the parameters' shapes, compared with a workdir's config.json.
_SHAPE_KEYS = (
  'model.hidden_size',
  'model.num_layers',
  'model.num_heads',
  'model.mlp_dim',
  'model.patches.size',
  'model.classifier',
  'model.representation_size',
  'model.attention_config.type',
  'model.temporal_encoding_config.method',
  'model.spatial_transformer.num_layers',
  'model.temporal_transformer.num_layers',
  'dataset_configs.num_frames',
  'dataset_configs.crop_size',
  'dataset_configs.num_classes',
)


def _get(tree: Any, dotted: str) -> Any:
  for part in dotted.split('.'):
    if not hasattr(tree, 'get'):
      return None
    tree = tree.get(part)
  return list(tree) if isinstance(tree, (tuple, list)) else tree


# Keys named beside a shape key that differs, when they differ too: they must change
# together (a crop of the saved size needs frames resized at least that large).
_COMPANION_KEYS = {'dataset_configs.crop_size': ('dataset_configs.min_resize',)}


def config_differences(saved: dict[str, Any], config: Any) -> list[str]:
  """'model.hidden_size=16 (this config: 32)' for each shape key `saved` sets otherwise."""
  keys = [key for key in _SHAPE_KEYS if _get(saved, key) != _get(config, key)]
  keys += [c for key in keys for c in _COMPANION_KEYS.get(key, ()) if c not in keys]
  return [
    f'{key}={_get(saved, key)!r} (this config: {_get(config, key)!r})'
    for key in keys
    if _get(saved, key) != _get(config, key)
  ]


# Config keys that change what the parameters mean, whether or not they change their
# shapes: spacetime and factorised dot-product attention share one parameter tree, and so
# do two orders of the same class names. A workdir resumes, and a checkpoint predicts,
# only under the values it was trained with.
MEANING_KEYS = _SHAPE_KEYS + (
  'model.attention_config.attention_order',
  'model.attention_config.spatial_only_baseline',
  'model.temporal_encoding_config.n_sampled_frames',
  'model.spatial_transformer.num_heads',
  'model.spatial_transformer.mlp_dim',
  'model.temporal_transformer.num_heads',
  'model.temporal_transformer.mlp_dim',
  'dataset_configs.class_splits',
  'dataset_configs.multi_label',
  'dataset_configs.zero_centering',
)


# Unset, these are found from the data (and then compared by shape), not another value.
_FROM_THE_DATA = frozenset({'dataset_configs.num_classes'})


def _has(tree: Any, dotted: str) -> bool:
  for part in dotted.split('.'):
    if not hasattr(tree, 'get') or part not in tree:
      return False
    tree = tree[part]
  return True


def meaning_differences(saved: dict[str, Any], config: Any) -> list[str]:
  """'model.attention_config.type='spacetime' (this config: ...)' for each of `MEANING_KEYS`
  that the saved config.json sets otherwise (a key it lacks, written by an older
  version, is not compared)."""
  return [
    f'{key}={_get(saved, key)!r} (this config: {_get(config, key)!r})'
    for key in MEANING_KEYS
    if _has(saved, key)
    and _get(saved, key) != _get(config, key)
    and not (key in _FROM_THE_DATA and None in (_get(saved, key), _get(config, key)))
  ]


def _check_meaning(source: str, config: Any) -> None:
  """Raises ModelMismatchError when the config.json beside `source` trained another model."""
  saved = saved_config(source) if config is not None and source.endswith('/' + _ITEM) else None
  differences = meaning_differences(saved, config) if saved is not None else []
  if differences:
    raise ModelMismatchError(
      f'The checkpoint {source} was trained with another model: '
      f'{os.path.join(workdir_of(source), CONFIG_NAME)} sets {", ".join(differences)}. '
      'Pass that config file, or set those keys (--config.KEY=VALUE).'
    )


def check_fits(
  module: Any, params: Any, shape: tuple[int, ...], source: str, config: Any = None
) -> None:
  """Raises ModelMismatchError unless `params` are exactly those of `module` on `shape` inputs.

  Args:
    module: the Flax model built from the config.
    params: the checkpoint's params (nested dict).
    shape: (T, S, S, 3) of one input view.
    source: the checkpoint path read (named in the message; its workdir's
      config.json, when there is one, is compared with `config`).
    config: the resolved config, to name the keys that differ.
  """
  expected = jax.eval_shape(
    lambda: module.init(jax.random.key(0), np.zeros((1, *shape), np.float32), train=False)
  )['params']
  # Sorted by name, so that the message lists parameters alphabetically.
  problems = layout_differences(
    dict(sorted(param_layout(params).items())), dict(sorted(param_layout(expected).items()))
  )
  if not problems:
    _check_meaning(source, config)
    return
  fix = 'Pass the config it was trained with.'
  saved = saved_config(source) if source.endswith('/' + _ITEM) else None
  if saved is not None:
    differences = config_differences(saved, config) if config is not None else []
    fix = (
      f'It was written with {os.path.join(workdir_of(source), CONFIG_NAME)}'
      + (f', which sets {", ".join(differences)}' if differences else '')
      + '. Pass that config file, or set those keys (--config.KEY=VALUE).'
    )
  raise ModelMismatchError(
    f'The checkpoint {source} does not fit the model of this config: {"; ".join(problems)}. {fix}'
  )

"""Reads the parameters of a trained model for inference.

Three layouts are accepted, so that a user can point at whatever they have:
- a training workdir (`WORKDIR/checkpoints/<step>/`, written by
  vivit_jax/train/checkpointing.py): its latest complete step;
- an Orbax checkpoints directory (the `checkpoints/` folder itself) or one
  step directory in it;
- a Flax msgpack file `{'params': ...}` or a directory holding `checkpoint`
  (`python -m vivit_jax.tools.convert_checkpoint`, Scenic's format).
Only `params` is read: an Orbax train state's optimizer moments stay on disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import flax.serialization
import jax
import numpy as np

_STEP = re.compile(r'^\d+$')
_ORBAX_ITEM = 'default'


def _orbax_steps(directory: str) -> list[int]:
  """Complete Orbax step directories in `directory` (those with their item written)."""
  if not os.path.isdir(directory):
    return []
  return sorted(
    int(name)
    for name in os.listdir(directory)
    if _STEP.match(name) and os.path.isdir(os.path.join(directory, name, _ORBAX_ITEM))
  )


def _orbax_item(path: str) -> str | None:
  """The Orbax item directory that `path` designates, or None if it is not Orbax."""
  for directory in (os.path.join(path, 'checkpoints'), path):
    steps = _orbax_steps(directory)
    if steps:
      return os.path.join(directory, str(steps[-1]), _ORBAX_ITEM)
  if os.path.isdir(os.path.join(path, _ORBAX_ITEM)) and _STEP.match(os.path.basename(path)):
    return os.path.join(path, _ORBAX_ITEM)
  if os.path.basename(os.path.normpath(path)) == _ORBAX_ITEM and os.path.exists(
    os.path.join(path, '_METADATA')
  ):
    return path
  return None


def _read_orbax_params(item: str) -> dict[str, Any]:
  import orbax.checkpoint as ocp

  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(item).item_metadata.tree
  if 'params' not in tree:
    raise ValueError(f'Orbax checkpoint {item!r} has no `params` (keys: {sorted(tree)}).')
  # A params-only target with partial_restore reads nothing else from disk.
  target = {'params': jax.tree_util.tree_map(lambda m: np.zeros(m.shape, m.dtype), tree['params'])}
  restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
  restored = checkpointer.restore(
    item, args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True)
  )
  return restored['params']


def _msgpack_file(path: str) -> str:
  if os.path.isfile(path):
    return path
  candidate = os.path.join(path, 'checkpoint')
  if os.path.isfile(candidate):
    return candidate
  raise FileNotFoundError(
    f'{path!r} is neither a training workdir, an Orbax checkpoint nor a msgpack checkpoint '
    "(no 'checkpoints/<step>', '<step>/default' or 'checkpoint' inside)."
  )


def _read_msgpack_params(path: str) -> dict[str, Any]:
  with open(path, 'rb') as f:
    state = flax.serialization.msgpack_restore(f.read())
  if not isinstance(state, Mapping) or 'params' not in state:
    raise ValueError(f'{path!r} holds no `params` (a Flax msgpack {{"params": ...}} expected).')
  return state['params']


def load_params(path: str) -> tuple[dict[str, Any], str]:
  """Reads the model parameters of a checkpoint.

  Args:
    path: a training workdir, an Orbax checkpoints or step directory, or a
      msgpack checkpoint file or the directory holding its `checkpoint` file.

  Returns:
    (params as a nested dict of numpy arrays, the path actually read).

  Raises:
    FileNotFoundError: nothing at `path` looks like a checkpoint.
    ValueError: the checkpoint holds no params.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f'Checkpoint {path!r} does not exist.')
  if os.path.isdir(path):
    item = _orbax_item(path)
    if item is not None:
      return _read_orbax_params(item), item
  file = _msgpack_file(path)
  return _read_msgpack_params(file), file

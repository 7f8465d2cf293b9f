"""Reads the parameters of a trained model for inference.

Three layouts are accepted, so that a user can point at whatever they have:
- a training workdir (`WORKDIR/checkpoints/<step>/`, written by
  vivit_jax/train/checkpointing.py): its latest complete step, or `step`;
- an Orbax checkpoints directory (the `checkpoints/` folder itself) or one
  step directory in it;
- a Flax msgpack file (`{'params': ...}` or a Scenic train state) or a
  directory holding `checkpoint` (`python -m vivit_jax.tools.convert_checkpoint`,
  Scenic's format).
Only `params` is read: an Orbax train state's optimizer moments stay on disk.
Relative paths are taken from the current directory.
"""

from __future__ import annotations

import os
from typing import Any

from vivit_jax import fileio
from vivit_jax.checkpoints import formats, workdir
from vivit_jax.data import records
from vivit_jax.errors import MissingFileError

_FIX = (
  'Point --checkpoint at the --workdir of a training run, or at a file written by '
  'convert_checkpoint.'
)


def _msgpack_file(path: str) -> str:
  if fileio.isfile(path):
    return path
  candidate = os.path.join(path, 'checkpoint')
  if fileio.isfile(candidate):
    return candidate
  raise MissingFileError(
    f'{path} is neither a training workdir, an Orbax checkpoint nor a msgpack checkpoint '
    f"(no 'checkpoints/<step>', '<step>/default' or 'checkpoint' inside). {_FIX}"
  )


def load_params(path: str, step: int | None = None) -> tuple[dict[str, Any], str]:
  """Reads the model parameters of a checkpoint.

  Args:
    path: a training workdir, an Orbax checkpoints or step directory, or a
      msgpack checkpoint file or the directory holding its `checkpoint` file;
      absolute or relative to the current directory.
    step: which step of a workdir (None: the latest).

  Returns:
    (params as a nested dict of numpy arrays, the absolute path actually read).

  Raises:
    MissingFileError: nothing at `path` looks like a checkpoint, or `step`
      was not saved (the message lists the saved steps).
    CheckpointFormatError: the file is no msgpack, or holds no params.
  """
  path = workdir.resolve_path(path)
  if not fileio.exists(path):
    raise MissingFileError(
      f'Checkpoint {path} does not exist. Point --checkpoint at the --workdir of a training '
      'run (relative paths start from the current directory).'
    )
  if fileio.isdir(path):
    item = workdir.find_item(path, step)
    if item is not None:
      return workdir.read_params(item), item
  if step is not None:
    raise MissingFileError(f'{path} is not a training workdir: it has no steps to choose from.')
  file = _msgpack_file(path)
  return formats.read_msgpack_params(file, _FIX), file


def default_label_map(checkpoint: str | None, base_dir: str | None) -> str | None:
  """The label map that goes with a checkpoint, when one can be found.

  Looked for, in order: `label_map.txt` next to the checkpoint (a workdir or
  a converted directory), in the `dataset_configs.base_dir` of the workdir's
  config.json, and in `base_dir` (the config's).

  Returns:
    The path of the first that exists, or None.
  """
  directories = []
  if checkpoint:
    path = workdir.resolve_path(checkpoint)
    item = workdir.find_item(path) if fileio.isdir(path) else None
    if item is not None:
      root = workdir.workdir_of(item)
      saved = workdir.saved_config(item) or {}
      directories += [root, (saved.get('dataset_configs') or {}).get('base_dir')]
    else:
      directories.append(path if fileio.isdir(path) else os.path.dirname(path))
  directories.append(base_dir)
  for directory in directories:
    if directory:
      candidate = os.path.join(directory, records.LABEL_MAP_FILENAME)
      if fileio.isfile(candidate):
        return candidate
  return None

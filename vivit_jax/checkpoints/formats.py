"""Readers of pretrained checkpoints, and detection of their format.

Every reader returns one canonical form: a flat dict from '/'-joined Scenic
parameter names (`Transformer/encoderblock_0/LayerNorm_0/scale`, ...) to numpy
arrays, so surgery sees one layout whatever the file was. Nothing here unpickles:
.npz files are opened with `allow_pickle=False`, PyTorch weights are read only
from safetensors, and Scenic train states are msgpack.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import flax.serialization
import numpy as np

from vivit_jax import fileio
from vivit_jax.checkpoints import huggingface, workdir
from vivit_jax.config import ConfigError
from vivit_jax.errors import MissingFileError, UserError

FORMATS = ('big_vision', 'scenic', 'huggingface', 'orbax')
Flat = dict[str, np.ndarray]

# vision_transformer's 2020 files number the modules inside a block in pre-Linen
# order of creation; AugReg and Scenic number each module type from 0.
_PRE_LINEN_BLOCK = {
  'MultiHeadDotProductAttention_1': 'MultiHeadDotProductAttention_0',
  'LayerNorm_2': 'LayerNorm_1',
  'MlpBlock_3': 'MlpBlock_0',
}
_CHECKPOINT_FILE = re.compile(r'^checkpoint(_(\d+))?$')


class CheckpointFormatError(UserError, ValueError):
  """A file is not the checkpoint format it was read as, or holds no parameters."""


def flatten(tree: Mapping[str, Any], prefix: str = '') -> Flat:
  """Nested dict -> {'a/b/c': np.ndarray}."""
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, Mapping):
      out.update(flatten(value, f'{name}/'))
    else:
      out[name] = np.asarray(value)
  return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """{'a/b/c': x} -> nested dict."""
  tree: dict[str, Any] = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split('/')
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree


def _scenic_file(path: str) -> str:
  """The msgpack file of a Scenic checkpoint: `path`, or the newest in directory `path`."""
  if not fileio.isdir(path):
    return path
  steps = []
  for name in fileio.listdir(path):
    match = _CHECKPOINT_FILE.match(name)
    if match and fileio.isfile(os.path.join(path, name)):
      steps.append((int(match.group(2) or -1), name))
  if not steps:
    raise MissingFileError(
      f"No 'checkpoint' or 'checkpoint_<step>' file in directory {path!r}, and it is no "
      'training workdir. Point at a workdir, a Scenic/Flax msgpack file or its directory.'
    )
  return os.path.join(path, max(steps)[1])


def detect_format(path: str) -> str:
  """Names the format of the checkpoint at `path` (file or directory).

  Returns:
    'huggingface' for a directory with model.safetensors (or a .safetensors
    file), 'orbax' for a training workdir or one of its Orbax checkpoints,
    'big_vision' for an .npz file (or any zip), 'scenic' otherwise (a msgpack
    file, or a directory holding `checkpoint[_<step>]`).
  """
  if not fileio.exists(path):
    raise MissingFileError(
      f'Checkpoint {workdir.resolve_path(path)} does not exist (relative paths start from '
      'the current directory).'
    )
  if fileio.isdir(path):
    if fileio.isfile(os.path.join(path, huggingface.WEIGHTS_NAME)):
      return 'huggingface'
    if workdir.find_item(path) is not None:
      return 'orbax'
    return 'scenic'
  if path.endswith('.safetensors'):
    return 'huggingface'
  with fileio.open_file(path, 'rb') as f:
    magic = f.read(4)
  if path.endswith('.npz') or magic == b'PK\x03\x04':
    return 'big_vision'
  return 'scenic'


def _unstack_scanned(flat: Flat) -> Flat:
  """big_vision's scanned encoder `encoderblock/x` [L, ...] -> `encoderblock_{i}/x`."""
  out = {}
  for name, value in flat.items():
    if '/encoderblock/' in name:
      for i in range(value.shape[0]):
        out[name.replace('/encoderblock/', f'/encoderblock_{i}/')] = value[i]
    else:
      out[name] = value
  return out


def canonical_vit_names(flat: Flat) -> Flat:
  """Renames vision_transformer / big_vision ViT keys to Scenic's.

  Handles the `params/` and `opt/target/` prefixes, pre-Linen block numbering,
  big_vision's top-level `pos_embedding` and scanned blocks, and `head` ->
  `output_projection`.
  """
  for prefix in ('opt/target/', 'params/'):
    if flat and all(k.startswith(prefix) for k in flat):
      flat = {k[len(prefix) :]: v for k, v in flat.items()}
  pre_linen = any('/MlpBlock_3/' in k for k in flat)
  out = {}
  for name, value in _unstack_scanned(flat).items():
    parts = name.split('/')
    if pre_linen and len(parts) > 2 and parts[1].startswith('encoderblock_'):
      parts[2] = _PRE_LINEN_BLOCK.get(parts[2], parts[2])
    if parts[0] == 'head':
      parts[0] = 'output_projection'
    if parts == ['pos_embedding']:
      parts = ['Transformer', 'posembed_input', 'pos_embedding']
    out['/'.join(parts)] = value
  return out


def read_big_vision(path: str) -> Flat:
  """Reads a ViT .npz (vision_transformer or big_vision) without unpickling."""
  with fileio.local_copy(path) as local, np.load(local, allow_pickle=False) as data:
    flat = {k: np.asarray(data[k]) for k in data.files}
  return canonical_vit_names(flat)


def read_msgpack_params(path: str, fix: str) -> dict[str, Any]:
  """Reads the params tree of a Flax msgpack file: a Scenic train state or `{'params': ...}`.

  Params are found under `params` or, in older train states, `optimizer/target`.

  Args:
    path: the msgpack file.
    fix: the sentence that tells the user what to point at instead, said when
      the file is no msgpack checkpoint.

  Returns:
    The params as a nested dict of numpy arrays.

  Raises:
    CheckpointFormatError: the file is no msgpack, or holds no parameters.
  """
  with fileio.open_file(path, 'rb') as f:
    data = f.read()
  try:
    state = flax.serialization.msgpack_restore(data)
  except Exception as e:  # msgpack raises its own (undocumented) error types.
    raise CheckpointFormatError(
      f'{path!r} is not a Scenic/Flax msgpack checkpoint ({type(e).__name__}: {e}). {fix}'
    ) from None
  tree = state
  while isinstance(tree, Mapping) and ('params' in tree or 'optimizer' in tree):
    tree = tree['params'] if 'params' in tree else tree['optimizer']['target']
  if not isinstance(tree, Mapping) or not tree:
    raise CheckpointFormatError(
      f'{path!r} holds no parameters under `params` or `optimizer/target`.'
    )
  return tree


def read_scenic(path: str) -> Flat:
  """Reads the params of a Scenic (Flax msgpack) train state: file or directory."""
  tree = read_msgpack_params(
    _scenic_file(path),
    'Point init_from.checkpoint_path at a ViT (.npz), Scenic/Flax (msgpack) or Hugging Face '
    'checkpoint, or set init_from.checkpoint_format.',
  )
  return canonical_vit_names(flatten(tree))


def read_orbax(path: str, step: int | None = None) -> Flat:
  """Reads the params of a training workdir or one of its Orbax checkpoints (latest or `step`)."""
  item = workdir.find_item(path, step)
  if item is None:
    raise MissingFileError(
      f'{workdir.resolve_path(path)} is no training workdir or Orbax checkpoint (no '
      "'checkpoints/<step>' or '<step>/default' inside)."
    )
  return flatten(workdir.read_params(item))


def read_checkpoint(
  path: str, checkpoint_format: str | None = None, step: int | None = None
) -> tuple[Flat, str]:
  """Reads any supported checkpoint into Scenic's flat parameter names.

  Args:
    path: file or directory (relative paths start from the current directory).
    checkpoint_format: one of FORMATS, or None to detect it.
    step: the step of a training workdir to read; None for the latest.

  Returns:
    (flat params {name: array}, the format used).
  """
  checkpoint_format = checkpoint_format or detect_format(path)
  if checkpoint_format == 'orbax':
    return read_orbax(path, step), checkpoint_format
  if checkpoint_format == 'big_vision':
    return read_big_vision(path), checkpoint_format
  if checkpoint_format == 'scenic':
    return read_scenic(path), checkpoint_format
  if checkpoint_format == 'huggingface':
    return huggingface.read(path), checkpoint_format
  raise ConfigError(
    f'init_from.checkpoint_format is {checkpoint_format!r}; expected one of {", ".join(FORMATS)}.'
  )


def write_scenic(path: str, params: Mapping[str, Any]) -> None:
  """Writes {'params': params} as a Flax msgpack file (Scenic's checkpoint format)."""
  tree = unflatten(flatten(params))
  data = flax.serialization.msgpack_serialize({'params': tree})
  with fileio.atomic_write(fileio.absolute(path), 'wb') as f:
    f.write(data)

"""What a run finds in its workdir and leaves there: resume, init_from, undo, finished.

`train_and_evaluate` starts from the workdir's latest checkpoint, else from
`config.init_from`, else from the random initialisation; a run that fails
before its first step leaves the workdir as it found it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import ml_collections
from absl import logging

from vivit_jax import checkpoints, fileio
from vivit_jax.checkpoints import workdir as workdir_lib
from vivit_jax.data import records
from vivit_jax.train.checkpointing import Checkpointer, CheckpointMismatchError
from vivit_jax.train.state import TrainState


@contextlib.contextmanager
def undone_unless_stepped(workdir: str) -> Iterator[dict[str, bool]]:
  """Removes what the block added to `workdir` when it fails before its first step.

  A run that fails that early (a bad key, missing data, a workdir of another
  config) leaves the workdir as it found it: no event files, no config.json, no
  empty checkpoints/ and, if it was new, no workdir. Yields {'stepped': False};
  the block sets 'stepped' once a step has run.
  """
  before = set(fileio.listdir(workdir)) if fileio.isdir(workdir) else None
  existed = fileio.exists(workdir)  # A file given as the workdir is the user's: never removed.
  progress = {'stepped': False}
  try:
    yield progress
  except BaseException:
    if not progress['stepped'] and jax.process_index() == 0:
      if before is not None:
        for name in set(fileio.listdir(workdir)) - before:
          fileio.rmtree(os.path.join(workdir, name))
      elif not existed:
        fileio.rmtree(workdir)
    raise


def _written_with(workdir: str, config: ml_collections.ConfigDict) -> str | None:
  """'It was written with WORKDIR/config.json, which sets model.hidden_size=16 (...)', or None."""
  path = os.path.join(workdir, 'config.json')
  if not fileio.isfile(path):
    return None
  differences = workdir_lib.config_differences(fileio.read_json(path), config)
  if not differences:
    return None
  return f'It was written with {path}, which sets {", ".join(differences)}.'


def _check_same_model(
  workdir: str, config: ml_collections.ConfigDict, label_names: Sequence[str] | None
) -> None:
  """Raises CheckpointMismatchError when the workdir was trained with another model.

  Its parameters may fit this config's model and still mean something else: the
  same tree under another attention type, or the same classes in another order.
  """
  path = os.path.join(workdir, workdir_lib.CONFIG_NAME)
  saved = fileio.read_json(path) if fileio.isfile(path) else None
  differences = workdir_lib.meaning_differences(saved, config) if saved is not None else []
  fix = (
    'Rerun with that config, or use a new --workdir for this one. Nothing in the directory '
    'was changed.'
  )
  if differences:
    raise CheckpointMismatchError(
      f'The workdir {workdir} was trained with another model: its {path} sets '
      f'{", ".join(differences)}. {fix}'
    )
  map_path = os.path.join(workdir, records.LABEL_MAP_FILENAME)
  if label_names is None or not fileio.isfile(map_path):
    return
  kept = records.read_label_map(map_path)
  if list(kept) != list(label_names):
    first = next(
      (i for i, (a, b) in enumerate(zip(kept, label_names)) if a != b),
      min(len(kept), len(label_names)),
    )
    there = repr(kept[first]) if first < len(kept) else 'missing'
    here = repr(label_names[first]) if first < len(label_names) else 'missing'
    raise CheckpointMismatchError(
      f'The workdir {workdir} was trained with other classes: its {map_path} lists '
      f'{len(kept)}, the data {len(label_names)}, and class {first} is {there} there but '
      f'{here} in the data. Rerun with the data (or dataset_configs.label_map) it was trained '
      f'on, or use a new --workdir for this one. Nothing in the directory was changed.'
    )


def keep_label_map(workdir: str, label_names: Sequence[str] | None) -> None:
  """Writes the data's class names to WORKDIR/label_map.txt when it has none.

  A resumed run is compared with it (`restore_or_init`), and predict reads it.
  """
  path = os.path.join(workdir, records.LABEL_MAP_FILENAME)
  if label_names is not None and not fileio.exists(path):
    records.write_label_map(path, label_names)


def _load_pretrained(config: ml_collections.ConfigDict, params: Any) -> Any:
  logging.info('Initialising from %s.', config.init_from.checkpoint_path)
  return checkpoints.load_pretrained(config, params)


def restore_or_init(
  config: ml_collections.ConfigDict,
  workdir: str,
  checkpointer: Checkpointer,
  initial: TrainState,
  label_names: Sequence[str] | None = None,
) -> TrainState:
  """The state to start from: the workdir's latest checkpoint, else init_from, else random.

  Args:
    config: the resolved config (reads `init_from`).
    workdir: the run's directory; its config.json names what wrote a mismatched checkpoint.
    checkpointer: the workdir's checkpoints.
    initial: the random initialisation, from `build_train_state`.
    label_names: the data's class names, compared with the workdir's label_map.txt.

  Returns:
    A host-local state; its step is where training resumes.

  Raises:
    CheckpointMismatchError: the checkpoint does not fit this config's model, or
      fits it but was trained with other values of `workdir.MEANING_KEYS` or
      other class names. Nothing in the workdir is changed.
  """
  state = initial
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore(state, written_with=_written_with(workdir, config))
    _check_same_model(workdir, config, label_names)
    logging.info('Resumed from step %d in %s.', int(state.step), checkpointer.directory)
  elif config.init_from.checkpoint_path:
    params = _load_pretrained(config, state.params)
    state = state.replace(params=params, opt_state=state.tx.init(params))
  return state


def final_evaluation_missing(workdir: str, start_step: int, total_steps: int) -> bool:
  """True for a workdir whose final checkpoint has no results.json: the run ended in its final
  evaluation (a bad test video, a kill), which the trainer then runs again."""
  missing = start_step == total_steps and not fileio.exists(os.path.join(workdir, 'results.json'))
  if missing:
    logging.warning(
      'The checkpoint of the final step %d in %s has no results.json (the run ended during '
      'its final evaluation): evaluating it again.',
      total_steps,
      workdir,
    )
  return missing


def already_finished(
  workdir: str, start_step: int, total_steps: int, checkpointer: Checkpointer
) -> dict[str, Any]:
  """Says there is nothing to train, closes the checkpoints; the stored results, if any."""
  message = (
    f'{workdir} already holds a checkpoint at step {start_step} >= num_training_steps '
    f'{total_steps}: nothing to train. Use a new --workdir, or raise num_training_steps.'
  )
  logging.warning(message)
  print(message, flush=True)
  checkpointer.close()
  results_path = os.path.join(workdir, 'results.json')
  if fileio.exists(results_path):
    return fileio.read_json(results_path)
  return {'step': start_step, 'already_finished': True}

"""What a run finds in its workdir and leaves there: resume, init_from, undo, finished.

`train_and_evaluate` starts from the workdir's latest checkpoint, else from
`config.init_from`, else from the random initialisation; a run that fails
before its first step leaves the workdir as it found it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
from absl import logging

from vivit_jax import checkpoints, fileio
from vivit_jax.checkpoints import workdir as workdir_lib
from vivit_jax.train.checkpointing import Checkpointer
from vivit_jax.train.state import Training, TrainState, create_train_state


@contextlib.contextmanager
def undone_unless_stepped(workdir: str) -> Iterator[dict[str, bool]]:
  """Removes what the block added to `workdir` when it fails before its first step.

  A run that fails that early (a bad key, missing data, a workdir of another
  config) leaves the workdir as it found it: no event files, no config.json, no
  empty checkpoints/ and, if it was new, no workdir. Yields {'stepped': False};
  the block sets 'stepped' once a step has run.
  """
  before = set(fileio.listdir(workdir)) if fileio.isdir(workdir) else None
  progress = {'stepped': False}
  try:
    yield progress
  except BaseException:
    if not progress['stepped'] and jax.process_index() == 0:
      if before is None:
        fileio.rmtree(workdir)
      else:
        for name in set(fileio.listdir(workdir)) - before:
          fileio.rmtree(os.path.join(workdir, name))
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


def _load_pretrained(config: ml_collections.ConfigDict, params: Any) -> Any:
  logging.info('Initialising from %s.', config.init_from.checkpoint_path)
  return checkpoints.load_pretrained(config, params)


def restore_or_init(
  config: ml_collections.ConfigDict, workdir: str, checkpointer: Checkpointer, training: Training
) -> TrainState:
  """The state to start from: the workdir's latest checkpoint, else init_from, else random.

  Args:
    config: the resolved config (reads `init_from`).
    workdir: the run's directory; its config.json names what wrote a mismatched checkpoint.
    checkpointer: the workdir's checkpoints.
    training: from `build_training`; its state is the random initialisation.

  Returns:
    A host-local state; its step is where training resumes.
  """
  state = training.state
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore(state, written_with=_written_with(workdir, config))
    logging.info('Resumed from step %d in %s.', int(state.step), checkpointer.directory)
  elif config.init_from.checkpoint_path:
    state = create_train_state(_load_pretrained(config, state.params), training.tx, state.rng)
  return state


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

"""Orbax checkpoints of the train state, and preemption (SIGTERM, Ctrl-C) handling.

Checkpoints live in `workdir/checkpoints/<step>`; writes are asynchronous
(training goes on while the files are written) and atomic (a step directory
appears only once complete), so a killed run never leaves a half-written
checkpoint as the latest. Every process calls `save`; Orbax coordinates the
hosts and only the primary one writes the (host-local, replicated) arrays.
"""

from __future__ import annotations

import errno
import logging as pylogging
import signal
import threading
from collections.abc import Callable
from typing import Any

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from vivit_jax import fileio
from vivit_jax.checkpoints import workdir
from vivit_jax.errors import UserError
from vivit_jax.train.parallel import unreplicate_to_host
from vivit_jax.train.state import TrainState


class _QuietOrbax(pylogging.Filter):
  def filter(self, record: pylogging.LogRecord) -> bool:
    return record.levelno >= pylogging.WARNING or '/orbax/' not in record.pathname


def quiet_orbax_logging() -> None:
  """Drops Orbax's per-save INFO chatter from absl's log so a training log stays readable."""
  logging.get_absl_handler().addFilter(_QuietOrbax())


class CheckpointMismatchError(UserError, ValueError):
  """A checkpoint's parameter layout does not fit the model being trained."""


class CheckpointSaveError(UserError, OSError):
  """A checkpoint could not be written (e.g. the disk is full)."""


def _layout(tree: Any) -> dict[str, tuple[int, ...]]:
  """{'params/Dense_0/kernel': shape} of a state dict or an Orbax metadata tree."""
  layout = workdir.param_layout(tree)
  # Parameters first: they say most plainly which model wrote the checkpoint.
  return dict(sorted(layout.items(), key=lambda item: not item[0].startswith('params/')))


class Checkpointer:
  """Saves and restores `TrainState`s in `directory` with an Orbax manager.

  Args:
    directory: where the step directories go (created if missing).
    max_to_keep: how many recent checkpoints to keep.
  """

  def __init__(self, directory: str, max_to_keep: int = 3):
    options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True
    )
    self.directory = fileio.absolute(directory)
    # The handler is named so that a checkpoint's layout can be read (item_metadata)
    # before anything is restored.
    self._manager = ocp.CheckpointManager(
      self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
    )

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or None."""
    return self._manager.latest_step()

  def save(self, state: TrainState, *, to_host: Callable[[Any], Any] = unreplicate_to_host) -> int:
    """Starts writing `state` (all processes must call this); returns its step.

    `to_host` makes whole numpy arrays of it: the placement's `to_host`
    (`parallel`), `jax.device_get` for a state on one device. Either mode's
    checkpoint is the same whole arrays, so it restores under the other and on
    any number of devices.
    """
    host = to_host(state)
    step = int(host.step)
    tree = flax.serialization.to_state_dict(host)
    try:
      self._manager.save(step, args=ocp.args.StandardSave(tree), force=True)
    except OSError as e:
      raise self._save_error(step, e) from e
    return step

  def _save_error(self, step: int | None, error: OSError) -> CheckpointSaveError:
    """An error that says what failed, what is still safe, and what to do."""
    what = 'No space left on device' if error.errno == errno.ENOSPC else str(error)
    latest = self.latest_step()
    kept = (
      f'The checkpoint of step {latest} is complete and intact'
      if latest is not None
      else 'No earlier checkpoint exists'
    )
    return CheckpointSaveError(
      error.errno,
      f'Could not save the checkpoint of step {step if step is not None else "?"} in '
      f'{self.directory}: {what}. {kept} (a half-written step is never used). Free space '
      'there (or lower max_checkpoints_to_keep) and rerun the same command to resume.',
    )

  def restore(
    self, target: TrainState, step: int | None = None, written_with: str | None = None
  ) -> TrainState:
    """Restores the checkpoint at `step` (default: latest) into `target`'s structure.

    Args:
      target: a host-local (unreplicated) state with the right tree structure,
        e.g. the freshly initialised one.
      step: which checkpoint; the latest when None.
      written_with: a sentence naming the config that wrote the checkpoint,
        said when it does not fit.

    Returns:
      The restored state as numpy arrays.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'No checkpoint in {self.directory}.')
    template = flax.serialization.to_state_dict(jax.device_get(target))
    # Orbax would restore other shapes silently; the model would fail later with
    # an error that does not mention the checkpoint.
    saved = self._manager.item_metadata(step)
    saved = getattr(saved, 'tree', saved)
    problems = (
      workdir.layout_differences(_layout(saved), _layout(template)) if saved is not None else []
    )
    if problems:
      raise CheckpointMismatchError(
        f'The checkpoint of step {step} in {self.directory} does not fit the model of this '
        f'config: {"; ".join(problems)}. '
        + (
          written_with
          or 'The directory was written with another config (its config.json is the one '
          'that wrote it).'
        )
        + ' Rerun with that config, or use a new --workdir for this one. Nothing in the '
        'directory was changed.'
      )
    abstract = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), template
    )
    restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return flax.serialization.from_state_dict(target, restored)

  def reached_preemption(self, step: int) -> bool:
    """True when JAX's preemption service says every host should save now."""
    return self._manager.reached_preemption(step)

  def wait(self) -> None:
    """Blocks until pending asynchronous writes are complete.

    Raises:
      CheckpointSaveError: an asynchronous write failed (e.g. the disk is full).
    """
    try:
      self._manager.wait_until_finished()
    except OSError as e:
      raise self._save_error(None, e) from e

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self._manager.close()


class PreemptionWatcher:
  """Turns SIGTERM and SIGINT (Ctrl-C) into a request to checkpoint and stop at the next step.

  A second SIGINT ends the process at once (the default action, as SIGKILL
  would): the last complete checkpoint is kept, the steps since are lost.

  On one process the signal handler's flag decides. On several, all hosts must
  stop at the same step, so the flags are combined with an all-gather every
  `sync_every` steps, and JAX's own preemption service (TPU pods) is asked
  through the checkpointer.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, checkpointer: Checkpointer | None = None, sync_every: int = 10):
    self._requested = threading.Event()
    self._checkpointer = checkpointer
    self._sync_every = sync_every
    self._previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
      for signum in self.SIGNALS:
        # An ignored SIGINT stays ignored: a shell script's background job is
        # not meant to stop on the Ctrl-C of the script's terminal.
        if signum != signal.SIGINT or signal.getsignal(signum) is not signal.SIG_IGN:
          self._previous[signum] = signal.signal(signum, self._handle)

  def _handle(self, signum, frame) -> None:
    del frame
    again = ''
    if signum == signal.SIGINT:
      signal.signal(signal.SIGINT, signal.SIG_DFL)
      again = ' Press Ctrl-C again to stop at once, losing the steps since the last checkpoint.'
    logging.warning(
      'Received %s: will save a checkpoint after this step and exit; rerun the same command '
      'to resume from it.%s',
      signal.Signals(signum).name,
      again,
    )
    self._requested.set()

  def should_stop(self, step: int) -> bool:
    if jax.process_count() == 1:
      return self._requested.is_set()
    if self._checkpointer is not None and self._checkpointer.reached_preemption(step):
      return True
    if step % self._sync_every:
      return False
    flags = multihost_utils.process_allgather(np.int32(self._requested.is_set()))
    return bool(np.max(flags))

  def close(self) -> None:
    """Puts back the handlers that were there before."""
    for signum, previous in self._previous.items():
      if previous is not None:  # None: a handler not set from Python, which cannot be restored.
        signal.signal(signum, previous)
    self._previous = {}

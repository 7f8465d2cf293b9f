"""What the training loop watches: its speed, and that its loss stays finite."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from vivit_jax.errors import UserError
from vivit_jax.train.checkpointing import unreplicate_to_host


class NonFiniteLossError(UserError, FloatingPointError):
  """The training loss or gradient norm became NaN or infinite."""


class ThroughputMeter:
  """Training speed between summaries, evaluation time left out.

  Steps/s and clips/s cover the steps since the last summary; core-hours add
  the training seconds of every interval so far, times the devices.
  """

  def __init__(self, start_step: int, clips_per_step: int, num_devices: int):
    self._clips_per_step = clips_per_step
    self._num_devices = num_devices
    self._last_time, self._last_step = time.time(), start_step
    self._paused = 0.0
    self._train_seconds = 0.0

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    """Time spent inside the block is not training time."""
    start = time.time()
    yield
    self._paused += time.time() - start

  def rates(self, step: int) -> dict[str, float]:
    """The summary of the interval ending at `step`; call `restart` once it is written."""
    elapsed = max(time.time() - self._last_time - self._paused, 1e-9)
    self._train_seconds += elapsed
    done = step - self._last_step
    return {
      'train/steps_per_sec': done / elapsed,
      'train/clips_per_sec': done * self._clips_per_step / elapsed,
      'train/core_hours': self.core_hours,
    }

  def restart(self, step: int) -> None:
    self._last_time, self._last_step, self._paused = time.time(), step, 0.0

  @property
  def core_hours(self) -> float:
    return self._train_seconds * self._num_devices / 3600


class LateFiniteCheck:
  """Checks each step's metrics for NaN or infinity one step late.

  Reading a step's metrics waits for that step; reading them after the next
  step is dispatched keeps the devices busy meanwhile. The host copies of the
  checked metrics collect in `history` for the next summary.
  """

  def __init__(self):
    self._pending: tuple[int, Any] | None = None
    self.history: list[dict[str, np.ndarray]] = []

  def push(self, step: int, metrics: Any) -> None:
    """Checks the previous step's metrics, then holds these (replicated) for later."""
    self.flush()
    self._pending = (step, metrics)

  def flush(self) -> None:
    """Checks the held metrics now, e.g. before a summary or a checkpoint.

    Raises:
      NonFiniteLossError: the held step's loss or gradient norm is not finite.
    """
    if self._pending is None:
      return
    step, metrics = self._pending
    host = unreplicate_to_host(metrics)
    if not host['finite']:
      raise NonFiniteLossError(
        f'Non-finite training loss at step {step} (loss {host["total_loss"]}, gradient norm '
        f'{host["grad_norm"]}); stopping. The last checkpoint is clean.'
      )
    self.history.append(host)
    self._pending = None

  def take_history(self) -> list[dict[str, np.ndarray]]:
    history, self.history = self.history, []
    return history

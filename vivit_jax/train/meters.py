"""What the training loop watches: its speed, and that its loss stays finite."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from clu import periodic_actions, platform

from vivit_jax.errors import UserError
from vivit_jax.train.parallel import unreplicate_to_host


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


def duration(seconds: float) -> str:
  """'2h05m', '4m07s' or '42s': whole seconds, as a person reads a wait."""
  minutes, secs = divmod(max(0, round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  if hours:
    return f'{hours}h{minutes:02d}m'
  return f'{minutes}m{secs:02d}s' if minutes else f'{secs}s'


class ProgressNote(periodic_actions.ReportProgress):
  """clu's progress note with an ETA that means something.

  clu floors its ETA to whole minutes and its note at the last step always says
  0, so a run shorter than a few minutes only ever read `ETA: 0m`. Here the
  speed is the mean since the first step (whose time includes compiling, so it
  is where the clock starts), the ETA counts seconds, and the last note says
  how long the steps took: `2.51 steps/s, 40.0% (400/1000), ETA: 3m59s`.
  Notes come every `every_secs` and at the last step, as clu's do.
  """

  def __init__(self, num_train_steps: int, every_secs: float = 60.0):
    super().__init__(num_train_steps=num_train_steps, every_secs=every_secs)
    self._total = num_train_steps
    self._first: tuple[int, float] | None = None

  def __call__(self, step: int, t: float | None = None) -> bool:
    t = time.monotonic() if t is None else t
    if self._first is None:
      self._first = (step, t)
    return super().__call__(step, t)

  def note(self, step: int, t: float) -> str:
    """The note at `step`, `t` seconds on the monotonic clock."""
    first_step, first_time = self._first or (step, t)
    elapsed = max(t - first_time, 1e-9)
    rate = (step - first_step) / elapsed
    done = f'{rate:.3g} steps/s, {100 * step / self._total:.1f}% ({step}/{self._total})'
    if step >= self._total:
      return f'{done}, steps {first_step + 1}..{step} took {duration(elapsed)}'
    return f'{done}, ETA: {duration((self._total - step) / rate) if rate else "unknown"}'

  def _apply(self, step: int, t: float) -> None:
    platform.work_unit().set_notes(self.note(step, t))


class LateFiniteCheck:
  """Checks each step's metrics for NaN or infinity one step late.

  Reading a step's metrics waits for that step; reading them after the next
  step is dispatched keeps the devices busy meanwhile. The host copies of the
  checked metrics collect in `history` for the next summary.
  """

  def __init__(self, to_host: Callable[[Any], Any] = unreplicate_to_host):
    self._to_host = to_host  # The placement's (`parallel`): metrics as numpy.
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
    host = self._to_host(metrics)
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

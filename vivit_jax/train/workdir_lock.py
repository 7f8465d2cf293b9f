"""One run per workdir: `WORKDIR/lock.json`, held by the run's process 0 while it trains.

Two runs on one workdir would train the same steps, write over each other's
checkpoints and each add TensorBoard event files. The first run's process 0
writes `lock.json` (host, pid, start time, heartbeat time) before anything else
goes into the workdir and rewrites the heartbeat every `HEARTBEAT_S` seconds
from a thread (a long compilation or evaluation does not let it go stale); a
second run that finds a live lock stops with an error naming the holder.

A lock is stale, and taken over with a log line, when its heartbeat is older
than `STALE_S`, or when it was written on this host by a process that no longer
runs: a crashed or killed run never leaves its workdir locked for long. The
lock is removed when the run ends, however it ends, so a run that fails before
its first step leaves no lock behind (`resume.undone_unless_stepped`).

Only the file layer is used (`fileio.create_new`): an exclusive create on a
local disk, a write and a read-back in a bucket, where there is no `flock`.
With several processes only process 0 locks; the others follow it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jax
from absl import logging

from vivit_jax import fileio
from vivit_jax.errors import UserError

LOCK_NAME = 'lock.json'
HEARTBEAT_S = 60.0  # How often the holder rewrites its heartbeat.
STALE_S = 300.0  # A heartbeat older than this is a run that is gone.


class WorkdirInUseError(UserError, RuntimeError):
  """Another run holds the workdir's lock."""


def _iso(unix: float) -> str:
  return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).strftime(
    '%Y-%m-%d %H:%M:%S UTC'
  )


def _pid_runs(pid: int) -> bool:
  """Whether process `pid` of this host runs (a zombie, killed but not yet reaped, does not)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's process.
    return True
  try:
    with open(f'/proc/{pid}/stat') as f:  # Linux: the state follows the command's ')'.
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except (OSError, IndexError):
    return True


def _stale_reason(holder: dict[str, Any], now: float) -> str | None:
  """Why the lock `holder` is no longer held, or None while its run lives."""
  age = now - float(holder.get('heartbeat_unix', 0.0))
  if age > STALE_S:
    return f'its heartbeat is {age:.0f} s old (over {STALE_S:.0f} s)'
  if holder.get('host') == socket.gethostname() and not _pid_runs(int(holder.get('pid', -1))):
    return f'process {holder.get("pid")} no longer runs on this host'
  return None


def _read(path: str) -> dict[str, Any] | None:
  """The lock at `path`; {} for one that cannot be read as a lock; None when there is none."""
  try:
    holder = fileio.read_json(path)
  except FileNotFoundError:
    return None
  except (ValueError, OSError):
    return {}
  return holder if isinstance(holder, dict) else {}


@dataclasses.dataclass
class WorkdirLock:
  """The lock of one workdir, taken by `acquire` and given back by `release`.

  Attributes:
    workdir: the run's directory.
    chief: whether this process locks (process 0); the others do nothing.
  """

  workdir: str
  chief: bool
  _record: dict[str, Any] | None = None
  _stop: threading.Event = dataclasses.field(default_factory=threading.Event)
  _thread: threading.Thread | None = None

  @property
  def path(self) -> str:
    return os.path.join(self.workdir, LOCK_NAME)

  def acquire(self) -> None:
    """Takes the lock (the workdir must exist), or raises WorkdirInUseError naming its holder."""
    if not self.chief:
      return
    now = time.time()
    record = {
      'host': socket.gethostname(),
      'pid': os.getpid(),
      'started': _iso(now),
      'started_unix': now,
      'heartbeat': _iso(now),
      'heartbeat_unix': now,
      'token': uuid.uuid4().hex,
    }
    for _ in range(2):  # A stale lock is removed once, then the lock is created anew.
      if fileio.create_new(self.path, json.dumps(record, indent=2, sort_keys=True)):
        self._record = record
        self._thread = threading.Thread(target=self._beat, daemon=True, name='workdir-lock')
        self._thread.start()
        return
      holder = _read(self.path)
      if holder is None:
        continue  # Released in the meantime.
      reason = _stale_reason(holder, time.time()) if holder else 'it cannot be read'
      if reason is None:
        raise self._in_use(holder)
      logging.warning(
        'Taking over the lock %s of pid %s on host %s (started %s): %s.',
        self.path,
        holder.get('pid', '?'),
        holder.get('host', '?'),
        holder.get('started', '?'),
        reason,
      )
      fileio.rmtree(self.path)
    raise self._in_use(_read(self.path) or {})

  def _in_use(self, holder: dict[str, Any]) -> WorkdirInUseError:
    age = time.time() - float(holder.get('heartbeat_unix', time.time()))
    return WorkdirInUseError(
      f'{self.workdir} is in use by another run: pid {holder.get("pid", "?")} on host '
      f'{holder.get("host", "?")}, started {holder.get("started", "?")}, alive {age:.0f} s ago '
      f'({self.path}). Wait for it to end, or use another --workdir; if that run is gone, '
      f'delete {self.path} (a lock without a heartbeat for {STALE_S:.0f} s is taken over).'
    )

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_S):
      self.refresh()

  def refresh(self) -> None:
    """Rewrites the heartbeat time; a failed write is logged, and retried at the next beat."""
    if self._record is None:
      return
    holder = _read(self.path)
    if holder and holder.get('token') != self._record['token']:
      logging.error(
        'The lock %s was taken over by pid %s on host %s: another run now trains in this workdir.',
        self.path,
        holder.get('pid', '?'),
        holder.get('host', '?'),
      )
      self._record = None
      return
    now = time.time()
    self._record.update(heartbeat=_iso(now), heartbeat_unix=now)
    try:
      fileio.write_json(self.path, self._record)
    except Exception as e:  # noqa: BLE001 - storage errors of any layer; training goes on.
      logging.warning('Could not refresh the lock %s: %s', self.path, e)

  def release(self) -> None:
    """Stops the heartbeat and removes the lock, if it is still this run's."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    if self._record is None:
      return
    holder = _read(self.path)
    if holder is not None and holder.get('token') == self._record['token']:
      fileio.rmtree(self.path)
    self._record = None


@contextlib.contextmanager
def held(workdir: str) -> Iterator[WorkdirLock]:
  """The workdir's lock for the `with` block; call `acquire()` once the workdir exists.

  Whatever ends the block (its end, an exception, an early return), the lock is
  released. Only process 0 locks.
  """
  lock = WorkdirLock(workdir, chief=jax.process_index() == 0)
  try:
    yield lock
  finally:
    lock.release()

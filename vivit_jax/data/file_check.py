"""The cheap check of every table's files, before the first step of training.

Training reads the test table only after its last step, and the validation
table at the first evaluation: a missing, empty or unreadable file there would
end a run of days at its end. `build_dataset` checks every file of every table
when it builds the dataset: each exists and is not empty; a video's container
opens and holds a video stream (its header only, nothing is decoded), and a
folder of frames holds frames, the first of which opens; a TFRecord file is a
file, not a directory, and its first record fits in it. Files
are checked in threads, since the time goes to waiting on storage (a stat and
a header read each, on a bucket a few requests). What only decoding finds (a
corrupt frame, a file cut short after its header) is still named when met.
"""

from __future__ import annotations

import dataclasses
import queue
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from absl import logging

from vivit_jax import fileio
from vivit_jax.data import video_io
from vivit_jax.data.sources import DataError, in_split_order

# Threads: the checks wait on storage, not on the CPU.
_WORKERS = 16
# Bad files named in the message; the rest are counted.
_SHOWN = 3


@dataclasses.dataclass(frozen=True)
class Problem:
  """What is wrong with one file.

  Attributes:
    text: e.g. 'is empty (0 bytes)', said after the file's name.
    skippable: `skip_corrupt` may skip the file (its records or video) when met.
  """

  text: str
  skippable: bool = True


def _file_problem(path: str) -> Problem | None:
  if not fileio.exists(path):
    return Problem('file not found')
  if fileio.isdir(path):
    return Problem('is a directory, not a file')
  if fileio.size(path) == 0:
    return Problem('is empty (0 bytes)')
  return None


def video_problem(path: str) -> Problem | None:
  """None for a video whose container opens with a video stream, else its problem."""
  # A folder of frames is a video too (video_io); check_opens looks at its first frame.
  problem = None if fileio.isdir(path) else _file_problem(path)
  if problem:
    return problem
  try:
    video_io.check_opens(path)
  except video_io.VideoError as e:
    return Problem(str(e))
  return None


def tfrecord_problem(path: str) -> Problem | None:
  """None for a TFRecord file whose first record fits in it (or an empty file), else its problem.

  An empty file is no problem here: a shard may hold no record (the table
  as a whole is checked for records by `build_dataset`).
  """
  if fileio.isdir(path):
    return Problem('is a directory', skippable=False)
  size = fileio.size(path)
  if size == 0:
    return None
  with fileio.open_file(path, 'rb') as f:
    header = f.read(12)
  # A record is an 8-byte length, a 4-byte checksum, the data and a 4-byte checksum.
  length = struct.unpack('<Q', header[:8])[0] if len(header) == 12 else None
  if length is None or 12 + length + 4 > size:
    claim = f'its first record claims {length} bytes' if length is not None else 'it has no record'
    return Problem(f'is not a TFRecord file, or is cut short ({claim}, the file has {size} bytes)')
  return None


def find_problems(
  paths: Sequence[str], check: Callable[[str], Problem | None], *, timeout_s: float
) -> dict[int, Problem]:
  """{index into `paths`: problem} of the files `check` finds wrong, checked in threads.

  A check still running after `timeout_s` seconds is abandoned and reported as
  stalled; its thread is a daemon, so it cannot hold up the exit.
  """
  jobs: queue.SimpleQueue = queue.SimpleQueue()
  for job in enumerate(paths):
    jobs.put(job)
  results: queue.SimpleQueue = queue.SimpleQueue()
  running: dict[int, float] = {}
  lock = threading.Lock()

  def work() -> None:
    while True:
      try:
        i, path = jobs.get_nowait()
      except queue.Empty:
        return
      with lock:
        running[i] = time.monotonic()
      try:
        problem = check(path)
      except Exception as e:  # noqa: BLE001 - reported with the file's name.
        problem = Problem(f'cannot be read ({type(e).__name__}: {e})')
      results.put((i, problem))

  def start() -> None:
    threading.Thread(target=work, daemon=True, name='file-check').start()

  for _ in range(min(_WORKERS, len(paths))):
    start()
  problems: dict[int, Problem] = {}
  done: set[int] = set()
  while len(done) < len(paths):
    try:
      i, problem = results.get(timeout=min(1.0, timeout_s))
    except queue.Empty:
      now = time.monotonic()
      with lock:
        stalled = [i for i, began in running.items() if now - began > timeout_s]
        for i in stalled:
          del running[i]
      for i in stalled:
        done.add(i)
        problems[i] = Problem(
          f'stalled: opening it took more than {timeout_s:g} s (dataset_configs.decode_timeout_s)'
        )
        start()  # In place of the thread left waiting.
      continue
    with lock:
      running.pop(i, None)
    if i not in done:  # A stalled check that ended late was already reported.
      done.add(i)
      if problem:
        problems[i] = problem
  return problems


def check_tables(
  tables: Mapping[str, Sequence[tuple[str, str]]],
  check: Callable[[str], Problem | None],
  *,
  what: str,
  fix: str,
  skip_corrupt: bool,
  timeout_s: float,
) -> None:
  """Checks every file of every table; raises one DataError naming the bad ones.

  Args:
    tables: {split: [(path, where it is listed, e.g. 'test.csv line 3', or '')]}.
    check: `video_problem` or `tfrecord_problem`.
    what: 'video' or 'data file', for the messages.
    fix: the sentence that ends the message.
    skip_corrupt: `dataset_configs.skip_corrupt`: skippable problems are logged
      (and skipped when met) instead of raised.
    timeout_s: seconds after which one file's check is abandoned.

  Raises:
    DataError: e.g. "Bad input data: video /v/a.mp4 is empty (0 bytes) (/v/test.csv
      line 3 of the 'test' table). ..."; for several, their count and the first few.
  """
  order = in_split_order(tables)
  items = [(split, path, where) for split in order for path, where in tables[split]]
  if not items:
    return
  began = time.monotonic()
  paths = sorted({path for _, path, _ in items})  # A file in several tables is checked once.
  found = find_problems(paths, check, timeout_s=timeout_s)
  logging.info(
    'Checked the %d %ss of the %s tables in %.1f s: %d bad.',
    len(paths),
    what,
    ', '.join(f"'{s}'" for s in order),
    time.monotonic() - began,
    len(found),
  )
  problems = {paths[i]: problem for i, problem in found.items()}
  bad = [(item, problems[item[1]]) for item in items if item[1] in problems]
  fatal = [(item, p) for item, p in bad if not (skip_corrupt and p.skippable)]
  if not fatal:
    if bad:
      logging.warning(
        'dataset_configs.skip_corrupt: %d bad %ss will be skipped when met: %s',
        len(bad),
        what,
        _listing(what, bad),
      )
    return
  if len(fatal) == 1:
    raise DataError(f'Bad input data: {_listing(what, fatal)}. {fix}')
  counts: dict[str, int] = {}
  for (split, _, _), _ in fatal:
    counts[split] = counts.get(split, 0) + 1
  per_table = ', '.join(f"{n} in '{s}'" for s, n in counts.items())
  raise DataError(
    f'Bad input data: {len(fatal)} of the {len(items)} {what}s of the tables cannot be used '
    f'({per_table}): {_listing(what, fatal)}. {fix}'
  )


def _listing(what: str, bad: Sequence[tuple[tuple[str, str, str], Problem]]) -> str:
  """'video a.mp4 is empty (0 bytes) (t.csv line 2 of the 'test' table); ...; and 4 more'."""
  shown = '; '.join(
    f"{what} {path} {p.text} ({where + ' of ' if where else ''}the '{split}' table)"
    for (split, path, where), p in bad[:_SHOWN]
  )
  more = len(bad) - _SHOWN
  return shown + (f'; and {more} more' if more > 0 else '')

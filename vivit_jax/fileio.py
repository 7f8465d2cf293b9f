"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Every file the library writes for a person or another program (results,
predictions, configs, shards, CSVs) goes through `atomic_write`: the data goes
to a temporary name beside the target, which is renamed over it only when the
`with` block ends without an exception, and removed otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import IO, Any


def temporary_path(path: str) -> str:
  """A name beside `path`, unique to this process, for writing before the rename."""
  return f'{path}.tmp-{os.getpid()}'


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path to write `path` through (for writers that want a name).

  On success the temporary file replaces `path`; on an exception it is removed
  and `path` is left as it was.
  """
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  tmp = temporary_path(path)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'w') -> Iterator[IO[Any]]:
  """`open(path, mode)` that replaces `path` only once the block has completed."""
  with atomic_path(path) as tmp, open(tmp, mode) as f:
    yield f


def write_json(path: str, value: Any) -> None:
  """Writes `value` as indented, key-sorted JSON, atomically.

  No trailing newline: the bytes stay those of the results.json and config.json
  files that earlier versions wrote.
  """
  with atomic_write(path) as f:
    json.dump(value, f, indent=2, sort_keys=True)

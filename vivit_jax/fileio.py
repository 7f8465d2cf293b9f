"""Paths and files, local or in a bucket; atomic writes on both.

Every path a user gives may be a local path (relative or absolute, `~` too) or
a URI (`gs://bucket/run`, and whatever else `tf.io.gfile` reaches). The library
reads and writes them through this module alone, which hands URIs to etils'
`epath` (TensorFlow's file systems underneath, the same that tf.data, the
TensorBoard writers and Orbax use) and keeps local paths on `os`.
String operations that are the same for both (`os.path.join`, `dirname`,
`basename`) stay where they are; what differs is here: `absolute`,
`is_absolute`, and every call that touches storage.

Atomic writes: a reader sees the old file or the whole new one, never a part.
Every file the library writes for a person or another program (results,
predictions, configs, shards, CSVs) goes through `atomic_write` or
`atomic_path`. On a local disk the data goes to a temporary name beside the
target, renamed over it when the `with` block ends without an exception and
removed otherwise. An object store has no rename, but an object upload is
atomic: the data goes to a local temporary file and is uploaded to the target
in one request when the block succeeds (nothing is uploaded when it fails).
"""

from __future__ import annotations

import contextlib
import errno
import glob as glob_lib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from etils import epath


def is_uri(path: str | os.PathLike) -> bool:
  """True for `scheme://...` paths (gs://, s3://, ...), which only the storage layer reaches."""
  return '://' in os.fspath(path)


def absolute(path: str | os.PathLike) -> str:
  """A local path made absolute with `~` expanded; a URI as it is."""
  path = os.fspath(path)
  return path if is_uri(path) else os.path.abspath(os.path.expanduser(path))


def is_absolute(path: str | os.PathLike) -> bool:
  """True for an absolute local path or a URI (neither is joined onto a base folder)."""
  return is_uri(path) or os.path.isabs(os.fspath(path))


def _path(path: str | os.PathLike) -> epath.Path:
  path = os.fspath(path)
  return epath.Path(path if is_uri(path) else os.path.expanduser(path))


def exists(path: str | os.PathLike) -> bool:
  return _path(path).exists()


def isdir(path: str | os.PathLike) -> bool:
  return _path(path).is_dir()


def isfile(path: str | os.PathLike) -> bool:
  """True for an existing path that is not a directory."""
  p = _path(path)
  return p.exists() and not p.is_dir()


def listdir(path: str | os.PathLike) -> list[str]:
  """The names (not paths) in directory `path`, sorted."""
  return sorted(p.name for p in _path(path).iterdir())


def makedirs(path: str | os.PathLike) -> None:
  """Creates `path` and its parents if missing.

  On Cloud Storage, TensorFlow writes an empty placeholder object per level (a
  request each), so that an empty directory exists as one does on a disk.
  """
  _path(path).mkdir(parents=True, exist_ok=True)


def remove(path: str | os.PathLike) -> None:
  _path(path).unlink()


def rmtree(path: str | os.PathLike) -> None:
  """Removes `path` and everything under it; a missing `path` is no error."""
  p = _path(path)
  if p.is_dir():
    p.rmtree()
  elif p.exists():
    p.unlink()


def size(path: str | os.PathLike) -> int:
  """The size of file `path` in bytes."""
  return _path(path).stat().length


def unwritable_reason(path: str | os.PathLike, *, directory: bool) -> str | None:
  """Why `path` cannot be written, as a phrase; None when it can.

  Asked before a command's work starts, so that a read-only output fails in its
  first second rather than after the work. A file is created and removed in
  the nearest existing folder of `path` (for a URI, in `path`'s folder: an
  object store has no folders to walk); nothing is left behind and no folder
  is made. Permissions are not read, since they do not tell the truth for the
  root user or a read-only mount: only a write does.

  Args:
    path: the output, local or a URI.
    directory: True when `path` is to be a directory (written into), False
      when it is to be a file.

  Returns:
    e.g. 'no file can be created in /data (Permission denied)', or
    '/out/model is a file, not a directory', or None.
  """
  path = absolute(path)
  if directory and exists(path) and not isdir(path):
    return f'{path} is a file, not a directory'
  if not directory and isdir(path):
    return f'{path} is a directory, not a file'
  folder = path if directory else os.path.dirname(path)
  while not is_uri(folder) and not os.path.exists(folder) and os.path.dirname(folder) != folder:
    folder = os.path.dirname(folder)
  if not is_uri(folder) and not os.path.isdir(folder):
    return f'{folder} is a file, not a directory'
  probe = os.path.join(folder, f'.vivit-write-check-{os.getpid()}-{os.urandom(4).hex()}')
  try:
    with open_file(probe, 'w') as f:
      f.write('')
    remove(probe)
  except Exception as e:  # noqa: BLE001 - OSError locally; the storage layer's own on a URI.
    reason = getattr(e, 'strerror', None) or f'{type(e).__name__}: {e}'
    return f'no file can be created in {folder} ({reason})'
  return None


def glob(pattern: str) -> list[str]:
  """Paths matching `pattern` (`*`, `?`, `[...]` within one path component), sorted."""
  if is_uri(pattern):
    # gfile's glob takes the whole pattern at once (epath's wants a base and a pattern).
    return sorted(epath.backend.tf_backend.gfile.glob(pattern))
  return sorted(glob_lib.glob(os.path.expanduser(pattern)))


def walk(path: str | os.PathLike) -> Iterator[tuple[str, list[str], list[str]]]:
  """`os.walk` for local paths and URIs: (directory, sub-directory names, file names)."""
  for directory, dirs, files in _path(path).walk():
    yield os.fspath(directory), list(dirs), list(files)


def open_file(path: str | os.PathLike, mode: str = 'r') -> IO[Any]:
  """`open(path, mode)` for local paths and URIs (read, or a write that need not be atomic).

  A URI gives TensorFlow's `GFile`: a file object that reads the byte ranges
  it seeks to, as `av.open` and `json.load` want.
  """
  path = os.fspath(path)
  if not is_uri(path):
    return open(os.path.expanduser(path), mode)
  gfile = epath.backend.tf_backend.gfile  # tf.io.gfile, imported when first needed
  if 'r' in mode and not gfile.exists(path):
    # GFile would fail only at the first read, with TensorFlow's own error type.
    raise FileNotFoundError(errno.ENOENT, f'No such file: {path}', path)
  return gfile.GFile(path, mode)


def read_text(path: str | os.PathLike) -> str:
  with open_file(path) as f:
    return f.read()


@contextlib.contextmanager
def local_copy(path: str | os.PathLike) -> Iterator[str]:
  """A local file name holding `path`'s bytes: `path` itself, or a temporary download.

  For readers that take a file name only (numpy's mmap, PyAV's demuxers that
  seek). The download is removed when the block ends.
  """
  path = os.fspath(path)
  if not is_uri(path):
    yield path
    return
  suffix = os.path.splitext(path)[1]
  fd, tmp = tempfile.mkstemp(prefix='vivit-', suffix=suffix)
  os.close(fd)
  try:
    _path(path).copy(tmp, overwrite=True)
    yield tmp
  finally:
    os.remove(tmp)


def temporary_path(path: str) -> str:
  """A name beside `path`, unique to this process, for writing before the rename."""
  return f'{path}.tmp-{os.getpid()}'


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
  """Yields a local temporary path to write `path` through (for writers that want a name).

  `path`'s folder is created if missing. On success the temporary file
  replaces `path` (local: a rename; URI: one upload); on an exception it is
  removed and `path` is left as it was.
  """
  path = os.fspath(path)
  if is_uri(path):
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix='vivit-upload-', suffix=suffix)
    os.close(fd)
    try:
      yield tmp
      epath.Path(tmp).copy(_path(path), overwrite=True)
    finally:
      os.remove(tmp)
    return
  path = os.path.expanduser(path)
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  tmp = temporary_path(path)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = 'w') -> Iterator[IO[Any]]:
  """`open(path, mode)` that replaces `path` only once the block has completed."""
  with atomic_path(path) as tmp, open(tmp, mode) as f:
    yield f


def write_json(path: str | os.PathLike, value: Any) -> None:
  """Writes `value` as indented, key-sorted JSON, atomically.

  No trailing newline: the bytes stay those of the results.json and config.json
  files that earlier versions wrote.
  """
  with atomic_write(path) as f:
    json.dump(value, f, indent=2, sort_keys=True)


def read_json(path: str | os.PathLike) -> Any:
  with open_file(path) as f:
    return json.load(f)


def copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
  """Copies one file, local or URI on either side, replacing `target`."""
  if not is_uri(source) and not is_uri(target):
    shutil.copyfile(source, target)
    return
  _path(source).copy(_path(target), overwrite=True)


def create_new(path: str | os.PathLike, text: str) -> bool:
  """Writes `text` to `path` only when nothing is there; True when this call wrote it.

  Locally the complete file is linked to its name, which fails when the name
  exists: of two processes, exactly one wins, and a reader never sees a part.
  An object store reached through this layer has no exclusive create: the
  object is uploaded when absent (atomically) and read back, so a writer loses
  to one that uploaded after it; two uploads within the same instant can both
  win.
  """
  path = os.fspath(path)
  if is_uri(path):
    if exists(path):
      return False
    with atomic_write(path) as f:
      f.write(text)
    return read_text(path) == text
  path = os.path.expanduser(path)
  tmp = temporary_path(path)
  with open(tmp, 'w') as f:
    f.write(text)
  try:
    os.link(tmp, path)
    return True
  except FileExistsError:
    return False
  except OSError:  # No hard links here (some network and FUSE file systems).
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      return False
    with os.fdopen(fd, 'w') as f:
      f.write(text)
    return True
  finally:
    os.remove(tmp)

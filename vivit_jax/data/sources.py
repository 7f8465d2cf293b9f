"""Where records come from: the source protocol and its types; TFRecord tables.

`Source` is what every reader (`TFRecordSource`, `TfdsSource`,
`VideoFilesSource`) implements for `pipeline`, `ClipSource` the extension of
a reader that decodes its own clips, and `SplitData` one split of a dataset as
this host sees it. Each reader's module has the split builder of its
`dataset_name` (`splits(request: SplitRequest)`), which `build_dataset` calls.

A TFRecord table (`dataset_configs.tables.<split>`) is one of
- `name@N`: the shards `name-00000-of-0000N` ... `name-0000(N-1)-of-0000N`
  (DMVR's and Scenic's sharding spec; the number is written with 5 digits);
- a glob such as `train-*`;
- a single file name;
- a list of any of these.
Relative names are taken relative to `dataset_configs.base_dir`. Any of them,
and `base_dir`, may be a URI (`gs://...`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import ml_collections
import tensorflow as tf
from absl import logging

from vivit_jax import fileio
from vivit_jax.data.clip_spec import ClipSpec
from vivit_jax.errors import UserError

COUNTS_FILENAME = 'record_counts.json'
_SHARD_SPEC = re.compile(r'^(?P<name>.+)@(?P<num>\d+)$')


# A parsed record: {'encoded': string[N] encoded frames, 'label_index':
# int64[L], 'key': string[] the example's name, 'where': string[] where it is,
# for error messages}; sources that decode their own clips add their fields.
# A clip maker's output: {'inputs', 'label', 'batch_mask', 'key', 'where',
# 'error'}.
Record = dict[str, tf.Tensor]


def traced(fn):
  """`fn` for tf.data's map, filter, flat_map and interleave, traced as written.

  tf.data hands every such function to AutoGraph, which rewrites its Python source and that
  of every function it calls before tracing. Ours branch only on Python values (the config),
  so the rewrite changes nothing in the graph, and it cost 3 of the 4 seconds before the
  first training batch (a 16x16 TFRecord split on 2 cores; the same batch without it). A
  branch on a tensor here fails while tracing, naming the line: write `tf.cond`.
  """
  return tf.autograph.experimental.do_not_convert(fn)


class DataError(UserError, ValueError):
  """Input data is missing, malformed or inconsistent with the config."""


class Source(Protocol):
  """Raw elements of one split (this host's part of it) and their parsing into records."""

  # Frames are JPEG (DMVR data): checked for completeness and decoded by the
  # JPEG decoder; False accepts any image format TensorFlow reads.
  jpeg_only: bool

  def ordered(self) -> tf.data.Dataset:
    """Every raw element once, in a fixed order (evaluation)."""
    ...

  def epoch(self, seed: tf.Tensor) -> tf.data.Dataset:
    """Every raw element once, in an order drawn from `seed` int32[2] (one training epoch)."""
    ...

  def parse(self, raw: Any) -> Record:
    """One raw element -> a `Record`."""
    ...


@runtime_checkable
class ClipSource(Source, Protocol):
  """A source whose records hold no encoded frames (video files): it makes its own clips.

  `pipeline` calls these in place of its functions of the same names, which
  they match in seeds, sampling, augmentation and output.
  """

  def train_clip(self, record: Record, seed: tf.Tensor, spec: ClipSpec) -> Record:
    """A randomly sampled and augmented clip, inputs f32[T,S,S,3]."""
    ...

  def eval_clip(self, record: Record, spec: ClipSpec) -> Record:
    """The centre clip, inputs f32[T,S,S,3]."""
    ...

  def test_clip(self, record: Record, spec: ClipSpec) -> Record:
    """All test views, inputs f32[V,T,S,S,3]."""
    ...


@dataclasses.dataclass
class SplitData:
  """One split as this host sees it."""

  source: Source
  num_examples: int  # Over all hosts.
  steps: int | None  # Batches every host yields in one pass (multi-host), else None.
  files: list[str]  # TFRecord files (empty for other sources).


# Splits in the order a run needs them (training's own table is checked first).
SPLIT_ORDER = {'train': 0, 'validation': 1, 'test': 2}


def in_split_order(names) -> list[str]:
  """`names` with train, validation and test first, then the others by name."""
  return sorted(names, key=lambda n: (SPLIT_ORDER.get(n, len(SPLIT_ORDER)), n))


@dataclasses.dataclass(frozen=True)
class SplitRequest:
  """What `build_dataset` asks of a source's split builder (`<source module>.splits`)."""

  dc: ml_collections.ConfigDict  # The config's dataset_configs.
  process_index: int
  process_count: int
  batches: Mapping[str, int]  # Host batch of 'train', 'validation' and 'test'.
  workdir: str | None  # Where a label map made from the data is kept (video_files).
  skipped: Any  # The run's `pipeline.SkipCounter`, for records skipped before the pipeline.

  def batch(self, split: str) -> int:
    """The host batch of `split` (a split other than the three: the validation batch)."""
    return self.batches.get(split, self.batches['validation'])


# A source's split builder: ({split: SplitData}, number of classes or None, class names or None).
SplitBuilder = Callable[[SplitRequest], tuple[dict[str, SplitData], Any, Any]]


def expand_table(
  base_dir: str | None, table: str | Sequence[str], split: str | None = None
) -> list[str]:
  """Returns the files a table spec names, in shard order.

  Args:
    base_dir: directory that relative names are taken from (may be None).
    table: `name@N`, a glob, a file name, or a list of these.
    split: the split the table is for ('train', ...), named in errors.

  Raises:
    DataError: a named file does not exist or a glob matches nothing; the
      message names the split, the directory looked in and the key to set.
  """
  if isinstance(table, (list, tuple)):
    return [f for spec in table for f in expand_table(base_dir, spec, split)]
  spec = str(table)
  relative = not fileio.is_absolute(spec)
  if base_dir and relative:
    spec = os.path.join(base_dir, spec)
  match = _SHARD_SPEC.match(spec)
  if match:
    num = int(match['num'])
    files = [f'{match["name"]}-{i:05d}-of-{num:05d}' for i in range(num)]
  elif any(c in spec for c in '*?['):
    files = fileio.glob(spec)
  else:
    files = [spec]
  missing = [f for f in files if not fileio.exists(f)] if files else [spec]
  if not missing:
    return files
  which = f"the '{split}' table" if split else 'table'
  key = f'dataset_configs.tables.{split}' if split else 'dataset_configs.tables'
  if relative and not base_dir:
    raise DataError(
      f'The data of {which} {table!r} is missing: dataset_configs.base_dir is unset, so it '
      f'was looked for in the current directory ({os.getcwd()}), where {missing[0]!r} does '
      'not exist. Set dataset_configs.base_dir to the directory holding the data '
      f'(--config.dataset_configs.base_dir=DIR), or give {key} as absolute paths.'
    )
  if not files:
    raise DataError(f'The glob {spec!r} of {which} matches no file. Check {key}.')
  raise DataError(
    f'Missing data file {missing[0]!r} ({len(missing)} of {len(files)} files of {which} '
    f'{table!r} are missing). Check dataset_configs.base_dir ({base_dir!r}) and {key}.'
  )


def files_for_process(files: Sequence[str], process_index: int, process_count: int) -> list[str]:
  """Splits files across hosts: host i reads files i, i + count, i + 2 * count, ...

  Raises:
    DataError: fewer files than hosts, so some host would have no data.
  """
  if len(files) < process_count:
    raise DataError(
      f'{len(files)} data files cannot be split across {process_count} hosts: every host '
      f'needs at least one file. Write the data in at least {process_count} shards '
      '(make_tfrecords --num_shards).'
    )
  return list(files[process_index::process_count])


def count_file_records(path: str, *, skip_corrupt: bool = False) -> int:
  """Counts the records of one TFRecord file by reading only the length headers.

  Raises:
    DataError: the file ends inside a record (a truncated file), unless
      `skip_corrupt`, in which case the complete records are counted.
  """
  count = 0
  size = fileio.size(path)
  with fileio.open_file(path, 'rb') as f:
    pos = 0
    while pos < size:
      header = f.read(12)
      if len(header) < 12:
        return _truncated(path, count, skip_corrupt)
      (length,) = struct.unpack('<Q', header[:8])
      pos += 12 + length + 4
      if pos > size:
        return _truncated(path, count, skip_corrupt)
      f.seek(pos)
      count += 1
  return count


def _truncated(path: str, count: int, skip_corrupt: bool) -> int:
  message = f'TFRecord file {path} is truncated: it ends inside record {count}.'
  if not skip_corrupt:
    raise DataError(message + ' Rewrite the file, or set dataset_configs.skip_corrupt=True.')
  logging.warning('%s Skipping the incomplete record.', message)
  return count


def count_records(files: Sequence[str], *, skip_corrupt: bool = False) -> list[int]:
  """Record counts of `files`, cached in `record_counts.json` beside each file.

  A cached count is reused while the file's size and modification time are
  unchanged; a directory that cannot be written is simply not cached.
  """
  by_dir: dict[str, list[str]] = {}
  for f in files:
    by_dir.setdefault(os.path.dirname(f), []).append(f)
  counts: dict[str, int] = {}
  for directory, dir_files in by_dir.items():
    counts.update(_count_dir(directory, dir_files, skip_corrupt))
  return [counts[f] for f in files]


def _count_dir(directory: str, files: Sequence[str], skip_corrupt: bool) -> dict[str, int]:
  cache_path = os.path.join(directory, COUNTS_FILENAME)
  cache = {}
  if fileio.exists(cache_path):
    try:
      cache = fileio.read_json(cache_path)
    except (ValueError, OSError):
      cache = {}
  result, changed = {}, False
  for path in files:
    stamp = _stamp(path)
    entry = cache.get(os.path.basename(path))
    if entry and entry['stamp'] == stamp:
      result[path] = entry['count']
      continue
    result[path] = count_file_records(path, skip_corrupt=skip_corrupt)
    cache[os.path.basename(path)] = {'stamp': stamp, 'count': result[path]}
    changed = True
  if changed:
    # Atomic, as hosts sharing the data read it while another writes; a failed
    # write (a read-only directory or bucket) only costs a recount.
    try:
      with fileio.atomic_write(cache_path) as f:
        json.dump(cache, f, indent=1, sort_keys=True)
    except (OSError, tf.errors.OpError) as e:
      logging.warning('Could not cache record counts in %s: %s', cache_path, e)
  return result


def _stamp(path: str) -> list[int]:
  """[size, modification time in ns]: a file with the same stamp has the same records."""
  # tf.io.gfile, as fileio has no modification time (epath's is in whole seconds).
  stat = tf.io.gfile.stat(path if fileio.is_uri(path) else os.path.expanduser(path))
  return [stat.length, stat.mtime_nsec]


def counting_is_cheap(files: Sequence[str]) -> bool:
  """True when `count_records(files)` costs no pass over a bucket's records.

  Local files are counted from their record headers in a moment; files in a
  bucket only when a `record_counts.json` lies beside them (a changed file is
  recounted), as each header read there is a request.
  """
  folders = {os.path.dirname(f) for f in files if fileio.is_uri(f)}
  return all(fileio.exists(os.path.join(d, COUNTS_FILENAME)) for d in folders)


def examples_in_split(split: str, given: int | None, counted: int | None, what: str) -> int:
  """The number of examples of a split: the data's count, else the config's.

  The data's count wins, with a warning naming both numbers and the key, when
  `dataset_configs.examples_per_subset.<split>` says otherwise: a paper
  config's count (Scenic's schedules read it) on one's own data would size the
  epochs, and so `num_training_epochs` and the schedule, for data that is not there.

  Args:
    split: 'train', 'validation' or 'test'.
    given: the config's `examples_per_subset.<split>`, or None.
    counted: what the data holds, or None when it was not counted.
    what: the data and its count, for the message, with `{}` for the count
      (e.g. "the 'train' table 'train@8' holds {} records").

  Returns:
    `counted`, else `given`.
  """
  if counted is None:
    return int(given)
  if given is not None and given != counted:
    key = f'dataset_configs.examples_per_subset.{split}'
    logging.warning(
      '%s',
      f'{key}={given}, but {what.format(counted)}: using {counted}, so that an epoch (and '
      'with it num_training_epochs, the schedule and the default log_eval_steps) is one pass '
      f'over the data. Set --config.{key}={counted} to silence this.',
    )
  return counted


def find_truncated_file(files: Sequence[str]) -> str | None:
  """Returns the first file in `files` that ends inside a record, if any."""
  for path in files:
    try:
      count_file_records(path)
    except DataError as e:
      return str(e)
  return None

"""Reading DMVR-format TFRecord shards as records for `pipeline`, and their splits.

Shards are read in parallel (interleaved one record at a time), never one after
another, so a batch mixes every shard's classes even when each shard holds only
some of them. Records keep their file and index for error messages and keys.
`splits` turns the config's tables into this host's splits
(`dataset_name='video_tfrecord_dataset'`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import tensorflow as tf
from absl import logging

from vivit_jax import fileio
from vivit_jax.data import file_check, records, sources
from vivit_jax.data.sources import DataError, SplitData, SplitRequest


class TFRecordSource:
  """Records of DMVR-format files.

  Args:
    files: this host's files.
    heads: label head names of a multi-head dataset, or empty.
    skip_corrupt: drop the rest of a truncated file instead of failing.
    cycle_length: files read at once.
  """

  jpeg_only = True

  def __init__(
    self,
    files: Sequence[str],
    heads: Sequence[str] = (),
    *,
    skip_corrupt: bool = False,
    cycle_length: int = 16,
  ):
    self.files = list(files)
    self.heads = tuple(heads)
    self.skip_corrupt = skip_corrupt
    self.cycle_length = cycle_length

  def _read(self, files: tf.Tensor) -> tf.data.Dataset:
    def per_file(path: tf.Tensor) -> tf.data.Dataset:
      ds = tf.data.TFRecordDataset(path, buffer_size=1 << 20)
      if self.skip_corrupt:
        ds = ds.ignore_errors(log_warning=True)
      return ds.enumerate().map(
        sources.traced(lambda i, r: {'path': path, 'index': i, 'record': r})
      )

    return tf.data.Dataset.from_tensor_slices(files).interleave(
      sources.traced(per_file),
      cycle_length=min(len(self.files), self.cycle_length),
      block_length=1,
      num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True,
    )

  def ordered(self) -> tf.data.Dataset:
    """Every record once, in a fixed order."""
    return self._read(tf.constant(self.files))

  def epoch(self, seed: tf.Tensor) -> tf.data.Dataset:
    """Every record once, files in an order drawn from `seed` (int32[2])."""
    return self._read(tf.random.experimental.stateless_shuffle(tf.constant(self.files), seed))

  def parse(self, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Raw element -> {'encoded', 'label_index', 'key', 'where'}."""
    parsed = records.parse_record(raw['record'], self.heads)
    index = tf.strings.as_string(raw['index'])
    basename = tf.strings.regex_replace(raw['path'], r'^.*/', '')
    fallback_key = tf.strings.join([basename, ':', index])
    return {
      'encoded': parsed['frames'],
      'label_index': parsed['label_index'],
      'key': tf.where(tf.equal(parsed['filename'], ''), fallback_key, parsed['filename']),
      'where': tf.strings.join(['record ', index, ' of ', raw['path']]),
    }


def find_undecodable_frame(files: Sequence[str], max_records: int | None = None) -> str | None:
  """Scans `files` for the first record with a frame the JPEG decoder rejects.

  Used after the decoder failed inside the pipeline, where the failing record
  is unknown. Slow (decodes every frame), so only run on failure.

  Returns:
    'record i of FILE has frame j that cannot be decoded (reason)', or None.
  """
  seen = 0
  for path in files:
    for index, serialized in enumerate(tf.data.TFRecordDataset(path)):
      frames = records.parse_record(serialized)['frames']
      for j, frame in enumerate(frames):
        try:
          tf.io.decode_jpeg(frame, channels=3)
        except tf.errors.OpError as e:
          reason = e.message.split('[Op:')[0].split('}}')[-1].strip()
          return f'record {index} of {path} has frame {j} that cannot be decoded ({reason})'
      seen += 1
      if max_records is not None and seen >= max_records:
        return None
  return None


def splits(request: SplitRequest) -> tuple[dict[str, SplitData], int | None, list[str] | None]:
  """The TFRecord tables -> this host's splits (host i reads files i, i + hosts, ...).

  Every file of every table is checked first (file_check), and the records are counted
  whenever that is cheap, so a config's count that the data contradicts is found. The class
  names come from the label map beside the data, if there is one.
  """
  dc, index, count = request.dc, request.process_index, request.process_count
  result = {}
  for name in sources.in_split_order(dc.tables.keys()):
    files = sources.expand_table(dc.base_dir, dc.tables[name], split=name)
    host_files = sources.files_for_process(files, index, count)
    file_check.check_tables(
      {name: [(f, '') for f in files]},
      file_check.tfrecord_problem,
      what='data file',
      fix=f'Fix dataset_configs.tables.{name}, or write the data again (make_tfrecords).',
      skip_corrupt=dc.skip_corrupt,
      timeout_s=dc.decode_timeout_s,
    )
    _check_not_empty(name, dc.tables[name], files, host_files)
    given = dc.examples_per_subset.get(name)
    steps = counted = None
    # Several hosts need the counts per file anyway.
    if count > 1 or given is None or sources.counting_is_cheap(files):
      counts = sources.count_records(files, skip_corrupt=dc.skip_corrupt)
      counted = sum(counts)
      if count > 1:
        per_host = [sum(counts[i::count]) for i in range(count)]
        steps = math.ceil(max(per_host) / request.batch(name))
    else:
      logging.info(
        "Not counting the records of the '%s' table in the bucket (no %s beside them): "
        'trusting dataset_configs.examples_per_subset.%s=%d (a run without it counts them once).',
        name,
        sources.COUNTS_FILENAME,
        name,
        given,
      )
    num = sources.examples_in_split(
      name, given, counted, f"the '{name}' table {dc.tables[name]!r} holds {{}} records"
    )
    source = TFRecordSource(host_files, dc.split_names or (), skip_corrupt=dc.skip_corrupt)
    result[name] = SplitData(source, num, steps, host_files)
  names = _label_names(dc.base_dir, result)
  return result, dc.num_classes or (len(names) if names else None), names


def _check_not_empty(name: str, table, files: list[str], host_files: list[str]) -> None:
  """Empty files would make the repeated training stream wait forever for a record."""
  empty = {f for f in files if fileio.size(f) == 0}
  if len(empty) == len(files) or set(host_files) <= empty:
    which = 'all' if len(empty) == len(files) else "this host's"
    raise DataError(
      f"The '{name}' table {table!r} has no records: {which} files are empty "
      f'({", ".join(sorted(empty)[:3])}{" ..." if len(empty) > 3 else ""}). Write the data '
      f'again (vivit_jax.tools.make_tfrecords) or fix dataset_configs.tables.{name}.'
    )


def _label_names(base_dir: str | None, result: dict[str, SplitData]) -> list[str] | None:
  """The label map in `base_dir`, else beside a split's first file; None if there is none."""
  candidates = [base_dir] if base_dir else []
  candidates += [os.path.dirname(s.files[0]) for s in result.values() if s.files]
  for directory in candidates:
    path = os.path.join(directory, records.LABEL_MAP_FILENAME)
    if directory and fileio.exists(path):
      return records.read_label_map(path)
  return None

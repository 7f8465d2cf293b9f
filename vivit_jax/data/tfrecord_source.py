"""Reading DMVR-format TFRecord shards as records for `pipeline`.

Shards are read in parallel (interleaved one record at a time), never one after
another, so a batch mixes every shard's classes even when each shard holds only
some of them. Records keep their file and index for error messages and keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from vivit_jax.data import records


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
      return ds.enumerate().map(lambda i, r: {'path': path, 'index': i, 'record': r})

    return tf.data.Dataset.from_tensor_slices(files).interleave(
      per_file,
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

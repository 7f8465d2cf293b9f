"""Videos from a TFDS dataset already prepared in a local data dir (e.g. `ucf101`).

Select with `dataset_name='tfds'`, `dataset_configs.tfds_name` and optionally
`tfds_data_dir`. `dataset_configs.tables` maps our splits to TFDS split
strings (default: train -> 'train', validation -> 'validation' or else 'test',
test -> 'test'). The first `Video` feature supplies the frames, kept encoded so
only sampled frames are decoded; the `label` ClassLabel supplies classes and
their names. Keys are TFDS ids ('ucf101-train.tfrecord-00000-of-00004__17').
Evaluation reads the files in their stored order; each training epoch reads
them in an order drawn from the epoch's seed (so a resumed run reads what an
uninterrupted one would), then the seeded shuffle buffer mixes the records.
"""

from __future__ import annotations

import math
import re
from typing import Any

import tensorflow as tf
import tensorflow_datasets as tfds

from vivit_jax.data.sources import (
  DataError,
  Record,
  SplitData,
  SplitRequest,
  examples_in_split,
  traced,
)

LABEL_KEY = 'label'
# '<dataset>-<split>.<file format>-<shard>-of-<count>', TFDS's file naming.
_SHARD_FILE = re.compile(r'-(?P<split>[^-/]+)\.[^.\-/]+-(?P<shard>\d+)-of-\d+$')


class TfdsSource:
  """Records of one TFDS split (this host's part of it)."""

  jpeg_only = False

  def __init__(self, builder: tfds.core.DatasetBuilder, split: str, video_key: str):
    self.builder = builder
    self.split = split
    self.video_key = video_key

  def _read(self, split: Any) -> tf.data.Dataset:
    return self.builder.as_dataset(
      split=split,
      shuffle_files=False,
      decoders={self.video_key: tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(add_tfds_id=True),
    )

  def ordered(self) -> tf.data.Dataset:
    return self._read(self.split)

  def file_pieces(self) -> list[tuple[str, int]]:
    """(TFDS split string, number of examples) of this split's part of each file, in file order.

    Each piece is an absolute slice ('train[8:12]') of the split a file belongs
    to, so TFDS still gives every record its usual tfds_id. Empty when TFDS
    cannot say which files hold the split (e.g. under tfds.testing.mock_data).
    """
    try:
      instructions = self.builder.info.splits[self.split].file_instructions
    except (KeyError, ValueError, AttributeError):
      return []
    pieces = []
    for instruction in instructions:
      match = _SHARD_FILE.search(str(instruction.filename))
      if match is None:
        return []
      split, shard = match['split'], int(match['shard'])
      start = sum(self.builder.info.splits[split].shard_lengths[:shard]) + instruction.skip
      pieces.append((f'{split}[{start}:{start + instruction.take}]', int(instruction.take)))
    return pieces

  def epoch(self, seed: tf.Tensor) -> tf.data.Dataset:
    """Every record once, files in an order drawn from `seed` (int32[2]), as TFRecord sources do."""
    pieces = self.file_pieces()
    if len(pieces) < 2:
      return self.ordered()
    datasets = [self._read(split) for split, _ in pieces]
    counts = tf.constant([count for _, count in pieces], tf.int64)
    order = tf.random.experimental.stateless_shuffle(tf.range(len(pieces), dtype=tf.int64), seed)
    # One choice per record: file order[0] count times, then order[1], ...
    choices = tf.data.Dataset.from_tensor_slices(order).flat_map(
      traced(lambda i: tf.data.Dataset.from_tensors(i).repeat(counts[i]))
    )
    return tf.data.Dataset.choose_from_datasets(datasets, choices)

  def parse(self, raw: dict[str, tf.Tensor]) -> Record:
    return {
      'encoded': raw[self.video_key],
      'label_index': tf.reshape(tf.cast(raw[LABEL_KEY], tf.int64), [-1]),
      'key': raw['tfds_id'],
      'where': tf.strings.join(['TFDS example ', raw['tfds_id']]),
    }


def _video_key(features: Any) -> str:
  for name, feature in features.items():
    if isinstance(feature, tfds.features.Video):
      return name
  raise DataError(f'The TFDS dataset has no Video feature (features: {list(features)}).')


def _num_examples(builder: tfds.core.DatasetBuilder, split: str, video_key: str) -> int:
  try:
    count = builder.info.splits[split].num_examples
    if count:
      return count
  except (KeyError, ValueError):
    pass
  # Split sizes unknown (e.g. under tfds.testing.mock_data): count once.
  ds = builder.as_dataset(split=split, decoders={video_key: tfds.decode.SkipDecoding()})
  return int(ds.reduce(0, lambda n, _: n + 1).numpy())


def splits(request: SplitRequest) -> tuple[dict[str, SplitData], int | None, list[str] | None]:
  """Returns ({split: SplitData}, num_classes, label names) for a TFDS dataset."""
  dc, process_index, process_count = request.dc, request.process_index, request.process_count
  if not dc.tfds_name:
    raise DataError("dataset_name='tfds' needs dataset_configs.tfds_name (e.g. 'ucf101').")
  builder = tfds.builder(dc.tfds_name, data_dir=dc.tfds_data_dir)
  known = set(builder.info.splits.keys())
  tables = dict(dc.tables.items()) or {
    'train': 'train',
    'validation': 'validation' if 'validation' in known or not known else 'test',
    'test': 'test',
  }
  video_key = _video_key(builder.info.features)
  result = {}
  for name, tfds_split in tables.items():
    host_split = tfds_split
    steps = None
    if process_count > 1:
      host_split = tfds.split_for_jax_process(
        tfds_split, process_index=process_index, process_count=process_count
      )
      per_host = [
        _num_examples(
          builder,
          tfds.split_for_jax_process(tfds_split, process_index=i, process_count=process_count),
          video_key,
        )
        for i in range(process_count)
      ]
      steps = math.ceil(max(per_host) / request.batch(name))
    total = examples_in_split(
      name,
      dc.examples_per_subset.get(name),
      _num_examples(builder, tfds_split, video_key),
      f'the TFDS split {tfds_split!r} of {dc.tfds_name!r} holds {{}} examples',
    )
    result[name] = SplitData(TfdsSource(builder, host_split, video_key), total, steps, [])
  label = builder.info.features[LABEL_KEY]
  names = list(label.names) if isinstance(label, tfds.features.ClassLabel) else None
  num_classes = dc.num_classes or (label.num_classes if names is not None else None)
  return result, num_classes, names

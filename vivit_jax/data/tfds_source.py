"""Videos from a TFDS dataset already prepared in a local data dir (e.g. `ucf101`).

Select with `dataset_name='tfds'`, `dataset_configs.tfds_name` and optionally
`tfds_data_dir`. `dataset_configs.tables` maps our splits to TFDS split
strings (default: train -> 'train', validation -> 'validation' or else 'test',
test -> 'test'). The first `Video` feature supplies the frames, kept encoded so
only sampled frames are decoded; the `label` ClassLabel supplies classes and
their names. Keys are TFDS ids ('ucf101-train.tfrecord-00000-of-00004__17').
Records are read in a fixed file order; training shuffles them with the
seeded shuffle buffer.
"""

from __future__ import annotations

import math
from typing import Any

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from vivit_jax.data.sources import DataError

LABEL_KEY = 'label'


class TfdsSource:
  """Records of one TFDS split (this host's part of it)."""

  jpeg_only = False
  files: list[str] = []

  def __init__(self, builder: tfds.core.DatasetBuilder, split: str, video_key: str):
    self.builder = builder
    self.split = split
    self.video_key = video_key

  def ordered(self) -> tf.data.Dataset:
    return self.builder.as_dataset(
      split=self.split,
      shuffle_files=False,
      decoders={self.video_key: tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(add_tfds_id=True),
    )

  def epoch(self, seed: tf.Tensor) -> tf.data.Dataset:
    del seed  # The caller's seeded shuffle buffer does the shuffling.
    return self.ordered()

  def parse(self, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
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


def tfds_splits(
  dc: ml_collections.ConfigDict, process_index: int, process_count: int, batches: dict[str, int]
) -> tuple[dict[str, Any], int, list[str] | None]:
  """Returns ({split: SplitData}, num_classes, label names) for a TFDS dataset."""
  from vivit_jax.data.dataset import SplitData

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
  splits = {}
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
      steps = math.ceil(max(per_host) / batches.get(name, batches['validation']))
    total = dc.examples_per_subset.get(name) or _num_examples(builder, tfds_split, video_key)
    splits[name] = SplitData(TfdsSource(builder, host_split, video_key), total, steps, [])
  label = builder.info.features[LABEL_KEY]
  names = list(label.names) if isinstance(label, tfds.features.ClassLabel) else None
  num_classes = dc.num_classes or (label.num_classes if names is not None else None)
  return splits, num_classes, names

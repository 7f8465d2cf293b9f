"""`build_dataset`: the config -> `Dataset` with train, eval and test iterators.

Batches are numpy arrays shaped for pmap, `[local_devices, per_device_batch,
...]`; the trainer puts them on the devices (see `prefetch.prefetch_to_device`).
`dataset_configs.base_dir`, the tables and the workdir may be URIs (`gs://...`).
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from vivit_jax import config as config_lib
from vivit_jax.data import (
  pipeline,
  records,
  sources,
  synthetic,
  tfds_source,
  tfrecord_source,
  video_files,
)
from vivit_jax.data.clip_spec import ClipSpec
from vivit_jax.data.device_augment import DeviceAugment
from vivit_jax.data.meta import Batch, DatasetMeta
from vivit_jax.data.sources import DataError, SplitData
from vivit_jax.data.tfrecord_source import find_undecodable_frame
from vivit_jax.task import task_from_config

# config.dataset_name -> the split builder of its source.
_SPLIT_BUILDERS: dict[str, sources.SplitBuilder] = {
  'video_tfrecord_dataset': tfrecord_source.splits,
  'tfds': tfds_source.splits,
  'video_files': video_files.splits,
}
DATASET_NAMES = tuple(_SPLIT_BUILDERS)


@dataclasses.dataclass
class Dataset:
  """Iterators over one dataset, plus what the trainer needs to know about it.

  It implements `vivit_jax.data.meta.TrainingData`, the protocol the trainer
  reads.
  """

  meta: DatasetMeta
  spec: ClipSpec
  splits: dict[str, SplitData]
  num_devices: int
  host_batch: int
  eval_host_batch: int
  test_host_batch: int
  seed: int
  process_index: int
  shuffle_buffer: int
  skip_corrupt: bool
  skipped: pipeline.SkipCounter

  def _split(self, name: str) -> SplitData:
    if name not in self.splits:
      raise DataError(
        f"The dataset has no '{name}' split: set dataset_configs.tables.{name} "
        f'(known: {", ".join(sorted(self.splits)) or "none"}).'
      )
    return self.splits[name]

  def train_iter(self, start_step: int = 0) -> Iterator[Batch]:
    """Infinite shuffled batches {'inputs': f32[D,B,T,H,W,3], 'label': f32[D,B,C],
    'batch_mask': f32[D,B]}, the same stream for the same rng_seed. With
    `augment_on_device`, 'inputs' are u8 (crop windows without RandAugment) and
    'color' f32[D,B,6], 'erase' i32[D,B,5] and 'window' i32[D,B,2] come with
    them, for `meta.device_augment`.

    `start_step` resumes the stream exactly where step `start_step` would find
    it (with skip_corrupt, up to the number of skipped records).
    """
    split = self._split('train')
    start = start_step * self.host_batch
    per_epoch = None
    if start and hasattr(split.source, 'num_examples'):
      per_epoch = split.source.num_examples
    elif start:
      per_epoch = sum(sources.count_records(split.files, skip_corrupt=self.skip_corrupt))
    seed = tf.constant([self.seed, self.process_index], tf.int64)
    ds = pipeline.train_dataset(
      split.source,
      self.spec,
      host_batch=self.host_batch,
      seed=seed,
      start_example=start,
      examples_per_epoch=per_epoch,
      shuffle_buffer=self.shuffle_buffer,
      skip=self.skipped if self.skip_corrupt else None,
    )
    for batch in self._numpy(pipeline.with_options(ds), split):
      batch.pop('key', None)
      yield self._shard(batch, self.host_batch)

  def eval_iter(self, split: str = 'validation') -> Iterator[Batch]:
    """One exact pass: like train batches plus 'key' str[D,B]; the last batch
    is padded with batch_mask 0."""
    return self._one_pass(split, multi_view=False, host_batch=self.eval_host_batch)

  def test_iter(self) -> Iterator[Batch]:
    """One exact pass over 'test', all views of each video together:
    'inputs' f32[D,B,V,T,H,W,3], 'label' f32[D,B,C], 'batch_mask', 'key'."""
    return self._one_pass('test', multi_view=True, host_batch=self.test_host_batch)

  def _one_pass(self, name: str, *, multi_view: bool, host_batch: int) -> Iterator[Batch]:
    split = self._split(name)
    ds = pipeline.eval_dataset(
      split.source,
      self.spec,
      host_batch=host_batch,
      multi_view=multi_view,
      skip=self.skipped if self.skip_corrupt else None,
    )
    count = 0
    for batch in self._numpy(pipeline.with_options(ds), split):
      count += 1
      if split.steps is not None and count > split.steps:
        raise DataError(
          f"The '{name}' split holds more records than counted; delete "
          f'{sources.COUNTS_FILENAME} beside the data and retry.'
        )
      yield self._shard(batch, host_batch)
    while split.steps is not None and count < split.steps:
      count += 1
      yield self._shard(self._empty_batch(multi_view), host_batch)

  def _empty_batch(self, multi_view: bool) -> Batch:
    shape = self.meta.input_shape
    if multi_view:
      shape = (self.spec.num_views, *shape)
    return {
      'inputs': np.zeros((0, *shape), np.float32),
      'label': np.zeros((0, self.meta.num_classes), np.float32),
      'batch_mask': np.zeros((0,), np.float32),
      'key': np.zeros((0,), object),
    }

  def _shard(self, batch: Batch, host_batch: int) -> Batch:
    """Pads a host batch to `host_batch` and reshapes it to [D, B, ...]."""
    n = len(batch['batch_mask'])
    pad = host_batch - n
    out = {}
    for name, value in batch.items():
      if name == 'key':
        value = np.array([k.decode() if isinstance(k, bytes) else k for k in value] + [''] * pad)
      elif pad:
        value = np.concatenate([value, np.zeros((pad, *value.shape[1:]), value.dtype)])
      out[name] = value.reshape(
        (self.num_devices, host_batch // self.num_devices, *value.shape[1:])
      )
    return out

  def _numpy(self, ds: tf.data.Dataset, split: SplitData) -> Iterator[Batch]:
    """Iterates as numpy, turning TensorFlow errors into DataErrors naming the record.

    The tf.data iterator is deleted when this generator ends, fails or is
    closed, not when the last reference goes: an error's traceback keeps this
    frame until the interpreter shuts down, and an iterator deleted then waits
    forever for its workers in tf.numpy_function (video_files), which can no
    longer take the GIL.
    """
    iterator = ds.as_numpy_iterator()
    try:
      while True:
        try:
          batch = next(iterator)
        except StopIteration:
          return
        except BaseException as e:
          # The frames of its traceback hold the iterator too; cleared, `del` deletes it.
          traceback.clear_frames(e.__traceback__)
          if isinstance(e, tf.errors.OpError):
            raise _data_error(e, split) from None
          raise
        yield batch
    finally:
      del iterator


def _data_error(error: tf.errors.OpError, split: SplitData) -> Exception:
  message = pipeline.data_error_message(error)
  if message:
    return DataError(f'Bad input data: {message}.')
  if isinstance(error, tf.errors.DataLossError):
    found = sources.find_truncated_file(split.files)
    if found:
      return DataError(f'{found} Set dataset_configs.skip_corrupt=True to skip it.')
  if isinstance(error, tf.errors.InvalidArgumentError) and split.files:
    found = find_undecodable_frame(split.files)
    if found:
      return DataError(
        f'Bad input data: {found}. Set dataset_configs.skip_corrupt=True to skip it.'
      )
  return error


def _batch_sizes(config: ml_collections.ConfigDict, devices: int, hosts: int) -> tuple[int, ...]:
  if config.batch_size is None:
    raise DataError('Set config.batch_size (the global train batch size).')
  sizes = []
  for name, total in (
    ('batch_size', config.batch_size),
    ('eval_batch_size', config.eval_batch_size or config.batch_size),
  ):
    problem = config_lib.batch_split_problem(name, total, hosts, devices)
    if problem:
      raise DataError(problem)
    sizes.append(total // hosts)
  test = config.dataset_configs.test_batch_size or devices
  if test % devices:
    raise DataError(
      f'dataset_configs.test_batch_size={test} (videos per host batch) must be a '
      f'multiple of the {devices} local devices.'
    )
  return sizes[0], sizes[1], test


def build_dataset(
  config: ml_collections.ConfigDict,
  *,
  num_local_devices: int | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
  workdir: str | None = None,
) -> Dataset:
  """Builds the dataset a resolved config describes.

  Args:
    config: a config resolved by `vivit_jax.config.resolve`.
    num_local_devices: devices per host (default: jax.local_device_count()).
    process_index: this host (default: jax.process_index()).
    process_count: number of hosts (default: jax.process_count()).
    workdir: the experiment directory; video_files writes the label map it makes
      from the train labels there and reads it back on a restart.

  Returns:
    The Dataset.

  Raises:
    DataError: missing files, too few shards for the hosts, batch sizes that do
      not divide, or a config that does not match the data.
  """
  devices = num_local_devices or jax.local_device_count()
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  dc = config.dataset_configs
  if config.dataset_name not in DATASET_NAMES:
    raise DataError(
      f'config.dataset_name={config.dataset_name!r}; expected one of {DATASET_NAMES}.'
    )
  if not dc.one_hot_labels:
    raise DataError('dataset_configs.one_hot_labels=False is not supported: targets are one-hot.')
  host_batch, eval_batch, test_batch = _batch_sizes(config, devices, count)
  batches = {'train': host_batch, 'validation': eval_batch, 'test': test_batch}
  skipped = pipeline.SkipCounter()
  if config.dataset_name == 'video_tfrecord_dataset' and dc.generate_synthetic_if_missing:
    synthetic.ensure_synthetic(config)
  request = sources.SplitRequest(dc, index, count, batches, workdir, skipped)
  splits, num_classes, label_names = _SPLIT_BUILDERS[config.dataset_name](request)
  num_classes = _check_classes(dc, num_classes, label_names)
  spec = ClipSpec.from_config(dc, num_classes)
  counts = {
    split: splits[split].num_examples if split in splits else 0 for split in sources.SPLIT_ORDER
  }
  meta = DatasetMeta(
    task=task_from_config(dc, num_classes),
    input_shape=config_lib.clip_shape(dc),
    num_train_examples=counts['train'],
    num_eval_examples=counts['validation'],
    num_test_examples=counts['test'],
    num_test_views=spec.num_views,
    label_names=label_names,
    device_augment=DeviceAugment.from_spec(spec),
  )
  return Dataset(
    meta=meta,
    spec=spec,
    splits=splits,
    num_devices=devices,
    host_batch=host_batch,
    eval_host_batch=eval_batch,
    test_host_batch=test_batch,
    seed=config.rng_seed,
    process_index=index,
    shuffle_buffer=dc.shuffle_buffer_size,
    skip_corrupt=dc.skip_corrupt,
    skipped=skipped,
  )


def _check_classes(dc: ml_collections.ConfigDict, num_classes: int | None, names) -> int:
  if dc.class_splits:
    if not dc.split_names or len(dc.split_names) != len(dc.class_splits):
      raise DataError('dataset_configs.split_names must name each entry of class_splits.')
    total = sum(dc.class_splits)
    if num_classes is not None and dc.num_classes is not None and num_classes != total:
      raise DataError(
        f'dataset_configs.num_classes={num_classes} differs from sum(class_splits)={total}.'
      )
    return total
  if num_classes is None:
    raise DataError(
      f'Set dataset_configs.num_classes (no {records.LABEL_MAP_FILENAME} found beside the data).'
    )
  if names is not None and len(names) != num_classes and not dc.class_splits:
    raise DataError(
      f'dataset_configs.num_classes={num_classes} but the label map lists {len(names)} classes.'
    )
  return num_classes

"""The TFDS path, with tfds.testing.mock_data standing in for a prepared ucf101."""

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vivit_jax import config as config_lib
from vivit_jax.data import build_dataset
from vivit_jax.data.tfds_source import TfdsSource


def _config(**dataset):
  return config_lib.resolve(
    {
      'dataset_name': 'tfds',
      'batch_size': 4,
      'dataset_configs': {
        'tfds_name': 'ucf101',
        'num_frames': 4,
        'stride': 2,
        'min_resize': 32,
        'crop_size': 24,
        'num_test_clips': 2,
        **dataset,
      },
    }
  )


def test_tfds_train_eval_and_test():
  with tfds.testing.mock_data(num_examples=6):
    ds = build_dataset(_config(), num_local_devices=2, process_index=0, process_count=1)
    assert ds.meta.num_classes == 101 and len(ds.meta.label_names) == 101
    assert ds.meta.num_eval_examples == 6
    b = next(ds.train_iter())
    assert b['inputs'].shape == (2, 2, 4, 24, 24, 3)
    assert b['label'].shape == (2, 2, 101)
    np.testing.assert_array_equal(b['label'].sum(-1), np.ones((2, 2)))
    assert -1 <= b['inputs'].min() and b['inputs'].max() <= 1
    batches = list(ds.eval_iter())
    assert len(batches) == 2 and sum(x['batch_mask'].sum() for x in batches) == 6
    keys = [k for x in batches for k in x['key'].reshape(-1) if k]
    assert len(set(keys)) == 6 and keys[0].startswith('ucf101-')
    t = next(ds.test_iter())
    assert t['inputs'].shape == (2, 1, 2, 4, 24, 24, 3)


class VivitTinyVideo(tfds.core.GeneratorBasedBuilder):
  """12 two-frame videos in 3 files; video i is filled with the value i."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    features = {
      'video': tfds.features.Video((2, 8, 8, 3)),
      'label': tfds.features.ClassLabel(names=['a', 'b']),
    }
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(12)}

  def _generate_examples(self, n):
    for i in range(n):
      yield i, {'video': np.full((2, 8, 8, 3), i, np.uint8), 'label': i % 2}


def test_tfds_training_reads_files_in_a_seeded_order_each_epoch(tmp_path):
  builder = VivitTinyVideo(data_dir=str(tmp_path))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=3))
  source = TfdsSource(builder, 'train', 'video')
  ordered = [x['tfds_id'].numpy().decode() for x in source.ordered()]

  def files(seed):
    # Built inside flat_map, as the training pipeline builds each epoch.
    epochs = tf.data.Dataset.range(1).flat_map(lambda e: source.epoch(tf.constant(seed, tf.int32)))
    ids = [x['tfds_id'].numpy().decode() for x in epochs]
    assert sorted(ids) == sorted(ordered)  # every record once
    return [name.split('__')[0][-14:] for name in ids[::4]]  # one id per file of 4

  orders = {tuple(files([0, e])) for e in range(6)}
  assert len(orders) > 1  # the order changes from epoch to epoch ...
  assert files([0, 3]) == files([0, 3])  # ... and is the seed's, so a resumed run reads the same
  # A host's part of the split (files 1 and 2, the first partly) keeps its records.
  host = TfdsSource(
    builder, tfds.split_for_jax_process('train', process_index=1, process_count=2), 'video'
  )
  assert host.file_pieces() == [('train[6:8]', 2), ('train[8:12]', 4)]
  ids = sorted(x['tfds_id'].numpy().decode() for x in host.epoch(tf.constant([1, 2], tf.int32)))
  assert ids == sorted(x['tfds_id'].numpy().decode() for x in host.ordered())

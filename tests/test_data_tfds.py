"""The TFDS path, with tfds.testing.mock_data standing in for a prepared ucf101."""

import numpy as np
import tensorflow_datasets as tfds

from vivit_jax import config as config_lib
from vivit_jax.data import build_dataset


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
    assert ds.meta['num_classes'] == 101 and len(ds.meta['label_names']) == 101
    assert ds.meta['num_eval_examples'] == 6
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

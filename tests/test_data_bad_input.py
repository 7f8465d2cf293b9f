"""Every kind of bad input fails naming the file or record, or is skipped and counted."""

import os

import numpy as np
import pytest
import tensorflow as tf

from vivit_jax import config as config_lib
from vivit_jax.data import DataError, build_dataset, records

GOOD = records.encode_jpeg(np.full((16, 16, 3), 90, np.uint8))


def _example(frames=None, label=(1,), filename='ok'):
  return records.make_sequence_example(
    [GOOD] * 6 if frames is None else frames, list(label), filename=filename
  )


def _write(path, examples):
  with tf.io.TFRecordWriter(str(path)) as w:
    for ex in examples:
      w.write(ex.SerializeToString())
  return str(path)


def _dataset(path, skip=False, **dataset):
  config = config_lib.resolve(
    {
      'batch_size': 2,
      'dataset_configs': {
        'base_dir': os.path.dirname(path),
        'tables': {'validation': os.path.basename(path), 'train': os.path.basename(path)},
        'num_classes': 5,
        'num_frames': 4,
        'stride': 1,
        'min_resize': 16,
        'crop_size': 16,
        'skip_corrupt': skip,
        **dataset,
      },
    }
  )
  return build_dataset(config, num_local_devices=1, process_index=0, process_count=1)


def _no_image_key():
  ex = _example()
  del ex.feature_lists.feature_list['image/encoded']
  return ex


def _header_corrupt():
  data = bytearray(GOOD)
  data[2:40] = b'\x00' * 38
  return bytes(data)


BAD = {
  'corrupt frame': (
    _example([GOOD, b'garbage', GOOD, GOOD]),
    'has frame 1 that is not a complete JPEG',
  ),
  'truncated frame': (_example([GOOD, GOOD[:-40]] * 2), 'has frame 1 that is not a complete JPEG'),
  'no image/encoded': (_no_image_key(), 'has no frames'),
  'empty video': (_example([]), 'has no frames'),
  'label out of range': (_example(label=(7,)), r'has label 7 outside \[0, 5\)'),
  'no label': (_example(label=()), 'has no label'),
  'two labels': (_example(label=(1, 2)), r'has 2 labels \[1 2\] but dataset_configs.multi_label'),
}


@pytest.mark.parametrize('name', list(BAD))
def test_bad_record_names_record_and_problem(tmp_path, name):
  bad, message = BAD[name]
  path = _write(tmp_path / 'val', [_example(), _example(), bad, _example()])
  ds = _dataset(path)
  with pytest.raises(DataError, match=f'record 2 of {path} {message}'):
    list(ds.eval_iter())
  with pytest.raises(DataError, match=f'record 2 of {path} {message}'):
    it = ds.train_iter()
    for _ in range(4):
      next(it)


def test_skip_corrupt_skips_and_counts(tmp_path):
  examples = [_example(filename=f'v{i}') for i in range(5)]
  examples[1] = BAD['corrupt frame'][0]
  examples[3] = BAD['label out of range'][0]
  path = _write(tmp_path / 'val', examples)
  ds = _dataset(path, skip=True)
  keys = [k for b in ds.eval_iter() for k, m in zip(b['key'].ravel(), b['batch_mask'].ravel()) if m]
  assert keys == ['v0', 'v2', 'v4']
  assert ds.skipped.count == 2


def test_undecodable_frame_found_by_scan(tmp_path):
  frames = [GOOD, GOOD, _header_corrupt(), GOOD]
  path = _write(tmp_path / 'val', [_example(), _example(frames)])
  with pytest.raises(DataError, match=f'record 1 of {path} has frame 2 that cannot be decoded'):
    list(_dataset(path).eval_iter())


def test_truncated_file(tmp_path):
  path = _write(tmp_path / 'val', [_example(filename=f'v{i}') for i in range(3)])
  # Cut short after the dataset was built: the reader meets the truncation and names the file.
  ds = _dataset(path, examples_per_subset={'validation': 3, 'train': 3})
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:-100])
  with pytest.raises(DataError, match=f'{path} is truncated: it ends inside record 2'):
    _dataset(path)
  with pytest.raises(DataError, match=f'{path} is truncated: it ends inside record 2'):
    _dataset(path, examples_per_subset={'validation': 3, 'train': 3})  # Counted all the same.
  with pytest.raises(DataError, match=f'{path} is truncated'):
    list(ds.eval_iter())
  ds = _dataset(path, skip=True)
  keys = [k for b in ds.eval_iter() for k, m in zip(b['key'].ravel(), b['batch_mask'].ravel()) if m]
  assert keys == ['v0', 'v1']


def test_missing_file(tmp_path):
  with pytest.raises(DataError, match=f"Missing data file '{tmp_path}/nothing'"):
    _dataset(str(tmp_path / 'nothing'))

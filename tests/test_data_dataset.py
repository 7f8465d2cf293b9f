"""build_dataset on tiny DMVR-format TFRecords whose pixels encode frame and label.

Frame i of a video of class c is the constant color (4 * i, 20 * c, 0), which
JPEG stores exactly, so every sampled frame index and label can be read back.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from vivit_jax import config as config_lib
from vivit_jax.data import DataError, build_dataset, records
from vivit_jax.task import Task


def _video(num_frames: int, label: int, size=(16, 20)) -> list[bytes]:
  frames = []
  for i in range(num_frames):
    frame = np.zeros((*size, 3), np.uint8)
    frame[..., 0] = 4 * i
    frame[..., 1] = 20 * label
    frames.append(records.encode_jpeg(frame, quality=100))
  return frames


def write_shards(directory, name, videos, num_shards):
  """videos: list of (num_frames, label); video j goes to shard j % num_shards."""
  writers = [
    tf.io.TFRecordWriter(os.path.join(directory, f'{name}-{s:05d}-of-{num_shards:05d}'))
    for s in range(num_shards)
  ]
  for j, (num_frames, label) in enumerate(videos):
    ex = records.make_sequence_example(_video(num_frames, label), [label], filename=f'vid{j}')
    writers[j % num_shards].write(ex.SerializeToString())
  for w in writers:
    w.close()
  return f'{name}@{num_shards}'


def make_config(base_dir, tables, **overrides):
  c = {
    'batch_size': 4,
    'dataset_configs': {
      'base_dir': str(base_dir),
      'tables': tables,
      'num_classes': 5,
      'num_frames': 4,
      'stride': 3,
      'min_resize': 16,
      'crop_size': 16,
      'zero_centering': False,
      'random_flip': False,
      'num_test_clips': 3,
    },
  }
  for key, value in overrides.items():
    if key in c['dataset_configs'] or key in config_lib.get_defaults().dataset_configs:
      c['dataset_configs'][key] = value
    else:
      c[key] = value
  return config_lib.resolve(c)


def _frame_ids(inputs):
  """Frame index of every frame from the red channel; [..., T]."""
  return np.round(inputs[..., 0, 0, 0] * 255 / 4).astype(int)


def _labels(inputs):
  return np.round(inputs[..., 0, 0, 0, 1] * 255 / 20).astype(int)


VIDEOS = [(20 + j, j % 5) for j in range(9)]


@pytest.fixture
def data_dir(tmp_path):
  write_shards(tmp_path, 'train', VIDEOS, 2)
  write_shards(tmp_path, 'val', VIDEOS, 2)
  return tmp_path


def test_eval_one_exact_pass_with_padding(data_dir):
  config = make_config(data_dir, {'validation': 'val@2'}, eval_batch_size=4)
  ds = build_dataset(config, num_local_devices=2, process_index=0, process_count=1)
  assert ds.meta.num_eval_examples == 9
  batches = list(ds.eval_iter())
  assert len(batches) == 3
  b = batches[-1]
  assert b['inputs'].shape == (2, 2, 4, 16, 16, 3)
  assert b['label'].shape == (2, 2, 5) and b['key'].shape == (2, 2)
  np.testing.assert_array_equal(b['batch_mask'], [[1, 0], [0, 0]])
  keys, seen = [], 0
  for b in batches:
    mask = b['batch_mask'].reshape(-1) > 0
    keys += list(b['key'].reshape(-1)[mask])
    inputs = b['inputs'].reshape(-1, 4, 16, 16, 3)[mask]
    labels = b['label'].reshape(-1, 5)[mask]
    for key, clip, label in zip(b['key'].reshape(-1)[mask], inputs, labels, strict=True):
      j = int(key[3:])
      length = VIDEOS[j][0]
      start = (length - 10) // 2
      np.testing.assert_array_equal(_frame_ids(clip), start + 3 * np.arange(4))
      np.testing.assert_array_equal(label, np.eye(5)[j % 5])
      seen += 1
    assert not b['inputs'].reshape(-1, 4, 16, 16, 3)[~mask].any()
  assert sorted(keys) == sorted(f'vid{j}' for j in range(9)) and seen == 9


def test_eval_multi_host_equal_steps(data_dir):
  config = make_config(data_dir, {'validation': 'val@2'}, eval_batch_size=8)
  per_host = []
  for host in range(2):
    ds = build_dataset(config, num_local_devices=2, process_index=host, process_count=2)
    batches = list(ds.eval_iter())
    # Host 0 has 5 records, host 1 has 4; both yield ceil(5 / 4) = 2 batches.
    assert len(batches) == 2
    per_host.append(sum(b['batch_mask'].sum() for b in batches))
  assert per_host == [5, 4]


def test_more_hosts_than_shards_is_an_error(data_dir):
  config = make_config(data_dir, {'train': 'train@2'})
  with pytest.raises(DataError, match='2 data files cannot be split across 4 hosts'):
    build_dataset(config, num_local_devices=1, process_index=0, process_count=4)


def test_batch_size_must_divide(data_dir):
  config = make_config(data_dir, {'train': 'train@2'}, batch_size=6)
  with pytest.raises(
    DataError,
    match=(
      r'batch_size=6 does not split evenly over the 4 devices .1 host.: '
      r'set it to a multiple of 4, e.g. 4 or 8'
    ),
  ):
    build_dataset(config, num_local_devices=4, process_index=0, process_count=1)


def test_train_batches_window_and_labels(data_dir):
  config = make_config(data_dir, {'train': 'train@2'})
  ds = build_dataset(config, num_local_devices=2, process_index=0, process_count=1)
  it = ds.train_iter()
  for _ in range(3):
    b = next(it)
    assert b['inputs'].shape == (2, 2, 4, 16, 16, 3) and b['inputs'].dtype == np.float32
    assert set(b) == {'inputs', 'label', 'batch_mask'}
    np.testing.assert_array_equal(b['batch_mask'], np.ones((2, 2)))
    ids = _frame_ids(b['inputs']).reshape(-1, 4)
    np.testing.assert_array_equal(ids, ids[:, :1] + 3 * np.arange(4))
    labels = _labels(b['inputs']).reshape(-1)
    np.testing.assert_array_equal(b['label'].reshape(-1, 5), np.eye(5)[labels])


def _first(ds, n, start_step=0):
  it = ds.train_iter(start_step)
  return [next(it) for _ in range(n)]


def test_train_seeded_and_resumable(data_dir):
  config = make_config(data_dir, {'train': 'train@2'}, rng_seed=3)
  ds = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  a = _first(ds, 6)
  b = _first(ds, 6)
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x['inputs'], y['inputs'])
  # 9 records, 4 per batch: step 4 starts inside the second epoch.
  resumed = _first(ds, 2, start_step=4)
  np.testing.assert_array_equal(resumed[0]['inputs'], a[4]['inputs'])
  np.testing.assert_array_equal(resumed[1]['label'], a[5]['label'])
  other = build_dataset(
    make_config(data_dir, {'train': 'train@2'}, rng_seed=4),
    num_local_devices=1,
    process_index=0,
    process_count=1,
  )
  c = _first(other, 6)
  assert any(not np.array_equal(x['inputs'], y['inputs']) for x, y in zip(a, c, strict=True))


def test_test_views_grouped_with_keys(data_dir):
  config = make_config(data_dir, {'test': 'val@2'}, test_batch_size=2)
  ds = build_dataset(config, num_local_devices=2, process_index=0, process_count=1)
  batches = list(ds.test_iter())
  assert len(batches) == 5
  b = batches[0]
  assert b['inputs'].shape == (2, 1, 3, 4, 16, 16, 3)
  assert ds.meta.num_test_views == 3
  for b in batches:
    for key, views, mask in zip(
      b['key'].reshape(-1), b['inputs'].reshape(-1, 3, 4, 16, 16, 3), b['batch_mask'].reshape(-1)
    ):
      if not mask:
        continue
      last_start = VIDEOS[int(key[3:])][0] - 10
      starts = np.round(np.linspace(0, last_start, 3)).astype(int)
      np.testing.assert_array_equal(_frame_ids(views), starts[:, None] + 3 * np.arange(4))


def test_meta(data_dir):
  records.write_label_map(os.path.join(data_dir, 'label_map.txt'), list('abcde'))
  config = make_config(data_dir, {'train': 'train@2', 'validation': 'val@2'})
  ds = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  assert ds.meta.num_classes == 5
  assert ds.meta.label_names == list('abcde')
  assert ds.meta.input_shape == (4, 16, 16, 3)
  assert ds.meta.num_train_examples == 9 and ds.meta.num_test_examples == 0
  assert ds.meta.task == Task(5)

"""The data layer on gs:// through the Cloud Storage emulator, checked against local copies.

Each test makes its data locally with the other data tests' helpers, uploads it
under a fresh prefix of the emulator's bucket, and reads or writes it there.
"""

import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
import tensorflow as tf
from test_data_dataset import VIDEOS, write_shards
from test_data_dataset import make_config as tfrecord_config
from test_data_video_files import build, write_csv, write_video
from test_data_video_files import make_config as video_config

from vivit_jax import fileio
from vivit_jax.data import build_dataset, records, synthetic

BUCKET = 'vivit-test'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def prefix(gcs):
  """A fresh folder of the bucket: (its object name prefix, its gs:// URI)."""
  name = f'data-{uuid.uuid4().hex[:8]}'
  return name, f'gs://{BUCKET}/{name}'


def _upload(local_dir, uri):
  for parent, _, files in os.walk(local_dir):
    for name in files:
      path = os.path.join(parent, name)
      fileio.copy(path, f'{uri}/{os.path.relpath(path, local_dir)}')


def _objects(gcs, name):
  """The object names under folder `name`, relative to it."""
  return sorted(o[len(name) + 1 :] for o in gcs.objects(BUCKET) if o.startswith(f'{name}/'))


def _write_videos(root):
  """Five short videos in class folders under `clips`, and `train.csv` listing them."""
  rows = []
  for j, length in enumerate((6, 14, 20, 25, 11)):
    label = ('cat', 'dog')[j % 2]
    write_video(os.path.join(root, 'clips', label, f'v{j}.mp4'), length, j % 2)
    rows.append((f'clips/{label}/v{j}.mp4', label))
  write_csv(os.path.join(root, 'train.csv'), rows)
  return rows


def _same_batches(a, b):
  assert len(a) == len(b) > 0
  for x, y in zip(a, b, strict=True):
    assert sorted(x) == sorted(y)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_make_tfrecords_from_and_to_gcs(gcs, prefix, tmp_path):
  name, uri = prefix
  rows = _write_videos(tmp_path)
  # One row names its video by URI, which is not joined onto --video_root.
  rows[1] = (f'{uri}/videos/{rows[1][0]}', rows[1][1])
  write_csv(tmp_path / 'train.csv', rows)
  _upload(tmp_path, f'{uri}/videos')
  command = [sys.executable, '-m', 'vivit_jax.tools.make_tfrecords']
  command += [f'--csv={uri}/videos/train.csv', f'--video_root={uri}/videos']
  command += [f'--output_dir={uri}/out', '--fps=10', '--min_resize=24', '--num_shards=2']
  command += ['--workers=2']  # Worker processes read the videos from the bucket too.
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'Wrote 5 of 5 videos' in done.stdout, done.stdout
  out = [o for o in _objects(gcs, name) if o.startswith('out/')]
  assert out == ['out/label_map.txt', 'out/train-00000-of-00002', 'out/train-00001-of-00002']
  config = tfrecord_config(f'{uri}/out', {'validation': 'train@2'}, num_classes=2, min_resize=24)
  ds = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  assert ds.meta.label_names == ['cat', 'dog'] and ds.meta.num_eval_examples == 5
  labels = {}
  for batch in ds.eval_iter():
    for key, label, keep in zip(
      batch['key'].reshape(-1), batch['label'].reshape(-1, 2), batch['batch_mask'].reshape(-1)
    ):
      if keep:
        labels[key] = int(np.argmax(label))
  assert labels == {path: ['cat', 'dog'].index(label) for path, label in rows}


def test_tfrecords_on_gcs_give_the_local_batches(gcs, prefix, tmp_path):
  name, uri = prefix
  write_shards(tmp_path, 'train', VIDEOS, 2)
  write_shards(tmp_path, 'val', VIDEOS, 2)
  records.write_label_map(str(tmp_path / records.LABEL_MAP_FILENAME), list('abcde'))
  _upload(tmp_path, uri)
  tables = {'train': 'train@2', 'validation': 'val-*'}

  def batches(base_dir):
    ds = build_dataset(
      tfrecord_config(base_dir, tables, eval_batch_size=4),
      num_local_devices=2,
      process_index=0,
      process_count=1,
    )
    assert ds.meta.label_names == list('abcde')
    train = ds.train_iter(start_step=1)  # Resuming counts the records (and caches the counts).
    return list(ds.eval_iter()) + [next(train), next(train)]

  _same_batches(batches(uri), batches(str(tmp_path)))
  assert 'record_counts.json' in _objects(gcs, name)


def test_video_files_on_gcs_give_the_local_clips(gcs, prefix, tmp_path):
  name, uri = prefix
  local = tmp_path / 'videos'
  _write_videos(local)
  _upload(local, uri)
  # A CSV, and a folder of class folders.
  tables = {'train': 'train.csv', 'validation': 'train.csv', 'test': 'clips'}

  def batches(base_dir, workdir):
    ds = build(video_config(base_dir, tables), workdir=workdir)
    assert ds.meta.label_names == ['cat', 'dog']
    train = ds.train_iter()
    return list(ds.eval_iter()) + list(ds.test_iter()) + [next(train)]

  _same_batches(batches(uri, f'{uri}/work'), batches(str(local), str(tmp_path / 'work')))
  # The label map made from the train labels is kept in the workdir, for a restart.
  assert 'work/label_map.txt' in _objects(gcs, name)
  assert records.read_label_map(f'{uri}/work/label_map.txt') == ['cat', 'dog']


def test_synthetic_written_to_gcs(gcs, prefix, tmp_path, monkeypatch):
  name, uri = prefix
  monkeypatch.setattr(synthetic, 'SPLITS', {'train': (4, 2), 'validation': (2, 1), 'test': (2, 1)})
  synthetic.generate(f'{uri}/tfr', num_frames=6, size=16)
  synthetic.generate(str(tmp_path / 'tfr'), num_frames=6, size=16)
  synthetic.generate_mp4(f'{uri}/mp4', num_frames=6, size=16, limit=1)
  synthetic.generate_mp4(str(tmp_path / 'mp4'), num_frames=6, size=16, limit=1)
  assert synthetic.is_complete(f'{uri}/tfr', num_frames=6, size=16)
  written = [o for o in _objects(gcs, name) if not o.endswith('/')]
  local = sorted(
    os.path.relpath(os.path.join(parent, f), tmp_path)
    for parent, _, files in os.walk(tmp_path)
    for f in files
  )
  assert written == local
  # Shards, info and label map; label map, a video and a CSV per split.
  assert len(local) == 4 + 1 + 1 + 1 + 3 + 3
  for path in local:
    if not path.endswith('.mp4'):  # x264 need not write the same bytes twice.
      with fileio.open_file(f'{uri}/{path}', 'rb') as f:
        assert f.read() == (tmp_path / path).read_bytes(), path
  shard = tf.data.TFRecordDataset(f'{uri}/tfr/synthetic_train-00000-of-00002')
  assert len(list(shard)) == 2

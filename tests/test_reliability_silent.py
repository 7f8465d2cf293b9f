"""Nothing silently wrong: each case that used to go on without a word now says so or stops.

Dataset sizes come from the data; a workdir resumes (and predicts) only under the
model that wrote it; a folder of frames is a video and an empty class folder or
directory is named; two runs on one workdir are refused. The catalogue is in
docs/reliability.md.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from reliability_fakes import NUM_CLASSES, write_tfrecords
from test_inference_fakes import random_params, tiny_config, write_mp4, write_orbax_workdir
from test_reliability_bad_inputs import _config
from train_fakes import FakeDataset, TinyModel

from vivit_jax import fileio
from vivit_jax.checkpoints.workdir import ModelMismatchError
from vivit_jax.config import resolve
from vivit_jax.data import DataError, build_dataset, file_check, records, video_files, video_io
from vivit_jax.inference import VideoClassifier, files
from vivit_jax.train import trainer, workdir_lock
from vivit_jax.train.checkpointing import CheckpointMismatchError
from vivit_jax.train.workdir_lock import WorkdirInUseError, WorkdirLock


def _listing(path):
  return sorted(os.listdir(path)) if os.path.isdir(path) else None


# 1. Dataset sizes from the data.


def test_a_paper_count_on_other_data_gives_way_to_the_data_and_says_so(tmp_path, caplog):
  table = write_tfrecords(str(tmp_path))  # 4 shards of 4 clips.
  config = resolve(
    {
      'batch_size': 8,
      'num_training_epochs': 30,
      'dataset_configs': {
        'base_dir': str(tmp_path),
        'tables': {'train': table},
        'examples_per_subset': {'train': 859_350},  # A Kinetics-sized count.
        'num_classes': NUM_CLASSES,
        'num_frames': 4,
        'stride': 1,
        'min_resize': 16,
        'crop_size': 16,
      },
    }
  )
  with caplog.at_level(logging.WARNING):
    ds = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  assert ds.meta.num_train_examples == 16
  assert trainer.training_length(config, ds.meta.num_train_examples) == (60, 2)
  warning = [r.getMessage() for r in caplog.records if 'examples_per_subset' in r.getMessage()]
  assert warning == [
    "dataset_configs.examples_per_subset.train=859350, but the 'train' table 'tiny_train@4' "
    'holds 16 records: using 16, so that an epoch (and with it num_training_epochs, the '
    'schedule and the default log_eval_steps) is one pass over the data. Set '
    '--config.dataset_configs.examples_per_subset.train=16 to silence this.'
  ]
  # The counts are cached beside the data, so the next start reads no record.
  assert os.path.exists(tmp_path / 'record_counts.json')
  caplog.clear()
  config.dataset_configs.examples_per_subset.train = 16
  with caplog.at_level(logging.WARNING):
    build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  assert not [r for r in caplog.records if 'examples_per_subset' in r.getMessage()]


# 2. A workdir resumes only under the model that wrote it.


def _train(workdir, steps, config=None, dataset=None):
  return trainer.train_and_evaluate(
    config or _config(steps),
    workdir,
    dataset=dataset or FakeDataset(num_devices=8),
    module=TinyModel(6),
  )


def test_a_workdir_resumes_only_under_the_attention_it_was_trained_with(tmp_path):
  workdir = str(tmp_path)
  _train(workdir, steps=1)
  with open(os.path.join(workdir, 'config.json')) as f:
    written = f.read()
  before = _listing(workdir)
  other = _config(2)
  # The same parameter tree: only the config says the parameters mean something else.
  other.model.attention_config.type = 'factorized_dot_product_attention'
  with pytest.raises(CheckpointMismatchError) as info:
    _train(workdir, steps=2, config=other)
  assert str(info.value) == (
    f'The workdir {workdir} was trained with another model: its {workdir}/config.json sets '
    "model.attention_config.type='spacetime' (this config: 'factorized_dot_product_attention')."
    ' Rerun with that config, or use a new --workdir for this one. Nothing in the directory '
    'was changed.'
  )
  assert _listing(workdir) == before
  with open(os.path.join(workdir, 'config.json')) as f:
    assert f.read() == written
  assert _train(workdir, steps=2)['step'] == 2  # Its own config resumes.


def test_a_workdir_resumes_only_with_the_classes_it_was_trained_on(tmp_path):
  workdir = str(tmp_path)
  _train(workdir, steps=1)
  assert records.read_label_map(os.path.join(workdir, 'label_map.txt')) == [
    f'class{i}' for i in range(6)
  ]
  swapped = FakeDataset(num_devices=8)
  names = ['class1', 'class0', *[f'class{i}' for i in range(2, 6)]]
  swapped.meta = dataclasses.replace(swapped.meta, label_names=names)
  before = _listing(workdir)
  with pytest.raises(
    CheckpointMismatchError,
    match=r'trained with other classes: its .*label_map.txt lists 6, the data 6, and class 0 is '
    "'class0' there but 'class1' in the data",
  ):
    _train(workdir, steps=2, dataset=swapped)
  assert _listing(workdir) == before


def test_predict_refuses_a_checkpoint_trained_with_another_attention(tmp_path):
  small = tiny_config()
  small.model.classifier = 'gap'  # Factorized attention has no class token.
  write_orbax_workdir(str(tmp_path), random_params(small), step=5)
  with open(tmp_path / 'config.json', 'w') as f:
    json.dump(json.loads(resolve(small).to_json_best_effort()), f)
  other = tiny_config('factorized_dot_product_attention')
  other.model.classifier = 'gap'
  with pytest.raises(ModelMismatchError) as info:
    VideoClassifier.from_checkpoint(other, str(tmp_path))
  assert str(info.value) == (
    f'The checkpoint {tmp_path}/checkpoints/5/default was trained with another model: '
    f"{tmp_path}/config.json sets model.attention_config.type='spacetime' (this config: "
    "'factorized_dot_product_attention'). Pass that config file, or set those keys "
    '(--config.KEY=VALUE).'
  )
  VideoClassifier.from_checkpoint(small, str(tmp_path))  # Its own config loads.


# 3. Folders of frames.

SIZE = (24, 32)


def _write_frames(directory, frames, ext='png'):
  """Frames as frame_1.png ... frame_N.png (lossless, so decoding gives them back)."""
  os.makedirs(directory, exist_ok=True)
  for i, frame in enumerate(frames, start=1):
    encode = tf.io.encode_png if ext == 'png' else tf.io.encode_jpeg
    tf.io.write_file(os.path.join(directory, f'frame_{i}.{ext}'), encode(frame))
  return str(directory)


def _frames(n, seed=0):
  return np.random.default_rng(seed).integers(0, 255, (n, *SIZE, 3), dtype=np.uint8)


def test_a_folder_of_frames_is_a_video_in_the_natural_order_of_its_names(tmp_path):
  frames = _frames(12)
  folder = _write_frames(tmp_path / 'clip', frames)
  # frame_10.png comes after frame_9.png, not after frame_1.png.
  decoded = video_io.decode_video(folder, fps=10, min_resize=0)
  np.testing.assert_array_equal(decoded, frames)
  # Frames at 20 fps read at 10: every second one; only those are decoded.
  index = video_io.probe(folder, 20.0)
  assert video_io.num_frames(index, 10.0) == 6
  picked = video_io.decode_frames(folder, [1, 5], fps=10, min_resize=0, frames_fps=20)
  np.testing.assert_array_equal(picked, frames[[2, 10]])
  assert video_io.decode_video(folder, fps=10, min_resize=12).shape == (12, 12, 16, 3)
  assert file_check.video_problem(folder) is None
  os.makedirs(tmp_path / 'none')
  with pytest.raises(video_io.VideoError, match='is a folder without frames'):
    video_io.probe(str(tmp_path / 'none'), 10.0)
  assert 'is a folder without frames' in file_check.video_problem(str(tmp_path / 'none')).text


def _video_config(base_dir, tables):
  return resolve(
    {
      'dataset_name': 'video_files',
      'batch_size': 2,
      'dataset_configs': {
        'base_dir': str(base_dir),
        'tables': tables,
        'num_frames': 4,
        'stride': 1,
        'min_resize': 24,
        'crop_size': 16,
        'num_test_clips': 1,
        'fps': 8.0,
        'decode_workers': 1,
      },
    }
  )


def _build(config, workdir=None):
  return build_dataset(
    config, num_local_devices=1, process_index=0, process_count=1, workdir=workdir
  )


def test_class_folders_of_frames_are_videos_and_an_empty_class_is_named(tmp_path):
  root = tmp_path / 'videos'
  os.makedirs(root / 'cat')
  write_mp4(root / 'cat' / 'a.mp4', _frames(8, 1))
  _write_frames(root / 'dog' / 'b', _frames(8, 2), ext='jpg')  # EPIC-Kitchens' layout.
  os.makedirs(root / 'emu')
  with pytest.raises(DataError) as info:
    _build(_video_config(root, {'train': str(root)}))
  assert str(info.value).startswith(
    f"Class folder {root}/emu holds no videos: put the videos of class 'emu' in it "
  )
  assert str(info.value).endswith(
    '<class>/<video>/<frame>.jpg for a folder of frames), or remove the folder.'
  )
  os.rmdir(root / 'emu')
  entries = video_files.read_table(str(root), '.')
  assert [(e.key, e.label) for e in entries] == [('cat/a.mp4', 'cat'), ('dog/b', 'dog')]
  with open(root / 'val.csv', 'w') as f:
    f.write('video_path,label\ndog/b,dog\ncat/a.mp4,cat\n')
  ds = _build(_video_config(root, {'train': '.', 'validation': 'val.csv'}), str(tmp_path / 'w'))
  assert ds.meta.label_names == ['cat', 'dog'] and ds.meta.num_train_examples == 2
  batch = next(ds.eval_iter())
  assert list(batch['key'].ravel()) == ['dog/b', 'cat/a.mp4']
  assert batch['inputs'].shape == (1, 2, 4, 16, 16, 3)
  assert batch['label'][0].argmax(-1).tolist() == [1, 0]


def test_predict_reads_a_folder_of_frames_and_names_a_directory_without_videos(tmp_path):
  folder = _write_frames(tmp_path / 'frames', _frames(8), ext='jpg')
  assert files.expand([folder]) == [folder]
  os.makedirs(tmp_path / 'nothing' / 'inside')
  (tmp_path / 'nothing' / 'notes.txt').write_text('no video here')
  with pytest.raises(DataError) as info:
    files.expand([folder, str(tmp_path / 'nothing')])
  assert str(info.value).startswith(f'{tmp_path}/nothing holds no videos: no video file (.mp4')
  config = tiny_config()
  classifier = VideoClassifier(config, random_params(config))
  out = io.StringIO()
  assert files.predict_files(classifier, [folder], top_k=1, out=out, progress=False) == 0
  assert out.getvalue().startswith(f'{folder}  (8 frames)')


# 4. One run per workdir.


def test_a_second_run_on_a_workdir_is_refused_and_changes_nothing(tmp_path):
  workdir = str(tmp_path)
  _train(workdir, steps=1)
  before = _listing(workdir)
  holder = WorkdirLock(workdir, chief=True)
  holder.acquire()  # A live run of this host (this process).
  try:
    with pytest.raises(WorkdirInUseError) as info:
      _train(workdir, steps=2)
    message = str(info.value)
    assert message.startswith(
      f'{workdir} is in use by another run: pid {os.getpid()} on host {socket.gethostname()}, '
      'started '
    )
    assert message.endswith(
      f'({workdir}/lock.json). Wait for it to end, or use another --workdir; if that run is '
      f'gone, delete {workdir}/lock.json (a lock without a heartbeat for 300 s is taken over).'
    )
    assert _listing(workdir) == sorted([*before, 'lock.json'])
  finally:
    holder.release()
  assert _listing(workdir) == before
  assert _train(workdir, steps=2)['step'] == 2
  assert 'lock.json' not in _listing(workdir)  # Removed at the end of the run.


def _write_lock(workdir, *, host, pid, age_s):
  now = time.time() - age_s
  with open(os.path.join(workdir, 'lock.json'), 'w') as f:
    json.dump({'host': host, 'pid': pid, 'started': 'then', 'heartbeat_unix': now}, f)


def test_a_stale_lock_is_taken_over_and_a_live_one_elsewhere_is_not(tmp_path, caplog):
  workdir = str(tmp_path)
  gone = subprocess.run(
    [sys.executable, '-c', 'import os; print(os.getpid())'], text=True, capture_output=True
  )
  dead_pid = int(gone.stdout)
  host = socket.gethostname()
  for holder, reason in (
    ({'host': host, 'pid': dead_pid, 'age_s': 1}, f'process {dead_pid} no longer runs'),
    ({'host': 'elsewhere', 'pid': 1, 'age_s': 400}, ' s old (over 300 s)'),
  ):
    _write_lock(workdir, **holder)
    lock = WorkdirLock(workdir, chief=True)
    with caplog.at_level(logging.WARNING):
      lock.acquire()
    assert reason in caplog.text and 'Taking over the lock' in caplog.text
    assert fileio.read_json(lock.path)['pid'] == os.getpid()
    lock.release()
    assert not os.path.exists(lock.path)
    caplog.clear()
  _write_lock(workdir, host='elsewhere', pid=1, age_s=10)
  with pytest.raises(
    WorkdirInUseError, match=r'pid 1 on host elsewhere, started then, alive 1\d s ago'
  ):
    WorkdirLock(workdir, chief=True).acquire()
  # Only process 0 locks: the other processes of a run neither read nor write it.
  WorkdirLock(workdir, chief=False).acquire()


def test_a_failed_start_leaves_no_lock_and_the_heartbeat_goes_on(tmp_path, monkeypatch):
  kept = tmp_path / 'kept'
  kept.mkdir()
  (kept / 'notes.txt').write_text('mine')
  bad = _config(1)
  bad.batch_size = 12  # Does not split over 8 devices: fails before the first step.
  with pytest.raises(Exception, match='does not split evenly'):
    _train(str(kept), 1, config=bad)
  assert _listing(kept) == ['notes.txt']
  with pytest.raises(Exception, match='does not split evenly'):
    _train(str(tmp_path / 'new'), 1, config=bad)
  assert not (tmp_path / 'new').exists()

  monkeypatch.setattr(workdir_lock, 'HEARTBEAT_S', 0.05)
  with workdir_lock.held(str(kept)) as lock:
    lock.acquire()
    first = fileio.read_json(lock.path)['heartbeat_unix']
    time.sleep(0.5)
    assert fileio.read_json(lock.path)['heartbeat_unix'] > first
  assert _listing(kept) == ['notes.txt']


def test_the_lock_works_in_a_bucket(gcs):
  workdir = f'gs://vivit-test/lock-{os.getpid()}'
  fileio.makedirs(workdir)
  lock = WorkdirLock(workdir, chief=True)
  lock.acquire()
  assert fileio.read_json(f'{workdir}/lock.json')['token'] == lock._record['token']
  with pytest.raises(WorkdirInUseError, match=f'{workdir} is in use by another run'):
    WorkdirLock(workdir, chief=True).acquire()
  lock.release()
  assert not fileio.exists(f'{workdir}/lock.json')
  fileio.write_json(
    f'{workdir}/lock.json', {'host': 'elsewhere', 'pid': 1, 'heartbeat_unix': time.time() - 999}
  )
  again = WorkdirLock(workdir, chief=True)
  again.acquire()  # Stale: taken over.
  again.release()
  assert not fileio.exists(f'{workdir}/lock.json')

"""dataset_name='video_files' on tiny videos written here with PyAV.

Frame i of a video shows a horizontal ramp plus 8 * i in red and 40 * label in
green, so frame indices and labels can be read back from the pixels.
"""

import csv
import os
import threading

import av
import numpy as np
import pytest

from vivit_jax import config as config_lib
from vivit_jax.data import DataError, build_dataset, conversion, file_check, records, video_io

SIZE = (32, 40)  # Height, width: landscape, so the three crops differ.


def write_video(path, num_frames, label=0, *, fps=10, codec='mpeg4', gop=None, faststart=False):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  ramp = np.linspace(0, 60, SIZE[1])[None, :]
  options = {'movflags': 'faststart'} if faststart else {}
  with av.open(str(path), 'w', options=options) as container:
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = SIZE
    stream.pix_fmt = 'yuv420p'
    if codec == 'mpeg4':
      stream.options = {'qscale': '1'}
    else:
      stream.options = {'crf': '4'}
    if gop:
      stream.codec_context.gop_size = gop
    for i in range(num_frames):
      image = np.zeros((*SIZE, 3), np.float64)
      image[..., 0] = ramp + 8 * i
      image[..., 1] = 40 * label
      image[..., 2] = 100
      frame = av.VideoFrame.from_ndarray(image.astype(np.uint8), format='rgb24')
      container.mux(stream.encode(frame))
    container.mux(stream.encode())
  return str(path)


def write_csv(path, rows):
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['video_path', 'label', 'start', 'end'])
    for row in rows:
      writer.writerow(list(row) + [''] * (4 - len(row)))
  return str(path)


def make_config(base_dir, tables, **dataset):
  dc = {
    'base_dir': str(base_dir),
    'tables': tables,
    'num_frames': 4,
    'stride': 2,
    'min_resize': 24,
    'crop_size': 16,
    'zero_centering': False,
    'random_flip': False,
    'num_test_clips': 2,
    'fps': 10.0,
    'decode_workers': 2,
  }
  dc.update(dataset)
  return config_lib.resolve({'dataset_name': 'video_files', 'batch_size': 2, 'dataset_configs': dc})


def build(config, **kwargs):
  kwargs.setdefault('num_local_devices', 1)
  kwargs.setdefault('process_index', 0)
  kwargs.setdefault('process_count', 1)
  return build_dataset(config, **kwargs)


# Video lengths: shorter than a clip (loops), and longer.
LENGTHS = (6, 14, 20, 25, 11)


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  root = tmp_path_factory.mktemp('videos')
  rows = []
  for j, length in enumerate(LENGTHS):
    label = ('cat', 'dog')[j % 2]
    write_video(root / label / f'v{j}.mp4', length, j % 2)
    rows.append((f'{label}/v{j}.mp4', label))
  write_csv(root / 'train.csv', rows)
  write_csv(root / 'val.csv', rows)
  return root


def test_decode_frames_equal_full_decode_with_seeks(tmp_path):
  # H.264 with B-frames and a key frame every 5 frames: reading a few frames seeks.
  path = write_video(tmp_path / 'a.mp4', 30, codec='libx264', gop=5)
  index = video_io.probe(path)
  assert len(index.pts) == 30 and index.keyframe.sum() >= 5
  full = video_io.decode_video(path, fps=10, min_resize=24)
  assert full.shape == (30, 24, 30, 3)
  # Frame i shows red 8 * i (plus the ramp): each frame is the right one.
  red = full[:, :, :2, 0].mean(axis=(1, 2))
  np.testing.assert_allclose(red, 8 * np.arange(30) + red[0], atol=3)
  picks = np.array([[27, 3, 3], [12, 0, 19]])
  np.testing.assert_array_equal(
    video_io.decode_frames(path, picks, fps=10, min_resize=24), full[picks]
  )
  # Resampled to 5 fps every other frame is shown; 20 fps repeats each one.
  half = video_io.decode_frames(path, [0, 1, 14], fps=5, min_resize=24)
  np.testing.assert_array_equal(half, full[[0, 2, 28]])
  assert video_io.num_frames(index, 20.0) == 60
  cut = video_io.decode_video(path, fps=10, min_resize=24, start=1.0, end=2.0)
  np.testing.assert_array_equal(cut, full[10:20])


def _tfrecord_config(directory, **dataset):
  config = make_config(directory, {'validation': 'val@2', 'test': 'val@2'}, **dataset)
  config.dataset_name = 'video_tfrecord_dataset'
  return config


def _convert(videos, out_dir):
  rows = video_io.read_csv(str(videos / 'val.csv'))
  names = conversion.build_label_map(rows, None)
  settings = {'video_root': str(videos), 'fps': 10.0, 'min_resize': 24, 'jpeg_quality': 90}
  errors = conversion.convert(
    rows, names, str(out_dir), 'val', num_shards=2, workers=1, settings=settings, progress=False
  )
  assert not errors
  records.write_label_map(str(out_dir / records.LABEL_MAP_FILENAME), names)


def _by_key(batches, views=False):
  out = {}
  for batch in batches:
    mask = batch['batch_mask'].reshape(-1)
    inputs = batch['inputs'].reshape(-1, *batch['inputs'].shape[2:])
    labels = batch['label'].reshape(-1, batch['label'].shape[-1])
    for key, keep, x, y in zip(batch['key'].reshape(-1), mask, inputs, labels, strict=True):
      if keep:
        out[key] = (x, y)
  return out


@pytest.mark.parametrize('three_crops', [False, True])
def test_same_views_as_tfrecords(videos, tmp_path, three_crops):
  _convert(videos, tmp_path)
  options = {'do_three_spatial_crops': three_crops}
  shards = build(_tfrecord_config(tmp_path, **options))
  files = build(
    make_config(
      videos, {'train': 'train.csv', 'validation': 'val.csv', 'test': 'val.csv'}, **options
    ),
    workdir=str(tmp_path / 'work'),
  )
  assert files.meta.label_names == shards.meta.label_names == ['cat', 'dog']
  for name in ('eval', 'test'):
    a = _by_key(getattr(shards, f'{name}_iter')())
    b = _by_key(getattr(files, f'{name}_iter')())
    assert sorted(a) == sorted(b) == sorted(f'{("cat", "dog")[j % 2]}/v{j}.mp4' for j in range(5))
    for key in a:
      np.testing.assert_array_equal(a[key][1], b[key][1])
      diff = np.abs(a[key][0] - b[key][0]).mean() * 255
      assert diff < 3, (name, key, diff)
      # The ramp and per-frame step make a wrong frame or crop differ by far more.
      shifted = np.abs(a[key][0] - np.roll(b[key][0], 1, axis=-4)).mean() * 255
      assert shifted > 6, (name, key, shifted)
  views = next(files.test_iter())['inputs']
  assert views.shape == (1, 1, 2 * (3 if three_crops else 1), 4, 16, 16, 3)


def test_train_clips_as_tfrecords(videos, tmp_path):
  """One video both ways: the same seeds give the same window, crop, flip and jitter."""
  write_csv(tmp_path / 'one.csv', [('dog/v3.mp4', 'dog')])
  rows = video_io.read_csv(str(tmp_path / 'one.csv'))
  settings = {'video_root': str(videos), 'fps': 10.0, 'min_resize': 24, 'jpeg_quality': 95}
  conversion.convert(
    rows, ['dog'], str(tmp_path), 'one', num_shards=1, workers=1, settings=settings, progress=False
  )
  options = {
    'random_flip': True,
    'num_classes': 1,
    'augmentation_params': {'do_jitter_scale': True, 'scale_min_factor': 0.8},
  }
  shards = make_config(tmp_path, {'train': 'one@1'}, **options)
  shards.dataset_name = 'video_tfrecord_dataset'
  files = make_config(videos, {'train': str(tmp_path / 'one.csv')}, **options)
  a_iter, b_iter = build(shards).train_iter(), build(files).train_iter()
  for _ in range(3):
    a, b = next(a_iter)['inputs'], next(b_iter)['inputs']
    assert np.abs(a - b).mean() * 255 < 3


def test_resume_continues_the_stream(videos):
  config = make_config(videos, {'train': 'train.csv'}, random_flip=True)
  ds = build(config)
  stream = ds.train_iter()
  first = [next(stream)['inputs'] for _ in range(5)]
  resumed = ds.train_iter(start_step=3)
  for step in (3, 4):
    np.testing.assert_array_equal(next(resumed)['inputs'], first[step])
  assert not np.array_equal(first[0], first[1])


def test_class_folders_and_workdir_label_map(videos, tmp_path):
  workdir = tmp_path / 'work'
  ds = build(make_config(videos, {'train': '.', 'validation': 'val.csv'}), workdir=str(workdir))
  assert ds.meta.num_train_examples == 5 and ds.meta.num_classes == 2
  assert records.read_label_map(str(workdir / 'label_map.txt')) == ['cat', 'dog']
  # A restart reuses the saved map even when the train table changes.
  records.write_label_map(str(workdir / 'label_map.txt'), ['cat', 'dog', 'emu'])
  again = build(make_config(videos, {'train': '.'}), workdir=str(workdir))
  assert again.meta.label_names == ['cat', 'dog', 'emu']
  labels = next(again.train_iter())['label']
  assert labels.shape == (1, 2, 3) and labels[..., 2].sum() == 0


def test_eval_batches_pad_and_mask(videos):
  ds = build(make_config(videos, {'train': 'train.csv', 'validation': 'val.csv'}))
  batches = list(ds.eval_iter())
  assert len(batches) == 3
  assert batches[-1]['batch_mask'].tolist() == [[1.0, 0.0]]
  assert batches[-1]['key'].tolist() == [['cat/v4.mp4', '']]


def test_two_hosts_split_the_videos(videos):
  config = make_config(videos, {'train': 'train.csv', 'validation': 'val.csv'})
  keys, steps = [], []
  for host in (0, 1):
    ds = build(config, process_index=host, process_count=2)
    batches = list(ds.eval_iter())
    steps.append(len(batches))
    keys.append([k for b in batches for k, m in zip(b['key'][0], b['batch_mask'][0]) if m])
  assert keys[0] == ['cat/v0.mp4', 'cat/v2.mp4', 'cat/v4.mp4']
  assert keys[1] == ['dog/v1.mp4', 'dog/v3.mp4']
  assert steps == [3, 3]  # Host batch 1; host 1 pads its third.


def _bad_inputs(root):
  """(table row, expected message) for each kind of bad video."""
  good = write_video(root / 'good.mp4', 12)
  with open(good, 'rb') as f:
    data = f.read()
  with open(root / 'no_index.mp4', 'wb') as f:
    f.write(data[: len(data) // 2])  # The index (moov) is written last: it is lost.
  with open(write_video(root / 'cut.mp4', 12, faststart=True), 'rb') as f:
    data = f.read()
  with open(root / 'cut.mp4', 'wb') as f:
    f.write(data[: len(data) * 2 // 3])  # The index comes first: the frames are cut.
  with open(root / 'garbage.mp4', 'wb') as f:
    f.write(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
  with av.open(str(root / 'audio.wav'), 'w') as container:
    stream = container.add_stream('pcm_s16le', rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format='s16', layout='mono')
    frame.rate = 8000
    for packet in stream.encode(frame):
      container.mux(packet)
  return [
    (('missing.mp4', 'cat'), r'missing\.mp4 file not found'),
    (('no_index.mp4', 'cat'), r'no_index\.mp4 has no video stream \(not a video, or truncated'),
    (('cut.mp4', 'cat'), r'cut\.mp4 is truncated: \d+ of its 12 frames'),
    (('garbage.mp4', 'cat'), r'garbage\.mp4 cannot be opened'),
    (('audio.wav', 'cat'), r'audio\.wav has no video stream'),
    (('good.mp4', 'cat', '5.0', '6.0'), r'good\.mp4 has no frames'),
  ]


def test_bad_videos_are_named_or_skipped(tmp_path):
  cases = _bad_inputs(tmp_path)
  for row, pattern in cases:
    table = write_csv(tmp_path / 'bad.csv', [('good.mp4', 'cat'), row])
    # Named by the check of the tables in build_dataset, or, if only decoding shows it, when met.
    with pytest.raises(DataError, match='Bad input data: .*video .*' + pattern):
      list(build(make_config(tmp_path, {'train': table, 'validation': table})).eval_iter())
  table = write_csv(tmp_path / 'all.csv', [('good.mp4', 'cat')] + [row for row, _ in cases])
  ds = build(make_config(tmp_path, {'train': table, 'validation': table}, skip_corrupt=True))
  batches = list(ds.eval_iter())
  assert sum(b['batch_mask'].sum() for b in batches) == 1 and ds.skipped.count == 6
  # Training skips them too and keeps going.
  next(ds.train_iter())


def test_label_not_in_map(tmp_path):
  write_video(tmp_path / 'a.mp4', 12)
  train = write_csv(tmp_path / 'train.csv', [('a.mp4', 'cat')])
  val = write_csv(tmp_path / 'val.csv', [('a.mp4', 'cat'), ('a.mp4', 'wolf')])
  tables = {'train': train, 'validation': val}
  with pytest.raises(DataError, match=r"val\.csv line 3: video a\.mp4 has label 'wolf'"):
    build(make_config(tmp_path, tables))
  ds = build(make_config(tmp_path, tables, skip_corrupt=True))
  assert ds.meta.num_eval_examples == 1 and ds.skipped.count == 1


def test_stalled_decoder_is_abandoned(tmp_path, monkeypatch):
  write_video(tmp_path / 'a.mp4', 12)
  fifo = str(tmp_path / 'stall.mp4')
  os.mkfifo(fifo)  # Opening it for reading blocks until a writer comes: a stalled read.
  table = write_csv(tmp_path / 't.csv', [('a.mp4', 'cat'), ('stall.mp4', 'cat')])
  # The check of the tables names the FIFO (0 bytes) at once; without it, the decoder's guard.
  with pytest.raises(DataError, match=r'stall\.mp4 is empty \(0 bytes\)'):
    build(make_config(tmp_path, {'train': table, 'validation': table}))
  monkeypatch.setattr(file_check, 'check_tables', lambda *args, **kwargs: None)
  ds = build(make_config(tmp_path, {'train': table, 'validation': table}, decode_timeout_s=1.0))
  try:
    with pytest.raises(DataError, match=r'stall\.mp4 stalled: decoding took more than 1 s'):
      list(ds.eval_iter())
  finally:
    # Release the abandoned thread.
    threading.Thread(target=lambda: open(fifo, 'wb').close(), daemon=True).start()

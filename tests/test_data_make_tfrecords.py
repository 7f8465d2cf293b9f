"""The video -> TFRecord converter on short mp4 files written with PyAV."""

import os

import av
import numpy as np
import pytest
import tensorflow as tf

from vivit_jax.data import conversion, records, video_io


def write_mp4(path, num_frames=16, fps=8, size=(48, 64)):
  """Frame i is the flat grey 12 * i."""
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('mpeg4', rate=fps)
    stream.height, stream.width = size
    stream.pix_fmt = 'yuv420p'
    stream.options = {'qscale': '1'}
    for i in range(num_frames):
      image = np.full((*size, 3), 12 * i, np.uint8)
      container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format='rgb24')))
    container.mux(stream.encode())
  return str(path)


def _levels(frames):
  return [round(float(f.mean()) / 12) for f in frames]


def test_decode_at_source_rate_and_resize(tmp_path):
  frames = video_io.decode_video(
    write_mp4(tmp_path / 'a.mp4'), fps=8, min_resize=24, start=None, end=None
  )
  assert len(frames) == 16 and frames[0].shape == (24, 32, 3)
  assert _levels(frames) == list(range(16))


def test_decode_resamples_and_cuts(tmp_path):
  path = write_mp4(tmp_path / 'a.mp4')
  half = video_io.decode_video(path, fps=4, min_resize=0, start=None, end=None)
  assert _levels(half) == list(range(0, 16, 2)) and half[0].shape == (48, 64, 3)
  double = video_io.decode_video(path, fps=16, min_resize=0, start=None, end=None)
  assert _levels(double) == [i // 2 for i in range(32)]
  cut = video_io.decode_video(path, fps=8, min_resize=0, start=0.5, end=1.5)
  assert _levels(cut) == list(range(4, 12))


def test_label_map_sorted_and_reused(tmp_path):
  rows = [
    video_io.Row('a', 'zebra'),
    video_io.Row('b', 'ant'),
    video_io.Row('c', 'moth'),
    video_io.Row('d', 'ant'),
  ]
  names = conversion.build_label_map(rows, None)
  assert names == ['ant', 'moth', 'zebra']
  assert conversion.build_label_map(rows[::-1], None) == names
  path = str(tmp_path / 'label_map.txt')
  records.write_label_map(path, names)
  # Another split with a subset of the classes keeps the same indices.
  assert conversion.build_label_map([video_io.Row('e', 'zebra')], path) == names
  with pytest.raises(ValueError, match=r"Labels not in .*\['wasp'\]"):
    conversion.build_label_map([video_io.Row('e', 'wasp')], path)


def test_convert_writes_every_key_and_skips_bad_videos(tmp_path):
  write_mp4(tmp_path / 'v0.mp4')
  write_mp4(tmp_path / 'v1.mp4', num_frames=8)
  (tmp_path / 'broken.mp4').write_bytes(b'not a video')
  csv_path = tmp_path / 'train.csv'
  csv_path.write_text(
    'video_path,label,start,end\nv0.mp4,b,,\nbroken.mp4,a,,\nv1.mp4,a,0.25,0.75\n'
  )
  rows = video_io.read_csv(str(csv_path))
  names = conversion.build_label_map(rows, None)
  settings = {'video_root': str(tmp_path), 'fps': 8.0, 'min_resize': 24, 'jpeg_quality': 90}
  out = tmp_path / 'out'
  errors = conversion.convert(
    rows, names, str(out), 'train', num_shards=2, workers=2, settings=settings, progress=False
  )
  assert len(errors) == 1 and 'broken.mp4' in errors[0]
  assert sorted(os.listdir(out)) == ['train-00000-of-00002', 'train-00001-of-00002']
  examples = []
  for shard in sorted(os.listdir(out)):
    for raw in tf.data.TFRecordDataset(str(out / shard)):
      examples.append(tf.train.SequenceExample.FromString(raw.numpy()))
  by_name = {e.context.feature['video/filename'].bytes_list.value[0]: e for e in examples}
  assert set(by_name) == {b'v0.mp4', b'v1.mp4'}
  v1 = by_name[b'v1.mp4'].context.feature
  assert list(v1['clip/label/index'].int64_list.value) == [0]
  assert list(v1['clip/label/text'].bytes_list.value) == [b'a']
  assert list(v1['clip/start/timestamp'].int64_list.value) == [250_000]
  assert list(v1['clip/end/timestamp'].int64_list.value) == [750_000]
  assert len(by_name[b'v1.mp4'].feature_lists.feature_list['image/encoded'].feature) == 4
  v0 = by_name[b'v0.mp4']
  assert list(v0.context.feature['clip/label/index'].int64_list.value) == [1]
  assert list(v0.context.feature['clip/end/timestamp'].int64_list.value) == [2_000_000]
  jpeg = v0.feature_lists.feature_list['image/encoded'].feature[3].bytes_list.value[0]
  assert tf.io.decode_jpeg(jpeg).shape == (24, 32, 3)


def test_a_failed_conversion_leaves_no_shard(tmp_path, monkeypatch):
  write_mp4(tmp_path / 'v0.mp4', num_frames=4)
  rows = [video_io.Row('v0.mp4', 'a'), video_io.Row('v0.mp4', 'b'), video_io.Row('v0.mp4', 'a')]
  settings = {'video_root': str(tmp_path), 'fps': 8.0, 'min_resize': 24, 'jpeg_quality': 90}
  convert_row = conversion.convert_row

  def fail_on_the_last(job):
    if job[0] == 2:
      raise KeyboardInterrupt
    return convert_row(job)

  out = tmp_path / 'out'

  def convert():
    return conversion.convert(
      rows,
      ['a', 'b'],
      str(out),
      'train',
      num_shards=2,
      workers=1,
      settings=settings,
      progress=False,
    )

  monkeypatch.setattr(conversion, 'convert_row', fail_on_the_last)
  with pytest.raises(KeyboardInterrupt):
    convert()
  assert os.listdir(out) == []
  monkeypatch.setattr(conversion, 'convert_row', convert_row)
  assert convert() == []
  assert sorted(os.listdir(out)) == ['train-00000-of-00002', 'train-00001-of-00002']

"""The data benchmark's library (`vivit_jax.harness.data_timing`) on tiny data: every mode runs.

`tools/data_benchmark` times three pipelines on data it writes: DMVR shards of
textured fake videos, mp4s looped from source videos, and those mp4s converted to
TFRecords. Speed is not asserted here (docs record it); what is checked is that
each mode builds its data and pipelines and returns a rate for each of them.
"""

import math
import os

import av
import numpy as np
import pytest

from vivit_jax import config as config_lib
from vivit_jax import fileio
from vivit_jax.errors import UserError
from vivit_jax.harness import data_timing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _synthetic_config():
  return config_lib.load_config_file(os.path.join(REPO, 'configs', 'synthetic.py'))


def _tiny(config):
  config.dataset_configs.update(num_frames=4, stride=1, shuffle_buffer_size=8)
  config.batch_size = 2
  return config_lib.resolve(config)


def _rates_are_positive(rates, keys):
  assert set(rates) == keys
  assert all(math.isfinite(r) and r > 0 for r in rates.values()), rates


def _source_video(path):
  with av.open(path, 'w') as container:
    stream = container.add_stream('mpeg4', rate=25)
    stream.height, stream.width, stream.pix_fmt = 48, 64, 'yuv420p'
    for i in range(30):
      image = np.full((48, 64, 3), 8 * i, np.uint8)
      container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format='rgb24')))
    container.mux(stream.encode())
  return path


def test_fake_shards_give_the_train_rate_and_the_decode_bound(tmp_path):
  directory = str(tmp_path / 'fake')
  table = data_timing.write_fake_data(directory, videos=8, frames=12, height=40, width=48)
  assert table == 'fake@4' and len(fileio.listdir(directory)) == 4
  config = _synthetic_config()
  data_timing.use_shards(config, os.path.join(directory, table))
  config.dataset_configs.num_classes = 10
  config = _tiny(config)
  host = {'host'} if config.dataset_configs.augment_on_device else set()
  _rates_are_positive(
    data_timing.measure(config, warmup=1, num_batches=2), {'train', 'decode'} | host
  )
  # Written once: a second call finds the shards and writes nothing.
  before = {n: fileio.size(os.path.join(directory, n)) for n in fileio.listdir(directory)}
  data_timing.write_fake_data(directory, videos=8, frames=12, height=40, width=48)
  assert before == {n: fileio.size(os.path.join(directory, n)) for n in fileio.listdir(directory)}


def test_looped_videos_and_their_tfrecords_time_alike(tmp_path):
  source = _source_video(str(tmp_path / 'source.mp4'))
  videos = str(tmp_path / 'videos')
  data_timing.write_videos(videos, [source], num_videos=2, seconds=0.8, short_side=32)
  lines = fileio.read_text(os.path.join(videos, 'train.csv')).splitlines()
  assert lines == ['video_path,label', 'class0/video000.mp4,class0', 'class1/video001.mp4,class1']
  config = _synthetic_config()
  data_timing.use_videos(config, videos)
  config = _tiny(config)
  _rates_are_positive(data_timing.measure(config, warmup=1, num_batches=1), {'train', 'decode'})

  shards = data_timing.convert_to_tfrecords(config, str(tmp_path / 'tfrecords'))
  assert len(shards) == 4 and all(fileio.exists(s) for s in shards)
  assert data_timing.disk_size(shards) > 0
  # The shards' label map gives the class count of a config pointed at them.
  shard_config = _synthetic_config()
  data_timing.use_shards(shard_config, os.path.join(str(tmp_path / 'tfrecords'), 'train@4'))
  assert shard_config.dataset_configs.num_classes == 2


def test_no_source_videos_is_one_clear_error(tmp_path):
  with pytest.raises(UserError, match='source videos'):
    data_timing.write_videos(str(tmp_path / 'videos'), [], num_videos=1, seconds=1.0)
  assert not os.path.exists(tmp_path / 'videos')

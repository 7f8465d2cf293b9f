"""A procedural video dataset whose classes are motions, for offline training.

Each clip shows one asymmetric shape (a bar with a knob) on a textured
background with a static distractor blob. The class is how the shape moves:

  0 move_right  1 move_left  2 move_down  3 move_up
  4 rotate_clockwise  5 rotate_counterclockwise  6 grow  7 shrink

Reversing time maps every class onto its partner (right <-> left, ...), so a
model that ignores frame order cannot tell the partners apart and scores at
most 50%. Colors, sizes, speeds, start positions and the distractor are
random.

The 'temporal_order' variant (`variant='temporal_order'`) tells classes apart
only by order: every clip shows three 8-frame segments, move_right, move_down
and rotate_clockwise, each drawn independently, and the class (6 of them) is
the order they are played in. Every class's clips are the same frames in
another order, so no single frame or tubelet, and no average over time, says
the class: the average-pool baseline is at chance (1/6) by construction.

Generation is deterministic given the seed and writes DMVR-format
shards `synthetic_<split>-0000i-of-0000N`, `label_map.txt` and, last,
`synthetic_info.json`, whose presence marks a complete dataset. `generate_mp4`
writes the same clips as H.264 mp4 files with a CSV index per split. The
output folder may be a URI (`gs://...`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import av
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from vivit_jax import fileio
from vivit_jax.data import records
from vivit_jax.data.sources import DataError

CLASS_NAMES = (
  'move_right',
  'move_left',
  'move_down',
  'move_up',
  'rotate_clockwise',
  'rotate_counterclockwise',
  'grow',
  'shrink',
)
# The 'temporal_order' variant: these three motions (indices into CLASS_NAMES)
# in each of their 6 orders.
ORDER_MOTIONS = (0, 2, 4)
_ORDERS = tuple(itertools.permutations(range(len(ORDER_MOTIONS))))
VARIANTS = ('motion', 'temporal_order')
PREFIX = 'synthetic_'
INFO_FILENAME = 'synthetic_info.json'
VERSION = 1
# split: (clips, shards); each split has its own random stream.
SPLITS = {'train': (4096, 8), 'validation': (512, 2), 'test': (512, 2)}
FPS = 25


def table(split: str) -> str:
  """The `dataset_configs.tables` entry of a synthetic split, e.g. 'synthetic_train@8'."""
  return f'{PREFIX}{split}@{SPLITS[split][1]}'


def class_names(variant: str = 'motion') -> tuple[str, ...]:
  """Class names of a variant, in label order."""
  if variant == 'motion':
    return CLASS_NAMES
  if variant == 'temporal_order':
    return tuple('_then_'.join(CLASS_NAMES[ORDER_MOTIONS[k]] for k in order) for order in _ORDERS)
  raise ValueError(f'dataset_configs.synthetic_variant is {variant!r}; expected one of {VARIANTS}.')


def segment_order(label: int) -> tuple[int, ...]:
  """The order (indices into ORDER_MOTIONS) of a 'temporal_order' class's segments."""
  return _ORDERS[label]


def _shape_mask(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """The object in its own coordinates: a bar with a knob on one end, above."""
  bar = (np.abs(u) < 1.0) & (np.abs(v) < 0.35)
  knob = (np.abs(u - 0.6) < 0.4) & (v > 0.3) & (v < 0.95)
  return bar | knob


def render_clip(
  label: int,
  rng: np.random.Generator,
  *,
  num_frames: int = 24,
  size: int = 32,
  variant: str = 'motion',
) -> np.ndarray:
  """One clip of class `label` of `variant`: u8[num_frames, size, size, 3]."""
  if variant == 'temporal_order':
    if num_frames % len(ORDER_MOTIONS):
      raise ValueError(f'temporal_order clips need num_frames divisible by 3, got {num_frames}.')
    # Drawn in one fixed order whatever the class, then played in the class's:
    # the same random draws give every class the same frames.
    length = num_frames // len(ORDER_MOTIONS)
    segments = [render_clip(m, rng, num_frames=length, size=size) for m in ORDER_MOTIONS]
    return np.concatenate([segments[k] for k in segment_order(label)])
  class_names(variant)  # Rejects an unknown variant.
  t = np.arange(num_frames, dtype=np.float32) - (num_frames - 1) / 2
  centre = rng.uniform(0.4, 0.6, 2) * size
  radius = np.full(num_frames, rng.uniform(0.16, 0.24) * size, np.float32)
  angle = np.full(num_frames, rng.uniform(0, 2 * np.pi), np.float32)
  position = np.tile(centre, (num_frames, 1))
  if label < 4:
    direction = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]][label], np.float32)
    speed = rng.uniform(0.45, 0.75) * size / 32
    position = centre + t[:, None] * speed * direction
  elif label < 6:
    spin = rng.uniform(0.12, 0.22) * (1 if label == 4 else -1)
    angle = angle + spin * t
  else:
    growth = rng.uniform(0.035, 0.05) * (1 if label == 6 else -1)
    radius = radius * np.exp(growth * t)
  grid = np.arange(size, dtype=np.float32) + 0.5
  y, x = grid[None, :, None], grid[None, None, :]
  dx = x - position[:, 0, None, None].astype(np.float32)
  dy = y - position[:, 1, None, None].astype(np.float32)
  c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
  inv_r = 1.0 / radius[:, None, None]
  # Screen y points down, so a growing angle turns the shape clockwise on screen.
  mask = _shape_mask((c * dx + s * dy) * inv_r, (c * dy - s * dx) * inv_r)
  blob_centre = rng.uniform(0.15, 0.85, 2) * size
  blob_radius = rng.uniform(0.06, 0.1) * size
  blob = (grid[:, None] - blob_centre[1]) ** 2 + (grid[None] - blob_centre[0]) ** 2 < blob_radius**2
  background = rng.uniform(0, 90, 3) + rng.normal(0, 12, (size, size, 1))
  background[blob] = rng.uniform(60, 200, 3)
  color = rng.uniform(140, 255, 3).astype(np.float32)
  frames = np.where(mask[..., None], color, background.astype(np.float32))
  frames += rng.standard_normal(frames.shape, dtype=np.float32) * 4
  return np.clip(np.round(frames), 0, 255).astype(np.uint8)


@tf.function
def _encode_all(frames: tf.Tensor) -> tf.Tensor:
  return tf.map_fn(
    lambda f: tf.io.encode_jpeg(f, quality=90), frames, fn_output_signature=tf.string
  )


def _rendered(
  split: str,
  seed: int,
  num_frames: int,
  size: int,
  limit: int | None = None,
  variant: str = 'motion',
) -> Iterator[tuple[int, int, np.ndarray]]:
  """(index, label, u8[num_frames, size, size, 3]) for every clip of `split`, in order.

  `limit` stops after that many clips: they are the first clips of the full split,
  since the labels are drawn for the whole split before any clip is rendered.
  """
  count, _ = SPLITS[split]
  split_seed = [seed, list(SPLITS).index(split)]
  rng = np.random.default_rng(split_seed)
  labels = rng.permutation(np.arange(count) % len(class_names(variant)))
  for i, label in enumerate(labels[:limit]):
    frames = render_clip(int(label), rng, num_frames=num_frames, size=size, variant=variant)
    yield i, int(label), frames


def _clips(
  split: str,
  seed: int,
  num_frames: int,
  size: int,
  limit: int | None = None,
  variant: str = 'motion',
) -> Iterator[tuple[int, bytes]]:
  names = class_names(variant)
  for i, label, frames in _rendered(split, seed, num_frames, size, limit, variant):
    jpegs = [bytes(j) for j in _encode_all(frames).numpy()]
    name = f'{PREFIX}{split}_{i:06d}'
    example = records.make_sequence_example(
      jpegs,
      [label],
      label_texts=[names[label]],
      filename=name,
      start_us=0,
      end_us=num_frames * 1_000_000 // FPS,
    )
    yield i, example.SerializeToString()


def generate(
  output_dir: str,
  *,
  seed: int = 0,
  num_frames: int = 24,
  size: int = 32,
  limit: int | None = None,
  variant: str = 'motion',
) -> None:
  """Writes the whole dataset of `variant` into `output_dir` (shards, label map, info).

  `limit` writes only the first `limit` clips of each split (a quick sample, the
  same clips as the full set); its info file says so, so `is_complete` is False.
  """
  names = class_names(variant)
  fileio.makedirs(output_dir)
  for split, (count, shards) in SPLITS.items():
    with contextlib.ExitStack() as stack:
      # Unwound last in, first out: each writer is closed before its file is
      # renamed (or uploaded) into place, or removed on an exception: no partial shard.
      writers = []
      for shard in range(shards):
        final = os.path.join(output_dir, f'{PREFIX}{split}-{shard:05d}-of-{shards:05d}')
        writers.append(tf.io.TFRecordWriter(stack.enter_context(fileio.atomic_path(final))))
        stack.callback(writers[-1].close)
      for i, serialized in _clips(split, seed, num_frames, size, limit, variant):
        writers[i % shards].write(serialized)
    written = min(count, limit or count)
    logging.info('Wrote %d synthetic %s clips to %s.', written, split, output_dir)
  records.write_label_map(os.path.join(output_dir, records.LABEL_MAP_FILENAME), names)
  info = _info(seed, num_frames, size, limit, variant)
  with fileio.atomic_write(os.path.join(output_dir, INFO_FILENAME)) as f:
    f.write(json.dumps(info, indent=1))


# H.264 settings of the mp4 format: crf 4 keeps the decoded pixels within about 3.6
# levels (mean) of the rendered ones; most of that is yuv420p's halved color
# resolution on 32x32 frames, which even crf 0 (3.4 levels) cannot avoid.
MP4_CODEC = 'libx264'
MP4_PIX_FMT = 'yuv420p'
MP4_CRF = 4
CSV_HEADER = ('video_path', 'label')


def video_path(split: str, index: int, name: str) -> str:
  """Where clip `index` (of class `name`) of `split` lies in the mp4 format."""
  return f'{split}/{name}/{index:05d}.mp4'


def write_mp4(path: str, frames: np.ndarray, fps: int = FPS) -> None:
  """Writes u8[T, H, W, 3] (H, W even) as H.264 mp4, atomically (`fileio.atomic_path`)."""
  with fileio.atomic_path(path) as tmp, av.open(tmp, 'w', format='mp4') as container:
    stream = container.add_stream(MP4_CODEC, rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = MP4_PIX_FMT
    stream.options = {'crf': str(MP4_CRF)}
    for frame in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
    container.mux(stream.encode())


def generate_mp4(
  output_dir: str,
  *,
  seed: int = 0,
  num_frames: int = 24,
  size: int = 32,
  limit: int | None = None,
  variant: str = 'motion',
) -> None:
  """Writes the same clips as `generate` as mp4 files with CSV indexes.

  Layout: `<split>/<class_name>/<index:05d>.mp4`, `<split>.csv` (header
  `video_path,label`, paths relative to `output_dir`, labels as class names) and
  `label_map.txt`. Each file is written to a temporary name and renamed, and each
  CSV only after all of its split's videos, so a CSV never lists a missing video.
  """
  names = class_names(variant)
  fileio.makedirs(output_dir)
  records.write_label_map(os.path.join(output_dir, records.LABEL_MAP_FILENAME), names)
  for split in SPLITS:
    # No folder per class made first: write_mp4 (`fileio.atomic_path`) makes a
    # local one, and a bucket has none (making its placeholders costs a request each).
    rows = [','.join(CSV_HEADER)]
    for i, label, frames in _rendered(split, seed, num_frames, size, limit, variant):
      relative = video_path(split, i, names[label])
      write_mp4(os.path.join(output_dir, relative), frames)
      rows.append(f'{relative},{names[label]}')
    with fileio.atomic_write(os.path.join(output_dir, f'{split}.csv')) as f:
      f.write('\n'.join(rows) + '\n')
    logging.info('Wrote %d synthetic %s videos to %s.', len(rows) - 1, split, output_dir)


def _info(
  seed: int, num_frames: int, size: int, limit: int | None = None, variant: str = 'motion'
) -> dict:
  info = {
    'version': VERSION,
    'seed': seed,
    'num_frames': num_frames,
    'size': size,
    'splits': {k: list(v) for k, v in SPLITS.items()},
  }
  if limit is not None:
    info['limit'] = limit
  if variant != 'motion':  # The default data's info (and so existing copies) is unchanged.
    info['variant'] = variant
  return info


def is_complete(
  output_dir: str,
  *,
  seed: int = 0,
  num_frames: int = 24,
  size: int = 32,
  limit: int | None = None,
  variant: str = 'motion',
) -> bool:
  """Whether `output_dir` holds the finished dataset (or `limit` sample) with these settings."""
  path = os.path.join(output_dir, INFO_FILENAME)
  if not fileio.exists(path):
    return False
  return fileio.read_json(path) == _info(seed, num_frames, size, limit, variant)


def generate_unless_complete(output_dir: str, **settings: Any) -> bool:
  """`generate(output_dir, **settings)` unless `is_complete` says the folder holds that data.

  The settings are given once, so the check and the write cannot disagree on them.

  Returns:
    True when the dataset was written now.
  """
  if is_complete(output_dir, **settings):
    return False
  generate(output_dir, **settings)
  return True


def ensure_synthetic(config: ml_collections.ConfigDict) -> bool:
  """Generates the synthetic dataset in `dataset_configs.base_dir` if it is missing.

  Only acts when `dataset_configs.generate_synthetic_if_missing` is set and the
  train table names the synthetic data (`synthetic_train@8`); a directory that
  holds something else is left alone.

  Returns:
    True when the dataset was generated now.
  """
  dc = config.dataset_configs
  # The split names of `tables` are the user's: a config may have no train split.
  if not dc.generate_synthetic_if_missing or 'train' not in dc.tables:
    return False
  if not str(dc.tables.train).startswith(PREFIX):
    return False
  if not dc.base_dir:
    raise DataError('Set dataset_configs.base_dir: where to write the synthetic dataset.')
  variant = dc.synthetic_variant
  class_names(variant)  # Rejects an unknown variant before anything is written.
  if is_complete(dc.base_dir, variant=variant):
    return False
  # Measured: 13-15 s for the generation alone on a 2-core CPU (see make_synthetic).
  logging.info(
    'Generating the synthetic %s dataset in %s (about 15 s on 2 CPU cores).', variant, dc.base_dir
  )
  start = time.perf_counter()
  generate(dc.base_dir, variant=variant)
  logging.info('Generated the synthetic dataset in %.1f s.', time.perf_counter() - start)
  return True

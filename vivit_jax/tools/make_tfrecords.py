r"""Converts videos listed in a CSV into DMVR-format TFRecord shards.

  python -m vivit_jax.tools.make_tfrecords --csv=train.csv --output_dir=data/k400 \
      [--video_root=/videos] [--fps=25] [--min_resize=256] [--num_shards=N] \
      [--label_map=label_map.txt] [--workers=K]

The CSV has a header with columns `video_path,label` and optionally `start,end`
(seconds). Videos are decoded with PyAV (no ffmpeg binary needed) by
`vivit_jax.data.video_io`, resampled to `--fps`, resized so the short side is
`--min_resize` (0 keeps the size) and written as `<csv name>-0000i-of-0000N`,
one JPEG per frame, with every key of the format (see
vivit_jax/data/records.py). Row j goes to shard j % N.

Class indices come from a label map: the sorted unique labels of the CSV,
written to `<output_dir>/label_map.txt`; pass that file with --label_map when
converting the other splits so they get the same indices. A video that cannot
be decoded is reported (file and reason) and skipped; a summary ends the run.
Shards are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections.abc import Sequence

from absl import flags

from vivit_jax.data.video_io import Row, decode_video, read_csv
from vivit_jax.tools import cli

FLAGS = flags.FLAGS
flags.DEFINE_string('csv', None, 'CSV with columns video_path,label[,start,end].')
flags.DEFINE_string('output_dir', None, 'Where to write the shards and label_map.txt.')
flags.DEFINE_string('video_root', '', 'Directory that relative video paths start from.')
flags.DEFINE_float('fps', 25.0, 'Frames per second written.')
flags.DEFINE_integer('min_resize', 256, 'Short side of the written frames (0: unchanged).')
flags.DEFINE_integer('num_shards', None, 'Number of shards (default: one per 512 videos).')
flags.DEFINE_string('label_map', None, 'Existing label map to reuse (one class a line).')
flags.DEFINE_integer('workers', None, 'Decoding processes (default: CPU count).')
flags.DEFINE_integer('jpeg_quality', 90, 'JPEG quality of the frames.')


def build_label_map(rows: Sequence[Row], label_map: str | None) -> list[str]:
  """The class names: `label_map`'s lines, else the sorted unique CSV labels."""
  from vivit_jax.data import records

  if label_map:
    names = records.read_label_map(label_map)
    unknown = sorted({r.label for r in rows} - set(names))
    if unknown:
      raise ValueError(f'Labels not in {label_map}: {unknown[:10]} ({len(unknown)} in all).')
    return names
  return sorted({r.label for r in rows})


def convert_row(job: tuple[int, Row, dict]) -> tuple[int, bytes | None, str]:
  """Worker: one CSV row -> (row index, serialized record or None, error)."""
  import tensorflow as tf

  from vivit_jax.data import records

  index, row, settings = job
  path = row.video_path
  if settings['video_root'] and not os.path.isabs(path):
    path = os.path.join(settings['video_root'], path)
  try:
    frames = decode_video(
      path, fps=settings['fps'], min_resize=settings['min_resize'], start=row.start, end=row.end
    )
  except Exception as e:  # noqa: BLE001 - any decoder failure skips this video.
    return index, None, f'{path}: {type(e).__name__}: {e}'
  quality = settings['jpeg_quality']
  jpegs = [tf.io.encode_jpeg(f, quality=quality).numpy() for f in frames]
  start = row.start or 0.0
  end = row.end if row.end is not None else start + len(frames) / settings['fps']
  example = records.make_sequence_example(
    jpegs,
    [settings['labels'][row.label]],
    label_texts=[row.label],
    filename=row.video_path,
    start_us=round(start * 1e6),
    end_us=round(end * 1e6),
  )
  return index, example.SerializeToString(), ''


def convert(
  rows: Sequence[Row],
  names: Sequence[str],
  output_dir: str,
  base_name: str,
  *,
  num_shards: int,
  workers: int,
  settings: dict,
  progress: bool = True,
) -> list[str]:
  """Writes the shards; returns the errors of skipped videos."""
  import tensorflow as tf
  import tqdm

  settings = {**settings, 'labels': {n: i for i, n in enumerate(names)}}
  os.makedirs(output_dir, exist_ok=True)
  finals = [
    os.path.join(output_dir, f'{base_name}-{s:05d}-of-{num_shards:05d}') for s in range(num_shards)
  ]
  temps = [f'{f}.incomplete' for f in finals]
  writers = [tf.io.TFRecordWriter(t) for t in temps]
  errors = []
  jobs = [(i, row, settings) for i, row in enumerate(rows)]
  bar = tqdm.tqdm(total=len(jobs), unit='video', disable=not progress)
  try:
    if workers > 1:
      pool = multiprocessing.get_context('spawn').Pool(workers)
      results = pool.imap(convert_row, jobs, chunksize=1)
    else:
      pool, results = None, map(convert_row, jobs)
    for index, serialized, error in results:
      if serialized is None:
        errors.append(error)
        tqdm.tqdm.write(f'Skipping {error}', file=sys.stderr)
      else:
        writers[index % num_shards].write(serialized)
      bar.update()
    if pool is not None:
      pool.close()
      pool.join()
  finally:
    bar.close()
    for w in writers:
      w.close()
  for temp, final in zip(temps, finals, strict=True):
    os.replace(temp, final)
  return errors


def main(argv: Sequence[str]) -> None:
  del argv
  from vivit_jax.data import records

  rows = read_csv(FLAGS.csv)
  names = build_label_map(rows, FLAGS.label_map)
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  records.write_label_map(os.path.join(FLAGS.output_dir, records.LABEL_MAP_FILENAME), names)
  num_shards = FLAGS.num_shards or max(1, math.ceil(len(rows) / 512))
  base_name = os.path.splitext(os.path.basename(FLAGS.csv))[0]
  settings = {
    'video_root': FLAGS.video_root,
    'fps': FLAGS.fps,
    'min_resize': FLAGS.min_resize,
    'jpeg_quality': FLAGS.jpeg_quality,
  }
  errors = convert(
    rows,
    names,
    FLAGS.output_dir,
    base_name,
    num_shards=num_shards,
    workers=FLAGS.workers or os.cpu_count() or 1,
    settings=settings,
  )
  print(
    f'Wrote {len(rows) - len(errors)} of {len(rows)} videos to {num_shards} shards '
    f'{base_name}-*-of-{num_shards:05d} in {FLAGS.output_dir} ({len(names)} classes); '
    f'skipped {len(errors)}.'
  )
  for error in errors:
    print(f'  skipped {error}')


if __name__ == '__main__':
  flags.mark_flags_as_required(['csv', 'output_dir'])
  cli.run(main)

"""Videos listed in a CSV -> DMVR-format TFRecord shards (what `make_tfrecords` runs).

Videos are decoded by `video_io` (resampled to a frame rate, short side
resized), their frames JPEG-encoded and written as one record per video
(`records.make_sequence_example`), row j to shard j % N. A video that cannot
be decoded is skipped and its error returned. The CSV, the videos and the
output folder may be URIs (`gs://...`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Sequence

import tensorflow as tf
import tqdm

from vivit_jax import fileio
from vivit_jax.data import records
from vivit_jax.data.sources import DataError
from vivit_jax.data.video_io import Row, decode_video


def build_label_map(rows: Sequence[Row], label_map: str | None) -> list[str]:
  """The class names: `label_map`'s lines, else the sorted unique CSV labels.

  Raises:
    DataError: a label of `rows` is not in `label_map`.
  """
  if label_map:
    names = records.read_label_map(label_map)
    unknown = sorted({r.label for r in rows} - set(names))
    if unknown:
      raise DataError(
        f'Labels not in {label_map}: {unknown[:10]} ({len(unknown)} in all). Every label of '
        'the CSV needs a line in the label map: add them, or give the label map of the data '
        'these videos belong to (--label_map).'
      )
    return names
  return sorted({r.label for r in rows})


def convert_row(job: tuple[int, Row, dict]) -> tuple[int, bytes | None, str]:
  """Worker: one CSV row -> (row index, serialized record or None, error)."""
  index, row, settings = job
  path = row.video_path
  if settings['video_root'] and not fileio.is_absolute(path):
    path = os.path.join(settings['video_root'], path)
  try:
    frames = decode_video(
      path, fps=settings['fps'], min_resize=settings['min_resize'], start=row.start, end=row.end
    )
  except Exception as e:  # noqa: BLE001 - any decoder failure skips this video.
    return index, None, f'{path}: {type(e).__name__}: {e}'
  quality = settings['jpeg_quality']
  jpegs = [records.encode_jpeg(f, quality) for f in frames]
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
  """Writes the shards; returns the errors of skipped videos.

  All shards appear together at the end: a failure (or an interrupt) leaves
  none of them, not even a partial one.
  """
  settings = {**settings, 'labels': {n: i for i, n in enumerate(names)}}
  fileio.makedirs(output_dir)
  finals = [
    os.path.join(output_dir, f'{base_name}-{s:05d}-of-{num_shards:05d}') for s in range(num_shards)
  ]
  errors = []
  jobs = [(i, row, settings) for i, row in enumerate(rows)]
  with contextlib.ExitStack() as stack:
    # Unwound last in, first out: each writer is closed before its file is
    # renamed (or, to a URI, uploaded) into place, or removed on an exception.
    writers = []
    for final in finals:
      writer = tf.io.TFRecordWriter(stack.enter_context(fileio.atomic_path(final)))
      stack.callback(writer.close)
      writers.append(writer)
    bar = stack.enter_context(tqdm.tqdm(total=len(jobs), unit='video', disable=not progress))
    if workers > 1:
      pool = stack.enter_context(multiprocessing.get_context('spawn').Pool(workers))
      results = pool.imap(convert_row, jobs, chunksize=1)
    else:
      results = map(convert_row, jobs)
    for index, serialized, error in results:
      if serialized is None:
        errors.append(error)
        tqdm.tqdm.write(f'Skipping {error}', file=sys.stderr)
      else:
        writers[index % num_shards].write(serialized)
      bar.update()
    if workers > 1:
      pool.close()
      pool.join()
  return errors

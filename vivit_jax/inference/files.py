"""Many video files through a VideoClassifier: expansion, batching, tables, JSON lines."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TextIO

from tqdm import tqdm

from vivit_jax import fileio
from vivit_jax.data import video_io
from vivit_jax.data.sources import DataError

VIDEO_EXTENSIONS = ('.mp4', '.m4v', '.mov', '.avi', '.mkv', '.webm', '.mpg', '.mpeg', '.wmv')


def expand(paths: Sequence[str]) -> list[str]:
  """Files as given; directories replaced by their videos, sorted, recursively.

  A folder that holds frames (`video_io.FRAME_EXTENSIONS`) is one video, before
  the videos in it and below it.

  Raises:
    DataError: a directory holds no video and no frames anywhere under it.
  """
  out = []
  for path in paths:
    if not fileio.isdir(path):
      out.append(path)
      continue
    found = []
    # Sorting the folders by their parts is the order of a top-down walk with sorted children.
    for root, _, files in sorted(fileio.walk(path), key=lambda entry: entry[0].split('/')):
      if any(video_io.is_frame_file(f) for f in files):
        found.append(root)
      found += [
        os.path.join(root, f) for f in sorted(files) if f.lower().endswith(VIDEO_EXTENSIONS)
      ]
    if not found:  # Dropped, it would not even count among the videos not read.
      raise DataError(
        f'{path} holds no videos: no video file ({", ".join(VIDEO_EXTENSIONS)}) and no '
        f'frames ({", ".join(sorted(video_io.FRAME_EXTENSIONS))}) anywhere under it. Give '
        'video files, folders of them, or folders of frames.'
      )
    out += found
  return out


def format_table(path: str, record: dict) -> str:
  """A video's top-k classes as a small text table."""
  note = ', looped: shorter than one clip' if record['looped'] else ''
  lines = [f'{path}  ({record["num_frames"]} frames{note})']
  heads = record['top_k']
  heads = heads if isinstance(heads, dict) else {'': heads}
  for head, rows in heads.items():
    if head:
      lines.append(f'  [{head}]')
    width = max([len(r['label']) for r in rows] + [5])
    lines.append(f'  {"rank":>4}  {"label":<{width}}  {"prob":>7}')
    for rank, row in enumerate(rows, 1):
      lines.append(f'  {rank:>4}  {row["label"]:<{width}}  {row["score"]:7.4f}')
  return '\n'.join(lines)


def _decoded(
  classifier, paths: Sequence[str], errors: list[tuple[str, str]]
) -> Iterator[tuple[str, object]]:
  """(path, views) of every readable file; failures are appended to `errors`."""
  for path in paths:
    try:
      frames = classifier.decode(path)
    except Exception as e:  # noqa: BLE001 - any decoder failure skips this file.
      errors.append((path, f'cannot read the video ({type(e).__name__}: {e})'))
      continue
    try:
      views = classifier.views(frames)
    except Exception as e:  # noqa: BLE001 - the video was read: the settings do not fit it.
      dc = classifier.config.dataset_configs
      reason = str(e).strip().splitlines()[0] if str(e).strip() else ''
      errors.append(
        (
          path,
          f'was read ({len(frames)} frames of {frames.shape[2]}x{frames.shape[1]} pixels) but '
          f'its views cannot be cut with dataset_configs.crop_size={dc.crop_size} and '
          f'min_resize={dc.min_resize} of the config ({type(e).__name__}: {reason})',
        )
      )
      continue
    yield path, views


def predict_files(
  classifier,
  paths: Sequence[str],
  *,
  top_k: int = 5,
  batch_size: int = 4,
  output: str | None = None,
  out: TextIO = sys.stdout,
  err: TextIO = sys.stderr,
  progress: bool = True,
) -> int:
  """Predicts every file, prints tables, writes JSON lines; returns the number of failures.

  Batches are padded to `batch_size` views so that one compiled step serves all.
  `output` appears only once every file is done (an interruption leaves no part
  of it); an unreadable file is a line with its error, not a failure of the run.
  """
  errors: list[tuple[str, str]] = []
  with contextlib.ExitStack() as stack:
    sink = stack.enter_context(fileio.atomic_write(output)) if output else None
    bar = stack.enter_context(tqdm(total=len(paths), unit='video', file=err, disable=not progress))
    batch: list = []
    failed = 0
    stream = _decoded(classifier, paths, errors)
    while True:
      item = next(stream, None)
      for path, message in errors[failed:]:
        bar.write(f'ERROR: {path}: {message}', file=err)
      bar.update(len(errors) - failed)
      failed = len(errors)
      if item is not None:
        batch.append(item)
      if batch and (item is None or len(batch) == batch_size):
        views = [v for _, v in batch]
        padded = views + [views[0]] * (batch_size - len(views))
        predictions = classifier.predict_views(padded)[: len(views)]
        for (path, _), pred in zip(batch, predictions, strict=True):
          heads = classifier.top_k(pred.scores, top_k)
          record = {
            'video': path,
            'num_frames': pred.num_frames,
            'looped': pred.looped,
            'top_k': heads if len(heads) > 1 else next(iter(heads.values())),
          }
          if pred.looped:
            bar.write(f'Note: {path} is shorter than one clip; its frames were looped.', file=err)
          bar.write(format_table(path, record), file=out)
          if sink:
            sink.write(json.dumps(record) + '\n')
        bar.update(len(batch))
        batch = []
      if item is None:
        break
    if sink:
      for path, message in errors:
        sink.write(json.dumps({'video': path, 'error': message}) + '\n')
  if errors:
    names = ', '.join(path for path, _ in errors)
    print(f'{len(errors)} of {len(paths)} videos could not be read: {names}', file=err)
  return len(errors)

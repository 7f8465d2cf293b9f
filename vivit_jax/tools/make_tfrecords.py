r"""Converts videos listed in a CSV into DMVR-format TFRecord shards.

  python -m vivit_jax.tools.make_tfrecords --csv=train.csv --output_dir=data/k400 \
      [--video_root=/videos] [--fps=25] [--min_resize=256] [--num_shards=N] \
      [--label_map=label_map.txt] [--workers=K]

The CSV has a header with columns `video_path,label` and optionally `start,end`
(seconds). Videos are decoded with PyAV (no ffmpeg binary needed) by
`vivit_jax.data.video_io` (vivit_jax/data/conversion.py does the work), resampled to
`--fps`, resized so the short side is
`--min_resize` (0 keeps the size) and written as `<csv name>-0000i-of-0000N`,
one JPEG per frame, with every key of the format (see
vivit_jax/data/records.py). Row j goes to shard j % N.

Class indices come from a label map: the sorted unique labels of the CSV,
written to `<output_dir>/label_map.txt`; pass that file with --label_map when
converting the other splits so they get the same indices. A video that cannot
be decoded is reported (file and reason) and skipped; a summary ends the run.
Shards are written under temporary names and renamed together when all are
complete, so a failed run leaves none. Every path may be a URI (`gs://...`):
the CSV, the videos, --video_root, --label_map and --output_dir (where each
shard is uploaded once complete).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from absl import flags

from vivit_jax import fileio
from vivit_jax.data import records
from vivit_jax.data.conversion import build_label_map, convert
from vivit_jax.data.sources import DataError
from vivit_jax.data.video_io import Row, read_csv
from vivit_jax.errors import MissingFileError
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


def _rows(path: str) -> list[Row]:
  """The CSV's rows; a missing file, a directory or a bad row ends the command in one line."""
  columns = 'the columns video_path,label[,start,end], one row per video (docs/data.md)'
  if fileio.isdir(path):
    raise DataError(
      f'--csv={path} is a directory: give the CSV file that lists the videos, with {columns}.'
    )
  if not fileio.exists(path):
    raise MissingFileError(
      f'--csv={path} does not exist (looked for {fileio.absolute(path)}). Give a CSV with '
      f'{columns}.'
    )
  try:
    rows = read_csv(path)
  except (ValueError, UnicodeDecodeError) as e:
    raise DataError(f'Bad --csv: {e} It needs {columns}.') from None
  if not rows:
    raise DataError(f'--csv={path} lists no videos: it needs {columns}.')
  return rows


def main(argv: Sequence[str]) -> None:
  del argv
  rows = _rows(FLAGS.csv)
  if FLAGS.label_map and not fileio.isfile(FLAGS.label_map):
    raise MissingFileError(
      f'--label_map={FLAGS.label_map} is not a file. Give the label_map.txt that converting '
      'the train split wrote, or leave --label_map out to number the labels of this CSV.'
    )
  cli.check_writable('output_dir', FLAGS.output_dir, directory=True)
  names = build_label_map(rows, FLAGS.label_map)
  fileio.makedirs(FLAGS.output_dir)
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

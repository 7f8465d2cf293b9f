r"""Classifies video files with a trained ViViT, as the test split is evaluated.

  python -m vivit_jax.tools.predict --config=configs/k400_fe.py --checkpoint=/tmp/workdir \
      [--label_map=label_map.txt] [--top_k=5] [--output=preds.jsonl] [--batch_size=4] \
      VIDEO [VIDEO | DIR ...]

Each video is decoded with PyAV at `dataset_configs.fps` (short side
`min_resize`, as make_tfrecords writes the data), cut into the multi-view test
views (`num_test_clips` windows x 1 or 3 crops) by the evaluation pipeline and
scored by the trainer's multi-view step; a table of the top-k classes is
printed per video. Directories are searched recursively for video files; a
folder that holds JPEG or PNG frames is one video (its frames in name order, at
`dataset_configs.frame_folder_fps`, default `fps`), and a directory with neither
is an error. A file that cannot be read is reported and skipped, and the exit status is 1 at
the end; a video shorter than a clip is looped, and a note says so.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import app, flags
from ml_collections import config_flags

from vivit_jax.inference import VideoClassifier, files
from vivit_jax.tools import cli

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Workdir, Orbax step dir or msgpack file.')
_STEP = flags.DEFINE_integer('step', None, 'Step of a training workdir; default: the latest.')
_LABEL_MAP = flags.DEFINE_string('label_map', None, 'Class names, one a line.')
_TOP_K = flags.DEFINE_integer('top_k', 5, 'Classes shown per video.')
_OUTPUT = flags.DEFINE_string('output', None, 'Write one JSON line per video here.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 4, 'Videos per forward pass.')
_JPEG_QUALITY = flags.DEFINE_integer(
  'jpeg_quality',
  None,
  'JPEG-encode frames as make_tfrecords does (90) instead of lossless.',
)
flags.mark_flags_as_required([_CONFIG, _CHECKPOINT])


def main(argv: Sequence[str]) -> None:
  paths = files.expand(argv[1:])
  if not paths:
    raise app.UsageError('Give at least one video file or directory.')
  if _OUTPUT.value:
    cli.check_writable('output', _OUTPUT.value, directory=False)
  classifier = VideoClassifier.from_checkpoint(
    _CONFIG.value,
    _CHECKPOINT.value,
    label_map=_LABEL_MAP.value,
    jpeg_quality=_JPEG_QUALITY.value,
    step=_STEP.value,
  )
  failures = files.predict_files(
    classifier, paths, top_k=_TOP_K.value, batch_size=_BATCH_SIZE.value, output=_OUTPUT.value
  )
  sys.exit(1 if failures else 0)


if __name__ == '__main__':
  cli.run(main)

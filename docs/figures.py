r"""Regenerates the pictures of docs/ from a `configs/synthetic.py` training workdir.

  python docs/figures.py --workdir=workdirs/synthetic

writes docs/attention.png (`visualize` on the first synthetic test video),
docs/confusion_matrix.png (the last test confusion matrix, as TensorBoard shows
it: read from the `test/` run's event file). docs/tensorboard.png is a screenshot
of TensorBoard itself serving that workdir (`tensorboard --logdir WORKDIR`), taken
with headless Chromium:

  chromium --headless --disable-webgl --window-size=1400,900 \
    --virtual-time-budget=20000 --screenshot=docs/tensorboard.png \
    'http://localhost:6006/?tagFilter=%5E(top1%7Closs)%24#timeseries'

(`--disable-webgl` makes TensorBoard draw its charts without a GPU.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np
from absl import app, flags

_WORKDIR = flags.DEFINE_string('workdir', 'workdirs/synthetic', 'A configs/synthetic.py workdir.')
_CONFIG = flags.DEFINE_string('config', 'configs/synthetic.py', 'The config it was trained with.')
_OUT = flags.DEFINE_string('out', 'docs', 'Where to write the PNG files.')

_SPLITS = ('train', 'validation', 'test')


def _events(run_dir: str):
  import tensorflow as tf

  for name in sorted(os.listdir(run_dir)):
    if name.startswith('events.out.tfevents'):
      yield from tf.compat.v1.train.summary_iterator(os.path.join(run_dir, name))


def _last_image(run_dir: str, tag: str) -> bytes:
  import tensorflow as tf

  last = None
  for event in _events(run_dir):
    for value in event.summary.value:
      if value.tag == tag:
        last = tf.make_ndarray(value.tensor)[2]  # [width, height, png]
  if last is None:
    raise ValueError(f'No {tag!r} image in {run_dir}.')
  return bytes(last)


def main(argv: Sequence[str]) -> None:
  del argv
  from PIL import Image

  from vivit_jax.data import synthetic
  from vivit_jax.inference import VideoClassifier
  from vivit_jax.inference.heatmap import attention_image

  workdir = _WORKDIR.value
  with open(os.path.join(_OUT.value, 'confusion_matrix.png'), 'wb') as f:
    f.write(_last_image(os.path.join(workdir, 'test'), 'confusion_matrix'))
  classifier = VideoClassifier.from_checkpoint(_CONFIG.value, os.path.abspath(workdir))
  with tempfile.TemporaryDirectory() as videos:
    synthetic.generate_mp4(videos, limit=1)
    with open(os.path.join(videos, 'test.csv')) as f:
      name = f.read().splitlines()[1].split(',')[0]  # the first test video
    frames = classifier.decode(os.path.join(videos, name))
  image = attention_image(classifier, frames, title=name)
  Image.fromarray(np.asarray(image)).save(os.path.join(_OUT.value, 'attention.png'))
  print(f'Wrote confusion_matrix.png and attention.png to {_OUT.value}.')


if __name__ == '__main__':
  app.run(main)

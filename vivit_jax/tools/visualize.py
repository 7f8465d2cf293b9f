r"""Draws where a ViViT looks: attention-rollout heatmaps over a video's frames.

  python -m vivit_jax.tools.visualize --config=configs/k400_fe.py --checkpoint=/tmp/workdir \
      VIDEO --out=attention.png [--scale=2]

The video is decoded and preprocessed as by `predict`, and its centre clip
(the evaluation view) is shown: the top row holds the T input frames, the
bottom row the same frames under the rollout heatmap of the token time step
each frame belongs to (Model 1 and the factorised encoder, Model 2). The
image is 2*S*scale pixels high and T*S*scale wide (S = crop_size).
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Workdir, Orbax step dir or msgpack file.')
_OUT = flags.DEFINE_string('out', 'attention.png', 'Image to write.')
_SCALE = flags.DEFINE_integer('scale', 1, 'Pixels per input pixel in the image.')


def main(argv: Sequence[str]) -> None:
  for flag, value in (('--config', _CONFIG.value), ('--checkpoint', _CHECKPOINT.value)):
    if not value:
      raise app.UsageError(f'{flag} is required.')
  if len(argv) != 2:
    raise app.UsageError('Give exactly one video.')
  from PIL import Image

  from vivit_jax.inference import VideoClassifier
  from vivit_jax.inference.heatmap import attention_image

  classifier = VideoClassifier.from_checkpoint(_CONFIG.value, _CHECKPOINT.value)
  image = attention_image(classifier, classifier.decode(argv[1]), _SCALE.value)
  Image.fromarray(image).save(_OUT.value)
  print(f'Wrote {_OUT.value} ({image.shape[1]}x{image.shape[0]})')


if __name__ == '__main__':
  app.run(main)

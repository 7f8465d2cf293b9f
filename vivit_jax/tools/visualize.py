r"""Draws where a ViViT looks: attention-rollout heatmaps over a video's frames.

  python -m vivit_jax.tools.visualize --config=configs/k400_fe.py --checkpoint=/tmp/workdir \
      VIDEO --out=attention.png [--scale=2]

The video is decoded and preprocessed as by `predict`, and its centre clip
(the evaluation view) is shown (Model 1 and the factorised encoder, Model 2):
the T input frames with their index in the video and time in seconds; the same
frames under the rollout heatmap of the token time step each frame belongs to,
on one color scale for the whole clip (color bar on the right); a bar chart
of each time step's share of the attention; and, in the title, the class that
`predict` gives the video and its probability. `--scale` multiplies the
resolution (default: about 90 pixels a frame).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import app, flags
from ml_collections import config_flags
from PIL import Image

from vivit_jax import fileio
from vivit_jax.errors import UserError
from vivit_jax.inference import VideoClassifier
from vivit_jax.inference.heatmap import attention_image
from vivit_jax.tools import cli

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Workdir, Orbax step dir or msgpack file.')
_STEP = flags.DEFINE_integer('step', None, 'Step of a training workdir; default: the latest.')
_OUT = flags.DEFINE_string('out', 'attention.png', 'Image to write.')
_SCALE = flags.DEFINE_integer('scale', 1, 'Resolution multiplier of the figure.', lower_bound=1)
flags.mark_flags_as_required([_CONFIG, _CHECKPOINT])


def main(argv: Sequence[str]) -> None:
  if len(argv) != 2:
    raise app.UsageError('Give exactly one video.')
  image_format = Image.registered_extensions().get(os.path.splitext(_OUT.value)[1].lower())
  if image_format is None:
    raise UserError(f'--out={_OUT.value} has no image extension PIL knows: use .png or .jpg.')
  cli.check_writable('out', _OUT.value, directory=False)
  classifier = VideoClassifier.from_checkpoint(_CONFIG.value, _CHECKPOINT.value, step=_STEP.value)
  frames = classifier.decode(argv[1])
  image = attention_image(classifier, frames, _SCALE.value, title=os.path.basename(argv[1]))
  with fileio.atomic_write(_OUT.value, 'wb') as f:
    Image.fromarray(image).save(f, format=image_format)
  print(f'Wrote {_OUT.value} ({image.shape[1]}x{image.shape[0]})')


if __name__ == '__main__':
  cli.run(main)

r"""Saves one batch as an image grid (examples by frames) with labels.

  python -m vivit_jax.tools.inspect_data --config=configs/synthetic.py \
      --split=train --out=batch.png

Rows are examples, columns are frames (evenly subsampled to --max_frames);
the label names (or indices) are printed left of each row. For the test split
the first view of each video is shown. What you see is what the model gets,
after augmentation, mapped back from [-1, 1] or [0, 1] to pixels. --out may be
a URI (`gs://...`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags
from PIL import Image, ImageDraw

from vivit_jax import config as config_lib
from vivit_jax import fileio
from vivit_jax.data import build_dataset
from vivit_jax.tools import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=False)
flags.DEFINE_enum('split', 'train', ['train', 'validation', 'test'], 'Split to show.')
flags.DEFINE_string('out', 'batch.png', 'PNG file to write.')
flags.DEFINE_integer('max_examples', 8, 'Rows (examples) at most.')
flags.DEFINE_integer('max_frames', 8, 'Columns (frames) at most.')

LABEL_WIDTH = 160


def to_pixels(inputs: np.ndarray, zero_centering: bool) -> np.ndarray:
  """f32[..., 3] model inputs -> u8 pixels."""
  unit = (inputs + 1.0) / 2.0 if zero_centering else inputs
  return np.clip(np.round(unit * 255.0), 0, 255).astype(np.uint8)


def label_text(target: np.ndarray, names: Sequence[str] | None) -> str:
  """Names (or indices) of the classes set in a target vector f32[C]."""
  active = np.nonzero(target > 0.5)[0]
  return ', '.join(names[i] if names else str(i) for i in active) or '(none)'


def grid(clips: np.ndarray, texts: Sequence[str], max_frames: int) -> np.ndarray:
  """u8[N,T,H,W,3] -> one u8 image with a label margin; frames spaced 2 px apart."""
  n, t, h, w, _ = clips.shape
  columns = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(int))
  pad = 2
  image = np.full(
    (n * (h + pad) + pad, LABEL_WIDTH + len(columns) * (w + pad) + pad, 3), 255, np.uint8
  )
  for row in range(n):
    for col, frame in enumerate(columns):
      y, x = pad + row * (h + pad), LABEL_WIDTH + pad + col * (w + pad)
      image[y : y + h, x : x + w] = clips[row, frame]
  canvas = Image.fromarray(image)
  draw = ImageDraw.Draw(canvas)
  for row, text in enumerate(texts):
    draw.text((4, pad + row * (h + pad) + h // 2 - 6), text[:26], fill=(0, 0, 0))
  return np.asarray(canvas)


def main(argv: Sequence[str]) -> None:
  del argv
  config = config_lib.resolve(FLAGS.config)
  ds = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  it = {'train': ds.train_iter, 'validation': ds.eval_iter, 'test': ds.test_iter}[FLAGS.split]()
  batch = next(iter(it))
  if FLAGS.split == 'train' and ds.meta.device_augment is not None:
    # What the train step makes of the uint8 batch (augment_on_device).
    batch['inputs'] = np.asarray(ds.meta.device_augment.host_batch_inputs(batch, jax.random.key(0)))
  inputs = batch['inputs'].reshape(-1, *batch['inputs'].shape[2:])
  if FLAGS.split == 'test':
    inputs = inputs[:, 0]
  labels = batch['label'].reshape(-1, batch['label'].shape[-1])
  keep = batch['batch_mask'].reshape(-1) > 0
  inputs, labels = inputs[keep][: FLAGS.max_examples], labels[keep][: FLAGS.max_examples]
  names = ds.meta.label_names
  texts = [label_text(lab, names) for lab in labels]
  pixels = to_pixels(inputs, config.dataset_configs.zero_centering)
  # A file object carries no name, so the format comes from the ending here.
  image_format = Image.registered_extensions().get(os.path.splitext(FLAGS.out)[1].lower(), 'PNG')
  with fileio.atomic_write(FLAGS.out, 'wb') as f:
    Image.fromarray(grid(pixels, texts, FLAGS.max_frames)).save(f, format=image_format)
  print(f'Wrote {len(texts)} {FLAGS.split} examples to {FLAGS.out}: {texts}')


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  cli.run(main)

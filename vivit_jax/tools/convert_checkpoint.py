r"""Converts a pretrained checkpoint into the params of a config's model.

Reads a ViT .npz (vision_transformer or big_vision), a Scenic msgpack train
state or an HF ViViT directory, applies the surgery of `config.init_from`,
prints what happened to every parameter (copied, adapted how, new, dropped)
and writes `OUTPUT/checkpoint`: a Flax msgpack file holding {'params': ...}
(Scenic's format, so `init_from.checkpoint_path=OUTPUT` and Scenic read it).
With --to=huggingface, a Model 1 is written as an HF ViViT directory instead.

  python -m vivit_jax.tools.convert_checkpoint --config=configs/k400_spacetime.py \
      --checkpoint=ViT-B_16.npz --output=/tmp/vivit_b_init
  python -m vivit_jax.tools.convert_checkpoint --config=configs/k400_spacetime.py \
      --checkpoint=/tmp/workdir_export --format=scenic --to=huggingface --output=/tmp/hf
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from vivit_jax import config as config_lib
from vivit_jax.checkpoints import formats, huggingface, load, surgery
from vivit_jax.models import build_model, input_shape

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Pretrained checkpoint (file or directory).')
_FORMAT = flags.DEFINE_enum('format', None, list(formats.FORMATS), 'Detected when omitted.')
_OUTPUT = flags.DEFINE_string('output', None, 'Output directory.')
_TO = flags.DEFINE_enum('to', 'scenic', ['scenic', 'huggingface'], 'Output layout.')


def convert_checkpoint(
  config: ml_collections.ConfigDict,
  checkpoint: str,
  output: str,
  *,
  checkpoint_format: str | None = None,
  to: str = 'scenic',
) -> str:
  """Converts `checkpoint` for `config`'s model and writes it under `output`.

  Parameters the checkpoint lacks are initialised as the trainer would
  (`config.rng_seed`).

  Returns:
    The report, one line per parameter, ending with the path written.
  """
  config = config_lib.resolve(config)
  config.init_from.checkpoint_path = checkpoint
  config.init_from.checkpoint_format = checkpoint_format
  module = build_model(config)
  video = np.zeros((1,) + input_shape(config), np.float32)
  init = jax.jit(lambda key: module.init(key, video, train=False))
  params = jax.device_get(init(jax.random.key(config.rng_seed))['params'])
  params, entries = load.convert(config, params)
  flat = formats.flatten(params)
  if to == 'huggingface':
    huggingface.write(output, flat, config, surgery.num_classes_of(flat))
    written = output
  else:
    written = os.path.join(output, 'checkpoint')
    formats.write_scenic(written, params)
  return f'{surgery.format_report(entries)}\nWrote {written}'


def main(argv: list[str]) -> None:
  del argv
  for flag, value in (
    ('--config', _CONFIG.value),
    ('--checkpoint', _CHECKPOINT.value),
    ('--output', _OUTPUT.value),
  ):
    if not value:
      raise app.UsageError(f'{flag} is required.')
  print(
    convert_checkpoint(
      _CONFIG.value, _CHECKPOINT.value, _OUTPUT.value, checkpoint_format=_FORMAT.value, to=_TO.value
    )
  )


if __name__ == '__main__':
  app.run(main)

r"""Converts a pretrained checkpoint into the params of a config's model.

Reads a ViT .npz (vision_transformer or big_vision), a Scenic msgpack train
state or an HF ViViT directory, applies the surgery of `config.init_from`,
prints what happened to every parameter (copied, adapted how, new, dropped)
and writes `OUTPUT/checkpoint`: a Flax msgpack file holding {'params': ...}
(Scenic's format, so `init_from.checkpoint_path=OUTPUT` and Scenic read it).
With --to=huggingface, a Model 1 is written as an HF ViViT directory instead.
A training workdir (`--checkpoint=WORKDIR`, its latest step or `--step`) is
written unchanged once its params are checked to be the config's model; HF
export then carries the label names of the workdir's or dataset's label map.

  python -m vivit_jax.tools.convert_checkpoint --config=configs/k400_spacetime.py \
      --checkpoint=ViT-B_16.npz --output=/tmp/vivit_b_init
  python -m vivit_jax.tools.convert_checkpoint --config=configs/synthetic.py \
      --config.model.classifier=token --checkpoint=workdirs/token --to=huggingface \
      --output=/tmp/hf
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from vivit_jax.checkpoints import formats
from vivit_jax.inference.convert import convert_checkpoint
from vivit_jax.tools import cli

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Pretrained checkpoint (file or directory).')
_FORMAT = flags.DEFINE_enum('format', None, list(formats.FORMATS), 'Detected when omitted.')
_OUTPUT = flags.DEFINE_string('output', None, 'Output directory.')
_TO = flags.DEFINE_enum('to', 'scenic', ['scenic', 'huggingface'], 'Output layout.')
_STEP = flags.DEFINE_integer('step', None, 'Step of a training workdir; default: the latest.')
_LABEL_MAP = flags.DEFINE_string(
  'label_map',
  None,
  "Class names, one a line; default: the workdir's or dataset's label_map.txt.",
)
flags.mark_flags_as_required([_CONFIG, _CHECKPOINT, _OUTPUT])


def main(argv: list[str]) -> None:
  del argv
  print(
    convert_checkpoint(
      _CONFIG.value,
      _CHECKPOINT.value,
      _OUTPUT.value,
      checkpoint_format=_FORMAT.value,
      to=_TO.value,
      step=_STEP.value,
      label_map=_LABEL_MAP.value,
    )
  )


if __name__ == '__main__':
  cli.run(main)

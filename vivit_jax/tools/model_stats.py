r"""Prints parameters and GFLOPs of a config's model, next to the paper's Table 2.

GFLOPs are multiply-adds of one view's forward pass at the config's input size
(XLA's flop count / 2), the convention of the paper. Nothing is allocated: the
parameters are abstract and the program is only compiled.

  python -m vivit_jax.tools.model_stats --config=configs/k400_fe.py
  python -m vivit_jax.tools.model_stats --config=configs/k400_fe.py \
      --config.dataset_configs.num_frames=16
  python -m vivit_jax.tools.model_stats --all        # every config in configs/
"""

from __future__ import annotations

import dataclasses
import glob
import os

from absl import app, flags, logging
from ml_collections import config_flags

from vivit_jax.config import load_config_file
from vivit_jax.models import build_model, input_shape
from vivit_jax.models import stats as stats_lib

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_ALL = flags.DEFINE_bool('all', False, 'Report every config in --configs_dir.')
_CONFIGS_DIR = flags.DEFINE_string('configs_dir', 'configs', 'Where --all looks.')

# The paper's figures for the configs that reproduce them: (params M, GFLOPs).
# Table 2 (ViViT-B/16x2, 32 frames, 224) and section 4.3 (ViViT-L).
PAPER = {
  'k400_spacetime': (88.9, 455.2),
  'k400_fe': (115.1, 284.4),
  'k400_fsa': (117.3, 372.3),
  'k400_fdp': (88.9, 277.1),
  'k400_fe_baseline': (86.7, 283.9),
  'k400_spacetime_large': (None, 1446.0),
  'k400_fe_large': (None, 995.3),
}


@dataclasses.dataclass
class ModelStats:
  name: str
  attention_type: str
  input_shape: tuple[int, ...]
  params_m: float
  gflops: float

  def row(self) -> str:
    paper_params, paper_gflops = PAPER.get(self.name, (None, None))
    fmt = lambda v, spec: '' if v is None else format(v, spec)
    gflops_delta = '' if paper_gflops is None else f'{100 * (self.gflops / paper_gflops - 1):+.2f}%'
    shape = 'x'.join(map(str, self.input_shape[:3]))
    return (
      f'| {self.name} | {self.attention_type} | {shape} | {self.params_m:.1f} | '
      f'{fmt(paper_params, ".1f")} | {self.gflops:.1f} | {fmt(paper_gflops, ".1f")} | '
      f'{gflops_delta} |'
    )


HEADER = (
  '| config | attention | input (TxHxW) | params (M) | paper params (M) | GFLOPs | '
  'paper GFLOPs | GFLOPs vs paper |\n|---|---|---|---|---|---|---|---|'
)


def model_stats(config, name: str) -> ModelStats:
  """Parameters (millions) and GFLOPs of one view of the config's model."""
  module = build_model(config)
  shape = input_shape(config)
  params = stats_lib.abstract_params(module, shape)
  return ModelStats(
    name=name,
    attention_type=config.model.attention_config.type,
    input_shape=shape,
    params_m=stats_lib.count_params(params) / 1e6,
    gflops=stats_lib.forward_gflops(module, params, shape),
  )


def main(argv):
  del argv
  if _ALL.value:
    paths = sorted(glob.glob(os.path.join(_CONFIGS_DIR.value, '*.py')))
    configs = [
      (os.path.splitext(os.path.basename(p))[0], p)
      for p in paths
      if not os.path.basename(p).startswith(('_', 'common'))
    ]
    entries = [(name, load_config_file(path)) for name, path in configs]
  elif _CONFIG.value is not None:
    name = os.path.splitext(os.path.basename(flags.FLAGS['config'].config_filename))[0]
    entries = [(name, _CONFIG.value)]
  else:
    raise app.UsageError('Pass --config=configs/NAME.py or --all.')
  print(HEADER)
  for name, config in entries:
    logging.info('Compiling the forward pass of %s', name)
    print(model_stats(config, name).row(), flush=True)


if __name__ == '__main__':
  app.run(main)

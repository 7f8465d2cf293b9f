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

import glob
import os

from absl import app, flags, logging
from ml_collections import config_flags

from vivit_jax.config import load_config_file
from vivit_jax.models.stats import HEADER, model_stats
from vivit_jax.tools import cli

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_ALL = flags.DEFINE_bool('all', False, 'Report every config in --configs_dir.')
_CONFIGS_DIR = flags.DEFINE_string('configs_dir', 'configs', 'Where --all looks.')


def main(argv):
  del argv
  if _ALL.value:
    paths = sorted(glob.glob(os.path.join(_CONFIGS_DIR.value, '*.py')))
    configs = [
      (os.path.splitext(os.path.basename(p))[0], p)
      for p in paths
      if not os.path.basename(p).startswith('_')
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
  cli.run(main)

r"""Writes the synthetic motion dataset (see vivit_jax/data/synthetic.py).

  python -m vivit_jax.tools.make_synthetic --output_dir=data/synthetic [--seed=0]
  python -m vivit_jax.tools.make_synthetic --output_dir=data/synthetic_temporal_order \
      --variant=temporal_order

8 motion classes, 4096 / 512 / 512 train / validation / test clips of 24
frames of 32x32, in DMVR format with label_map.txt. Deterministic by seed;
about 15 s on 2 cores. `--variant=temporal_order`: 6 classes that are the 6
orders of three 8-frame motions (configs/synthetic.py:temporal_order).
configs/synthetic.py generates it on first use anyway.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string('output_dir', None, 'Where to write the dataset.')
flags.DEFINE_integer('seed', 0, 'Random seed of the generator.')
flags.DEFINE_enum(
  'variant', 'motion', ['motion', 'temporal_order'], 'Which synthetic data (see synthetic.py).'
)


def main(argv: Sequence[str]) -> None:
  del argv
  from vivit_jax.data import synthetic

  start = time.perf_counter()
  synthetic.generate(FLAGS.output_dir, seed=FLAGS.seed, variant=FLAGS.variant)
  print(f'Wrote the synthetic dataset to {FLAGS.output_dir} in {time.perf_counter() - start:.1f}s.')


if __name__ == '__main__':
  flags.mark_flags_as_required(['output_dir'])
  app.run(main)

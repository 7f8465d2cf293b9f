"""Hashes of the programs each benchmark variant compiles: equal hashes, equal speed.

  PYTHONPATH=. python docs/program_hashes.py

For every variant of `vivit_jax.harness.variants.VARIANTS` (ViViT-S, 8 frames of 112²,
batch 2) it lowers the training gradient (dropout and stochastic depth on) and
the inference forward pass, and the trainer's whole pmapped train step (the one
`main.py` runs: loss, mixup, clipping, optimiser, NaN guard) on one device;
then the train step of every paper config in `configs/` (batch 1, with its
augmentation on the device). It prints a short SHA-256 of each StableHLO text.
Run it on two commits: where every hash agrees, a refactor changed no
computation, and any difference in `tools/benchmark` timings between the two
is the machine's noise.
"""

import glob
import hashlib
import os

import jax
import jax.numpy as jnp

from vivit_jax import config as config_lib
from vivit_jax.models import build_model

try:
  from vivit_jax.harness.variants import VARIANTS, small_config, variant_config
except ImportError:
  try:  # Commits before issue 29 kept the variants in vivit_jax.variants,
    from vivit_jax.variants import VARIANTS, small_config, variant_config
  except ImportError:  # and those before issue 13 in vivit_jax.perf.
    from vivit_jax.perf import VARIANTS, small_config, variant_config
try:
  from vivit_jax.harness import fit
except ImportError:  # before issue 29
  from vivit_jax import fit

_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'configs')


def _digest(text: str) -> str:
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _step_digest(config, batch: int) -> str:
  """The trainer's train step on one local device, as `vivit_jax.harness.fit` lowers it."""
  if not hasattr(fit, 'lower_step'):  # commits before lower_step was split from compile_step
    return '-'
  lowered, _ = fit.lower_step(config, jax.local_devices()[:1], batch)
  return _digest(lowered.as_text())


def main() -> None:
  base = small_config()
  video = jnp.zeros((2, 8, 112, 112, 3))
  print('variant train-gradient inference train-step')
  for name in VARIANTS:
    config = variant_config(base, name, dropout_rate=0.1, stochastic_droplayer_rate=0.1)
    module = build_model(config)
    params = jax.eval_shape(lambda m=module: m.init(jax.random.key(0), video[:1], train=False))
    params = params['params']

    def loss(p, x, rng, module=module):
      return module.apply({'params': p}, x, train=True, rngs={'dropout': rng}).sum()

    train = jax.jit(jax.grad(loss)).lower(params, video, jax.random.key(1)).as_text()
    infer = jax.jit(lambda p, x, m=module: m.apply({'params': p}, x, train=False))
    step = _step_digest(config, 2)
    print(name, _digest(train), _digest(infer.lower(params, video).as_text()), step)
  print('config train-step')
  for path in sorted(glob.glob(os.path.join(_CONFIGS, '*.py'))):
    name = os.path.basename(path)[: -len('.py')]
    if name != '__init__':
      print(name, _step_digest(config_lib.load_config_file(path), 1))


if __name__ == '__main__':
  main()

"""Hashes of the programs each benchmark variant compiles: equal hashes, equal speed.

  PYTHONPATH=. python docs/program_hashes.py

For every variant of `vivit_jax.variants.VARIANTS` (ViViT-S, 8 frames of 112²,
batch 2) it lowers the training gradient (dropout and stochastic depth on) and
the inference forward pass and prints a short SHA-256 of each StableHLO text.
Run it on two commits: where every hash agrees, a refactor changed no
computation, and any difference in `tools/benchmark` timings between the two
is the machine's noise.
"""

import hashlib

import jax
import jax.numpy as jnp

from vivit_jax.models import build_model

try:
  from vivit_jax.variants import VARIANTS, small_config, variant_config
except ImportError:  # Commits before issue 13 kept the variants in vivit_jax.perf.
  from vivit_jax.perf import VARIANTS, small_config, variant_config


def _digest(text: str) -> str:
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def main() -> None:
  base = small_config()
  video = jnp.zeros((2, 8, 112, 112, 3))
  print('variant train-gradient inference')
  for name in VARIANTS:
    config = variant_config(base, name, dropout_rate=0.1, stochastic_droplayer_rate=0.1)
    module = build_model(config)
    params = jax.eval_shape(lambda m=module: m.init(jax.random.key(0), video[:1], train=False))
    params = params['params']

    def loss(p, x, rng, module=module):
      return module.apply({'params': p}, x, train=True, rngs={'dropout': rng}).sum()

    train = jax.jit(jax.grad(loss)).lower(params, video, jax.random.key(1)).as_text()
    infer = jax.jit(lambda p, x, m=module: m.apply({'params': p}, x, train=False))
    print(name, _digest(train), _digest(infer.lower(params, video).as_text()))


if __name__ == '__main__':
  main()

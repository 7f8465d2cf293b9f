"""Control for the temporal-order runs: can the model use *where in time* at all?

  PYTHONPATH=. python docs/stall/time_cue.py [VARIANT] [STEPS]

Trains one variant of configs/synthetic.py:temporal_order (default: Model 1,
'spacetime') from scratch on clips of uniform noise in which one third of the
frames is brighter by 0.3; the label is which third (3 classes). The mean over
time is the same for every class, so, as on the temporal-order data, only a
conjunction of content and temporal position tells the class; unlike there, the
content cue (brightness) is linear in the pixels, so the embedding carries it
from the first step. AdamW at 1e-3, batch 32, no schedule. Prints the loss and
batch top-1 every 20 steps.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import synthetic
from vivit_jax import config as config_lib
from vivit_jax.harness.ablation import sweeps
from vivit_jax.models import build_model

BRIGHTER = 0.3


def batch(
  rng: np.random.Generator, shape: tuple[int, ...], size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
  """`size` noise clips of `shape` [T, H, W, 3] with one third of the frames brighter, and which."""
  clips = rng.uniform(-0.5, 0.5, (size, *shape)).astype(np.float32)
  labels = rng.integers(0, 3, size)
  third = shape[0] // 3
  for clip, label in zip(clips, labels):
    clip[third * label : third * (label + 1)] += BRIGHTER
  return clips, labels


def main(variant: str = 'spacetime', steps: str = '200'):
  base = synthetic.get_config('temporal_order')
  config = config_lib.with_overrides(base, sweeps.variant_overrides(base, variant))
  d = config.dataset_configs
  shape = (d.num_frames, d.crop_size, d.crop_size, 3)
  module = build_model(config, 3)
  params = module.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False)['params']
  tx = optax.adamw(1e-3, weight_decay=0.05)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, clips, labels):
    def loss_fn(p):
      logits = module.apply({'params': p}, clips, train=False)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    top1 = jnp.mean(logits.argmax(-1) == labels)
    return optax.apply_updates(params, updates), opt_state, loss, top1

  rng, start = np.random.default_rng(0), time.time()
  for i in range(int(steps)):
    params, opt_state, loss, top1 = step(params, opt_state, *batch(rng, shape))
    if (i + 1) % 20 == 0:
      took = time.time() - start
      print(f'step {i + 1}: loss {float(loss):.4f}, top-1 {float(top1):.3f} ({took:.0f} s)')


if __name__ == '__main__':
  main(*sys.argv[1:])

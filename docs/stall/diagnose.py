"""Diagnostic runs behind docs/ablations.md's 'Why Models 2 and 3 stall' section.

  python docs/stall/diagnose.py NAME VARIANT STEPS SEED [key=value ...] > docs/stall/NAME.json

Trains one variant of configs/synthetic.py (the ablation's `variant_overrides`,
so the same width and depth as the sweep) on one device with the trainer's
optimiser, schedule, loss and clipping, and records every 16 steps the train
loss and top-1 and the gradient norm of each top-level module (before
clipping); then the validation top-1 (512 clips, one view). Overrides are
config paths (`lr_configs.warmup_steps=200`); the schedule length follows STEPS.

Two overrides are not config paths: `init_from=WORKDIR` copies every parameter of
that training workdir's latest checkpoint whose name and shape match (not the
head; the average-pool baseline's SpatialTransformer also initialises the
'Transformer' of Models 1, 3 and 4, its position embedding tiled over time), and
`freeze=REGEX` keeps every parameter whose 'a/b/c' name matches at its initial
value: no update, no decay (e.g. `freeze='SpatialTransformer/|embedding/'`).
"""

import json
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import synthetic as synthetic_config
from vivit_jax import config as config_lib
from vivit_jax.checkpoints import formats
from vivit_jax.data import build_dataset
from vivit_jax.harness.ablation import sweeps
from vivit_jax.models import build_model
from vivit_jax.train import losses, optimizers, schedules
from vivit_jax.train.state import init_params

# A single-frame-encoder source (the average-pool baseline's SpatialTransformer)
# read as a joint encoder ('Transformer'); Model 3's blocks name the spatial
# half of each block differently.
_SOURCE_NAMES = (
  (r'^Transformer/', 'SpatialTransformer/'),
  (r'/LayerNorm_space/', '/LayerNorm_0/'),
  (r'/MultiHeadDotProductAttention_space/', '/MultiHeadDotProductAttention_0/'),
  (r'/LayerNorm_mlp/', '/LayerNorm_1/'),
  (r'/MlpBlock/', '/MlpBlock_0/'),
)


def _source_value(name, shape, source):
  """The source array for target `name`: same name, else the baseline's renamed one.

  A spatial position embedding [1, s, d] is tiled over time for a [1, t*s, d]
  target (time-major tokens), as Scenic's 'tile' posemb init does.
  """
  value = source.get(name)
  if value is None:
    for pattern, replacement in _SOURCE_NAMES:
      name = re.sub(pattern, replacement, name)
    value = source.get(name)
  if value is not None and name.endswith('pos_embedding') and value.shape != shape:
    if shape[1] % value.shape[1] == 0 and value.shape[2] == shape[2]:
      value = np.tile(value, (1, shape[1] // value.shape[1], 1))
  return value


def copy_matching(params, source):
  """params with every leaf that `source` ({'a/b/c': array}) has at the same shape, but the head."""
  flat = formats.flatten(params)
  copied = 0
  for name, init in flat.items():
    if name.startswith('output_projection/'):
      continue  # A new head: the classes differ.
    value = _source_value(name, init.shape, source)
    if value is not None and value.shape == init.shape:
      flat[name] = value
      copied += 1
  print(f'init_from: copied {copied} of {len(flat)} parameters', file=sys.stderr)
  return jax.tree_util.tree_map(jnp.asarray, formats.unflatten(flat))


def freeze(tx, params, pattern):
  """tx that leaves every parameter whose 'a/b/c' name matches `pattern` unchanged (no decay)."""
  labels = {n: 'frozen' if re.match(pattern, n) else 'trained' for n in formats.flatten(params)}
  count = sum(v == 'frozen' for v in labels.values())
  if not count:
    raise ValueError(f'freeze={pattern}: matches no parameter name.')
  print(f'freeze: {count} of {len(labels)} parameters', file=sys.stderr)
  return optax.multi_transform(
    {'trained': tx, 'frozen': optax.set_to_zero()}, formats.unflatten(labels)
  )


def main(name, variant, steps, seed, *overrides):
  steps, seed = int(steps), int(seed)
  base = synthetic_config.get_config()
  extra, init_from, frozen = {}, None, None
  for item in overrides:
    key, value = item.split('=', 1)
    if key == 'init_from':
      init_from = value
      continue
    if key == 'freeze':
      frozen = value
      continue
    try:
      extra[key] = json.loads(value)
    except json.JSONDecodeError:
      extra[key] = value  # A plain string, e.g. model.classifier=token.
  config = config_lib.with_overrides(base, {**sweeps.variant_overrides(base, variant), **extra})
  config.num_training_steps = steps
  config.lr_configs.steps_per_cycle = steps
  config.rng_seed = seed
  config = config_lib.resolve(config)
  ds = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  task = ds.meta.task
  module = build_model(config, task.num_classes)
  schedule = schedules.build_schedule(config.lr_configs, steps)
  tx = optimizers.build_optimizer(config, schedule)
  init_rng, train_rng = jax.random.split(jax.random.key(seed))
  params = init_params(module, init_rng, ds.meta.input_shape)
  if init_from:
    params = copy_matching(params, formats.read_orbax(init_from))
  if frozen:
    tx = freeze(tx, params, frozen)
  opt_state = tx.init(params)
  max_norm = config.max_grad_norm

  @jax.jit
  def step(params, opt_state, batch, rng):
    def loss_fn(p):
      logits = module.apply({'params': p}, batch['inputs'], train=True, rngs={'dropout': rng})
      per = losses.per_example_loss(logits, batch['label'], task, config.label_smoothing)
      return jnp.mean(per), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    norms = {k: optax.tree.norm(v) for k, v in grads.items()}
    norm = optax.tree.norm(grads)
    if max_norm:
      grads = jax.tree_util.tree_map(lambda g: g * jnp.minimum(1.0, max_norm / norm), grads)
    updates, opt_state = tx.update(grads, opt_state, params)
    top1 = jnp.mean(losses.topk_correct(logits, batch['label'], 1))
    return optax.apply_updates(params, updates), opt_state, loss, top1, norm, norms

  @jax.jit
  def predict(params, inputs):
    return module.apply({'params': params}, inputs, train=False)

  log, window, start = [], [], time.time()
  it = ds.train_iter()
  for i in range(steps):
    batch = jax.tree_util.tree_map(lambda x: jnp.asarray(x[0]), next(it))
    rng = jax.random.fold_in(train_rng, i)
    params, opt_state, loss, top1, norm, norms = step(params, opt_state, batch, rng)
    window.append((float(loss), float(top1)))
    if (i + 1) % 16 == 0:
      loss_m, top1_m = np.mean(window, axis=0)
      window = []
      log.append(
        {
          'step': i + 1,
          'lr': float(schedule(i)),
          'loss': round(float(loss_m), 4),
          'train_top1': round(float(top1_m), 4),
          'grad_norm': round(float(norm), 4),
          'module_grad_norms': {k: round(float(v), 5) for k, v in norms.items()},
        }
      )
      print(json.dumps(log[-1]), file=sys.stderr, flush=True)
  hits = total = 0
  for batch in ds.eval_iter():
    inputs, labels, mask = (np.asarray(batch[k][0]) for k in ('inputs', 'label', 'batch_mask'))
    pred = np.asarray(predict(params, inputs)).argmax(-1)
    hits += float(((pred == labels.argmax(-1)) * mask).sum())
    total += float(mask.sum())
  result = {
    'name': name,
    'variant': variant,
    'steps': steps,
    'seed': seed,
    'overrides': extra,
    'init_from': init_from,
    'freeze': frozen,
    'val_top1': hits / total,
    'wall_s': round(time.time() - start, 1),
    'log': log,
  }
  print(json.dumps(result))


if __name__ == '__main__':
  main(*sys.argv[1:])

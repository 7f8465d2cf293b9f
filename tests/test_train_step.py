"""The pmapped train and eval steps on 8 CPU devices."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from train_fakes import FakeDataset, TinyModel

from vivit_jax.config import get_defaults
from vivit_jax.task import Task
from vivit_jax.train import losses, optimizers, schedules, steps
from vivit_jax.train.state import TrainState, build_train_state, init_params

NUM_CLASSES = 6
TASK = Task(NUM_CLASSES)


def _replicate(tree, n):
  return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), tree)


def _setup(tx, dropout_rate=0.0, **options):
  model = TinyModel(NUM_CLASSES, dropout_rate=dropout_rate)
  state = TrainState.create(
    apply_fn=model.apply,
    params=init_params(model, jax.random.key(0), (4, 8, 8, 3)),
    tx=tx,
    schedule=lambda s: 0.1,
    rng=jax.random.key_data(jax.random.key(1)),
  )
  update = steps.make_update_fn(TASK, steps.StepOptions(**options))
  return model, state, update


def _global_batch(num_devices, batch_size=16):
  data = FakeDataset(num_devices=num_devices, batch_size=batch_size)
  return next(data.train_iter())


def _first(tree):
  return jax.tree_util.tree_map(lambda x: np.asarray(x[0]), tree)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
  _, state, update = _setup(optax.sgd(0.5, momentum=0.9), dropout_rate=0.1, label_smoothing=0.1)
  state = _replicate(state, 8)
  batch = _global_batch(8)
  history = []
  for _ in range(8):
    state, metrics = update(state, jax.tree_util.tree_map(jnp.asarray, batch))
    history.append(float(metrics['loss'][0]))
  assert history[-1] < 0.5 * history[0], history
  assert int(state.step[0]) == 8
  # Every device holds the same parameters after the cross-device mean.
  kernels = np.asarray(state.params['Dense_0']['kernel'])
  np.testing.assert_array_equal(kernels[0], kernels[7])


def test_one_and_eight_devices_give_the_same_update():
  results = []
  for devices in (1, 8):
    _, state, update = _setup(optax.sgd(0.3, momentum=0.9), max_grad_norm=1.0, l2_decay_factor=1e-3)
    state = _replicate(state, devices)
    batch = _global_batch(devices)
    for _ in range(2):
      state, metrics = update(state, jax.tree_util.tree_map(jnp.asarray, batch))
    results.append((_first(state.params), _first(metrics)))
  (p1, m1), (p8, m8) = results
  jax.tree_util.tree_map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), p1, p8
  )
  for key in ('loss', 'top1', 'grad_norm', 'total_loss'):
    np.testing.assert_allclose(m1[key], m8[key], rtol=2e-5)


def test_gradients_are_clipped_after_the_cross_device_mean():
  max_norm = 0.05
  model, state, update = _setup(optax.sgd(1.0), max_grad_norm=max_norm)
  batch = _global_batch(8)
  new_state, metrics = update(_replicate(state, 8), jax.tree_util.tree_map(jnp.asarray, batch))

  def grad_of(inputs, labels):
    def loss(params):
      logits = model.apply({'params': params}, inputs)
      return jnp.mean(losses.per_example_loss(logits, labels, TASK))

    return jax.grad(loss)(state.params)

  per_device = [grad_of(batch['inputs'][d], batch['label'][d]) for d in range(8)]
  mean = jax.tree_util.tree_map(lambda *g: sum(g) / 8, *per_device)
  norm = float(optax.tree.norm(mean))
  np.testing.assert_allclose(float(metrics['grad_norm'][0]), norm, rtol=1e-5)
  assert norm > max_norm
  expected = jax.tree_util.tree_map(lambda p, g: p - g * max_norm / norm, state.params, mean)
  jax.tree_util.tree_map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
    _first(new_state.params),
    expected,
  )
  # Clipping each device's gradient first (Scenic) gives a different update.
  clipped = [optax.clip_by_global_norm(max_norm).update(g, None)[0] for g in per_device]
  scenic = jax.tree_util.tree_map(lambda p, *g: p - sum(g) / 8, state.params, *clipped)
  diff = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), scenic, expected)
  assert max(jax.tree_util.tree_leaves(diff)) > 1e-3
  # clip_grads_per_device=True is Scenic's ViViT order, for reproducing its runs.
  _, _, scenic_update = _setup(optax.sgd(1.0), max_grad_norm=max_norm, clip_grads_per_device=True)
  scenic_state, _ = scenic_update(_replicate(state, 8), jax.tree_util.tree_map(jnp.asarray, batch))
  jax.tree_util.tree_map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
    _first(scenic_state.params),
    scenic,
  )


def test_a_non_finite_loss_leaves_the_state_unchanged():
  _, state, update = _setup(optax.sgd(0.1))
  replicated = _replicate(state, 8)
  before = _first(replicated)
  batch = _global_batch(8)
  batch['inputs'][3, 0, 0, 0, 0, 0] = np.nan
  new_state, metrics = update(replicated, jax.tree_util.tree_map(jnp.asarray, batch))
  assert not bool(metrics['finite'][0])
  after = _first(new_state)
  assert int(after.step) == 0
  jax.tree_util.tree_map(np.testing.assert_array_equal, before.params, after.params)


def test_mixup_in_the_step_uses_one_lambda_and_still_learns():
  _, state, update = _setup(optax.sgd(0.5, momentum=0.9), mixup_alpha=0.2, cutmix_alpha=1.0)
  state = _replicate(state, 8)
  batch = _global_batch(8)
  first = None
  for _ in range(10):
    state, metrics = update(state, jax.tree_util.tree_map(jnp.asarray, batch))
    first = first if first is not None else float(metrics['loss'][0])
  assert np.isfinite(float(metrics['loss'][0])) and float(metrics['loss'][0]) < first


@pytest.mark.parametrize('softmax', [False, True])
def test_multi_view_scores_average_the_views(softmax):
  model = TinyModel(NUM_CLASSES)
  params = init_params(model, jax.random.key(0), (4, 8, 8, 3))
  predict = steps.make_eval_fn(
    apply_fn=model.apply, task=TASK, multiview=True, softmax_average=softmax
  )
  batch = next(FakeDataset(num_devices=8, eval_batch_size=16).test_iter())
  scores = np.asarray(predict(flax.jax_utils.replicate(params), jnp.asarray(batch['inputs'])))
  views = batch['inputs'].reshape(16, 2, 4, 8, 8, 3)
  per_view = np.stack([np.asarray(model.apply({'params': params}, views[:, v])) for v in range(2)])
  if softmax:
    expected = np.log(np.mean(jax.nn.softmax(per_view, axis=-1), axis=0))
  else:
    expected = per_view.mean(axis=0)
  np.testing.assert_allclose(scores.reshape(16, NUM_CLASSES), expected, rtol=1e-5, atol=1e-6)
  assert not np.allclose(per_view[0], per_view[1])


def test_build_train_state_from_a_typed_key_matches_the_raw_key_wiring():
  # Checkpoints written before typed keys hold a raw u32[2] rng and parameters
  # drawn from PRNGKey: build_train_state must reproduce both exactly, or resuming
  # such a checkpoint would change the run.
  config = get_defaults()
  model = TinyModel(NUM_CLASSES)
  built = build_train_state(config, model, (4, 8, 8, 3), 10, jax.random.key(3))
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(3))
  schedule = schedules.build_schedule(config.lr_configs, 10)
  wired = TrainState.create(
    apply_fn=model.apply,
    params=init_params(model, init_rng, (4, 8, 8, 3)),
    tx=optimizers.build_optimizer(config, schedule),
    schedule=schedule,
    rng=train_rng,
  )
  assert built.rng.dtype == np.uint32 and built.rng.shape == (2,)
  np.testing.assert_array_equal(built.rng, wired.rng)
  jax.tree_util.tree_map(np.testing.assert_array_equal, built.params, wired.params)
  jax.tree_util.tree_map(np.testing.assert_array_equal, built.opt_state, wired.opt_state)
  assert built.schedule(10) == schedule(10)
  assert built.apply_fn == model.apply


def test_the_state_checkpoints_and_maps_only_its_arrays():
  # apply_fn, tx and schedule are static: checkpoints (the state dict) and the
  # compiled steps (the leaves) see step, params, opt_state and rng, in that order.
  model = TinyModel(NUM_CLASSES)
  state = build_train_state(get_defaults(), model, (4, 8, 8, 3), 10, jax.random.key(0))
  state_dict = flax.serialization.to_state_dict(state)
  assert list(state_dict) == ['step', 'params', 'opt_state', 'rng']
  arrays = (state.step, state.params, state.opt_state, state.rng)
  assert list(map(id, jax.tree.leaves(state))) == list(map(id, jax.tree.leaves(arrays)))
  # A restore keeps the target's static fields.
  restored = flax.serialization.from_state_dict(state, jax.device_get(state_dict))
  assert restored.tx is state.tx and restored.schedule is state.schedule


def test_step_options_read_each_key_of_the_config():
  config = get_defaults()
  config.label_smoothing = 0.1
  config.l2_decay_factor = 1e-4
  config.max_grad_norm = 2.0
  config.clip_grads_per_device = True
  config.mixup.alpha = 0.3
  config.mixup.cutmix_alpha = 0.7
  config.mixup.cutmix_switch_prob = 0.25
  assert steps.StepOptions.from_config(config) == steps.StepOptions(
    label_smoothing=0.1,
    l2_decay_factor=1e-4,
    max_grad_norm=2.0,
    clip_grads_per_device=True,
    mixup_alpha=0.3,
    cutmix_alpha=0.7,
    cutmix_switch_prob=0.25,
  )

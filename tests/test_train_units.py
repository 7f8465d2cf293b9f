"""Schedules, optimisers, losses and mixup against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vivit_jax.config import ConfigError, get_defaults
from vivit_jax.task import Task
from vivit_jax.train import losses, mixup, optimizers, schedules


def _lr_configs(**overrides):
  lr = get_defaults().lr_configs
  lr.update(overrides)
  return lr


def test_warmup_cosine_matches_hand_computed():
  lr = schedules.build_schedule(
    _lr_configs(
      factors='constant*linear_warmup*cosine_decay', base_learning_rate=0.1, warmup_steps=10
    ),
    total_steps=110,
  )
  # Warm-up 0 -> 0.1 over 10 steps; then half a cosine over the 100 remaining.
  expected = {
    0: 0.0,
    5: 0.05,
    10: 0.1,
    35: 0.1 * 0.5 * (1 + np.cos(np.pi / 4)),
    60: 0.05,
    85: 0.1 * 0.5 * (1 - np.cos(np.pi / 4)),
  }
  for step, value in expected.items():
    np.testing.assert_allclose(float(lr(step)), value, rtol=1e-6, atol=1e-9)


def test_rsqrt_and_piecewise_constant():
  rsqrt = schedules.build_schedule(
    _lr_configs(factors='constant*rsqrt_decay', base_learning_rate=2.0, timescale=100), 1000
  )
  assert float(rsqrt(0)) == 2.0
  np.testing.assert_allclose(float(rsqrt(300)), 2.0 * 10 / 20, rtol=1e-6)
  piecewise = schedules.build_schedule(
    _lr_configs(
      factors='constant*piecewise_constant',
      base_learning_rate=1.0,
      decay_events=(10, 20),
      decay_factors=(0.5, 0.1),
    ),
    100,
  )
  assert [float(piecewise(s)) for s in (0, 10, 11, 20, 21)] == pytest.approx([1, 1, 0.5, 0.5, 0.1])


def test_unknown_factor_is_rejected():
  with pytest.raises(ConfigError, match='cosine_decya'):
    schedules.build_schedule(_lr_configs(factors='constant*cosine_decya'), 10)


def test_momentum_updates_match_hand_computed():
  config = get_defaults()
  config.optimizer = 'momentum'
  tx = optimizers.build_optimizer(config, lambda step: 0.1)
  params = {'w': jnp.zeros(())}
  state = tx.init(params)
  grads = {'w': jnp.ones(())}
  u1, state = tx.update(grads, state, params)
  u2, state = tx.update(grads, state, params)
  # v1 = 1, v2 = 0.9 * 1 + 1 = 1.9; update = -lr * v.
  np.testing.assert_allclose([float(u1['w']), float(u2['w'])], [-0.1, -0.19], rtol=1e-6)


def test_weight_decay_skips_biases_norms_and_embeddings():
  params = {
    'Dense_0': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)},
    'LayerNorm_0': {'scale': jnp.ones(2), 'bias': jnp.ones(2)},
    'posembed_input': {'pos_embedding': jnp.ones((1, 3, 2))},
    'cls': jnp.ones((1, 1, 2)),
  }
  mask = optimizers.decay_mask(params)
  assert mask['Dense_0']['kernel'] and not mask['Dense_0']['bias']
  assert not any(
    jax.tree_util.tree_leaves([mask['LayerNorm_0'], mask['posembed_input'], mask['cls']])
  )
  config = get_defaults()
  config.optimizer = 'sgd'
  config.optimizer_configs.weight_decay = 0.5
  tx = optimizers.build_optimizer(config, lambda step: 0.1)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  # Only the kernel decays: -lr * wd * w = -0.05.
  np.testing.assert_allclose(updates['Dense_0']['kernel'], -0.05)
  assert float(jnp.abs(updates['Dense_0']['bias']).max()) == 0.0
  assert float(jnp.abs(updates['cls']).max()) == 0.0


def test_freeze_params_leaves_matching_parameters_unchanged_and_trains_the_rest():
  params = {
    'SpatialTransformer': {'encoderblock_0': {'kernel': jnp.ones((2, 2))}},
    'embedding': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)},
    'TemporalTransformer': {'encoderblock_0': {'kernel': jnp.ones((2, 2))}},
  }
  config = get_defaults()
  config.optimizer = 'adamw'
  config.optimizer_configs.weight_decay = 0.5  # Frozen means no decay either.
  config.optimizer_configs.freeze_params = 'SpatialTransformer/|embedding/'
  tx = optimizers.build_optimizer(config, optax.constant_schedule(0.1))
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  frozen = [updates['SpatialTransformer'], updates['embedding']]
  assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree_util.tree_leaves(frozen))
  assert float(updates['TemporalTransformer']['encoderblock_0']['kernel'][0, 0]) < 0


def test_freeze_params_that_match_nothing_or_do_not_parse_are_rejected():
  config = get_defaults()
  config.optimizer_configs.freeze_params = 'Spatial_Transformer/'
  tx = optimizers.build_optimizer(config, optax.constant_schedule(0.1))
  with pytest.raises(ConfigError, match='matches no parameter.*SpatialTransformer/kernel'):
    tx.init({'SpatialTransformer': {'kernel': jnp.ones(2)}})
  config.optimizer_configs.freeze_params = 'embedding/('
  with pytest.raises(ConfigError, match='not a regular expression'):
    optimizers.build_optimizer(config, optax.constant_schedule(0.1))


@pytest.mark.parametrize('name', ['sgd', 'nesterov', 'adam', 'adamw'])
def test_every_optimizer_builds_and_steps(name):
  config = get_defaults()
  config.optimizer = name
  config.optimizer_configs.weight_decay = 0.01
  tx = optimizers.build_optimizer(config, optax.constant_schedule(0.1))
  params = {'kernel': jnp.ones((2, 2))}
  updates, _ = tx.update({'kernel': jnp.ones((2, 2))}, tx.init(params), params)
  assert float(updates['kernel'][0, 0]) < 0


def test_label_smoothing_and_softmax_loss():
  logits = jnp.log(jnp.array([[0.25, 0.75]]))
  labels = jnp.array([[0.0, 1.0]])
  loss = losses.per_example_loss(logits, labels, Task(2), label_smoothing=0.2)
  # Targets become [0.1, 0.9].
  np.testing.assert_allclose(loss, [-(0.1 * np.log(0.25) + 0.9 * np.log(0.75))], rtol=1e-6)


def test_multi_head_loss_is_mean_of_heads_and_action_accuracy():
  task = Task(5, class_splits=(2, 3), split_names=('verb', 'noun'))
  # Example 0: verb right, noun right. Example 1: verb right, noun wrong.
  logits = jnp.log(jnp.array([[0.7, 0.3, 0.2, 0.3, 0.5], [0.9, 0.1, 0.6, 0.2, 0.2]]))
  labels = jnp.array([[1.0, 0, 0, 0, 1], [1, 0, 0, 1, 0]])
  loss = losses.per_example_loss(logits, labels, task)
  np.testing.assert_allclose(
    loss, [-(np.log(0.7) + np.log(0.5)) / 2, -(np.log(0.9) + np.log(0.2)) / 2], rtol=1e-5
  )
  hits = losses.per_example_metrics(logits, labels, task)
  np.testing.assert_array_equal(hits['verb_top1'], [1, 1])
  np.testing.assert_array_equal(hits['noun_top1'], [1, 0])
  np.testing.assert_array_equal(hits['top1'], [1, 0])


def test_sigmoid_loss_for_multi_label():
  task = Task(2, multi_label=True)
  loss = losses.per_example_loss(jnp.zeros((1, 2)), jnp.array([[1.0, 0.0]]), task)
  np.testing.assert_allclose(loss, [2 * np.log(2)], rtol=1e-6)


def test_topk():
  logits = jnp.array([[0.1, 0.5, 0.2, 0.3, 0.0, -1.0]])
  labels = jax.nn.one_hot(jnp.array([4]), 6)
  assert float(losses.topk_correct(logits, labels, 1)[0]) == 0.0
  assert float(losses.topk_correct(logits, labels, 5)[0]) == 1.0
  assert float(losses.topk_correct(logits, jax.nn.one_hot(jnp.array([5]), 6), 5)[0]) == 0.0


def _indexed_batch(batch=8, shape=(3, 6, 10, 1)):
  # Clip i is filled with the value i, so every output pixel names its source.
  inputs = jnp.broadcast_to(
    jnp.arange(batch, dtype=jnp.float32)[:, None, None, None, None], (batch, *shape)
  )
  return inputs, jax.nn.one_hot(jnp.arange(batch), batch)


def test_mixup_mixes_pixels_and_labels_with_the_same_weight():
  inputs, labels = _indexed_batch()
  mixed, mixed_labels, aux = mixup.mix_batch(jax.random.key(3), inputs, labels, alpha=0.4)
  lam, perm = float(aux['lam']), np.asarray(aux['perm'])
  assert 0.0 < lam < 1.0 and sorted(perm) == list(range(8)) and (perm != np.arange(8)).any()
  np.testing.assert_allclose(mixed[:, 0, 0, 0, 0], lam * np.arange(8) + (1 - lam) * perm, rtol=1e-6)
  expected = lam * np.eye(8) + (1 - lam) * np.eye(8)[perm]
  np.testing.assert_allclose(mixed_labels, expected, rtol=1e-6)
  np.testing.assert_allclose(np.sum(mixed_labels, axis=-1), 1.0, rtol=1e-6)


def test_cutmix_box_is_shared_by_frames_and_sets_label_weight():
  inputs, labels = _indexed_batch()
  mixed, mixed_labels, aux = mixup.mix_batch(
    jax.random.key(0), inputs, labels, alpha=None, cutmix_alpha=1.0
  )
  lam, perm = float(aux['lam']), np.asarray(aux['perm'])
  assert bool(aux['cutmix'])
  mixed = np.asarray(mixed)
  for i in range(8):
    if perm[i] == i:
      continue
    pasted = mixed[i] == perm[i]  # [T, H, W, 1]
    assert (pasted == pasted[:1]).all()  # the same box in every frame
    np.testing.assert_allclose(pasted[0].mean(), 1.0 - lam, rtol=1e-6)
    assert set(np.unique(mixed[i])) <= {float(i), float(perm[i])}
  np.testing.assert_allclose(mixed_labels, lam * np.eye(8) + (1 - lam) * np.eye(8)[perm], rtol=1e-6)


def test_cutmix_switch_probability_picks_both():
  inputs, labels = _indexed_batch()
  picks = [
    bool(
      mixup.mix_batch(jax.random.key(s), inputs, labels, alpha=1.0, cutmix_alpha=1.0)[2]['cutmix']
    )
    for s in range(16)
  ]
  assert any(picks) and not all(picks)


def test_mix_batch_needs_an_alpha():
  inputs, labels = _indexed_batch()
  with pytest.raises(ValueError):
    mixup.mix_batch(jax.random.key(0), inputs, labels, alpha=None)


def test_l2_regularization_skips_one_dimensional_params():
  # Scenic sums the squares of parameters with ndim > 1 only: the kernel counts
  # (6 ones), the bias and the LayerNorm scale do not.
  params = {
    'Dense_0': {'kernel': jnp.ones((2, 3)), 'bias': jnp.ones((3,))},
    'LayerNorm_0': {'scale': jnp.full((3,), 2.0)},
    'embedding': {'kernel': jnp.full((1, 1, 1, 1), 3.0)},
  }
  np.testing.assert_allclose(losses.l2_regularization(params), 6.0 + 9.0)


def test_multi_head_joint_top5_ranks_pairs_by_the_product_of_head_probabilities():
  task = Task(5, class_splits=(2, 3), split_names=('verb', 'noun'))
  # Head probabilities verb [0.6, 0.4], noun [0.5, 0.3, 0.2]; pair products:
  # (0,0) .30, (1,0) .20, (0,1) .18, (0,2) .12, (1,1) .12, (1,2) .08, so every
  # pair but (1,2) is in the joint top-5 although each head's top-5 holds every class.
  logits = jnp.log(jnp.array([[0.6, 0.4, 0.5, 0.3, 0.2]] * 3))
  labels = jnp.array([[0.0, 1, 0, 0, 1], [0, 1, 0, 1, 0], [1, 0, 0, 0, 1]])
  hits = losses.per_example_metrics(logits, labels, task)
  np.testing.assert_array_equal(hits['top5'], [0, 1, 1])
  np.testing.assert_array_equal(hits['verb_top5'], [1, 1, 1])
  np.testing.assert_array_equal(hits['noun_top5'], [1, 1, 1])
  np.testing.assert_array_equal(hits['top1'], [0, 0, 0])

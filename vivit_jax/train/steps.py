"""Step factories: pure per-device functions, mapped over the devices by `parallel`.

`parallel.Replicated` maps them with `jax.pmap` (the default), `parallel.Sharded`
with `jax.vmap` under `jax.jit` over a mesh; the functions are the same. As in
vit_jax, `make_update_fn` takes plain values, not the config, and returns the
compiled step, so nothing from the config enters traced code by accident: the
step's options are one frozen `StepOptions`, read from the config once, and the
model's `apply`, the optimiser and its schedule come with the `TrainState`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from vivit_jax.task import Task
from vivit_jax.train import losses, mixup, parallel
from vivit_jax.train.state import TrainState

AXIS = parallel.AXIS
# Folded into each device's key for the device augmentation's random draws.
_AUGMENT_STREAM = 1
Batch = dict[str, jax.Array]


def _clip_by_global_norm(grads: Any, max_norm: float | None) -> tuple[Any, jax.Array]:
  norm = optax.tree.norm(grads)
  if not max_norm:
    return grads, norm
  scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
  return jax.tree_util.tree_map(lambda g: g * scale, grads), norm


@dataclasses.dataclass(frozen=True)
class StepOptions:
  """The train step's static options: regularisers, clipping and mixing.

  Attributes:
    label_smoothing: None or 0 turn it off.
    l2_decay_factor: adds 0.5 * l2_decay_factor * sum w^2 to the loss; None or 0: off.
    max_grad_norm: clip the gradient's global norm to it; None or 0: off.
    clip_grads_per_device: clip before the cross-device mean (Scenic's order;
      the reported grad_norm is then the mean of the clipped gradients).
    mixup_alpha, cutmix_alpha, cutmix_switch_prob: see `mixup.mix_batch`; with
      both alphas None or 0 the batch is not mixed.
  """

  label_smoothing: float | None = None
  l2_decay_factor: float | None = None
  max_grad_norm: float | None = None
  clip_grads_per_device: bool = False
  mixup_alpha: float | None = None
  cutmix_alpha: float | None = None
  cutmix_switch_prob: float = 0.5

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> StepOptions:
    """The options a resolved experiment config sets (top-level keys and `mixup`)."""
    return cls(
      label_smoothing=config.label_smoothing,
      l2_decay_factor=config.l2_decay_factor,
      max_grad_norm=config.max_grad_norm,
      clip_grads_per_device=config.clip_grads_per_device,
      mixup_alpha=config.mixup.alpha,
      cutmix_alpha=config.mixup.cutmix_alpha,
      cutmix_switch_prob=config.mixup.cutmix_switch_prob,
    )


def make_update_fn(
  task: Task,
  options: StepOptions,
  *,
  device_augment: Callable[[Batch, jax.Array], jax.Array] | None = None,
  placement: parallel.Replicated | parallel.Sharded | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """Returns the train step `(state, batch) -> (state, metrics)`, pmapped by default.

  Per device, in order: the dataset's device augmentation (if any), mixup /
  CutMix, forward pass (`state.apply_fn`) with dropout and stochastic depth,
  loss (+ 0.5 * l2_decay_factor * sum w^2), gradients; then the gradients are
  averaged over devices with `lax.pmean` and only then clipped to
  `max_grad_norm` (with `clip_grads_per_device`, each device's gradient is
  clipped before the mean, as Scenic's ViViT trainer does), and the optimiser
  (`state.tx`) is applied. A step whose loss or gradient norm is not finite
  leaves the state unchanged (so no checkpoint can hold NaNs) and reports
  `finite = False`; the trainer then stops.

  Args:
    task: how logits are read.
    options: the regularisers, clipping and mixing (`StepOptions.from_config`).
    device_augment: the dataset's `meta.device_augment`, `(batch, rng) ->
      inputs` (with `dataset_configs.augment_on_device`: u8 inputs; resize,
      color, normalisation, erasing); None when the batch's 'inputs' are ready.
    placement: how the step is spread over devices (`parallel.from_config`);
      default `parallel.Replicated()`, pmap over all devices. `vivit_jax.harness.fit`
      passes one over a TPU slice's devices to compile the step for it.

  Returns:
    A function of the state (as `placement.place_state` puts it) and a batch
    {'inputs': f32[D, B, T, H, W, 3], 'label': f32[D, B, C], 'batch_mask':
    f32[D, B]} returning the new state and the metrics ('loss', 'total_loss',
    'top1', 'top5', 'learning_rate' (`state.schedule`), 'grad_norm', 'finite';
    read them with `placement.to_host`). The state is donated; the batch is not,
    since no output has its shape and XLA could not reuse it.
  """
  mixing = bool(options.mixup_alpha) or bool(options.cutmix_alpha)
  placement = placement or parallel.Replicated()

  def update(state: TrainState, batch: Batch):
    # One key per step, shared by all devices (lam), and one per device
    # (dropout, partner permutation, CutMix box).
    shared_rng, local_rng = jax.random.split(jax.random.fold_in(state.rng, state.step))
    local_rng = jax.random.fold_in(local_rng, jax.lax.axis_index(AXIS))
    mix_rng, dropout_rng = jax.random.split(local_rng)
    inputs, labels, mask = batch['inputs'], batch['label'], batch['batch_mask']
    if device_augment is not None:
      # A key of its own, so the other streams are those of a run without it.
      inputs = device_augment(batch, jax.random.fold_in(local_rng, _AUGMENT_STREAM))
    targets = labels
    if mixing:
      inputs, targets, _ = mixup.mix_batch(
        mix_rng,
        inputs,
        labels,
        alpha=options.mixup_alpha,
        cutmix_alpha=options.cutmix_alpha,
        cutmix_switch_prob=options.cutmix_switch_prob,
        lam_rng=shared_rng,
      )

    def loss_fn(params):
      logits = state.apply_fn({'params': params}, inputs, train=True, rngs={'dropout': dropout_rng})
      per_example = losses.per_example_loss(logits, targets, task, options.label_smoothing)
      loss = jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0)
      total = loss
      if options.l2_decay_factor:
        total = loss + 0.5 * options.l2_decay_factor * losses.l2_regularization(params)
      return total, (per_example, logits)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    # Whole for the forward and backward pass; over a mesh the stored parameters stay split.
    (total, (per_example, logits)), grads = grad_fn(placement.gather_params(state.params))
    grads = placement.keep_on_device(grads)
    if options.clip_grads_per_device:
      grads, _ = _clip_by_global_norm(grads, options.max_grad_norm)
      grads = jax.lax.pmean(grads, AXIS)
      grad_norm = optax.tree.norm(grads)
    else:
      # Average first, then clip: every device clips the same global gradient,
      # so the update does not depend on how the batch is split over devices.
      grads = jax.lax.pmean(grads, AXIS)
      grads, grad_norm = _clip_by_global_norm(grads, options.max_grad_norm)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    count = jax.lax.psum(jnp.sum(mask), AXIS)
    metrics = {'total_loss': jax.lax.pmean(total, AXIS)}
    hits = losses.per_example_metrics(logits, labels, task)
    for name, values in {'loss': per_example, **hits}.items():
      metrics[name] = jax.lax.psum(jnp.sum(values * mask), AXIS) / count
    metrics['learning_rate'] = state.schedule(state.step)
    metrics['grad_norm'] = grad_norm
    finite = jnp.isfinite(metrics['total_loss']) & jnp.isfinite(grad_norm)
    metrics['finite'] = finite
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    new_state = jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new_state, state)
    return new_state, metrics

  return placement.train_step(update)


def _combine_views(view_logits: jax.Array, task: Task, softmax: bool) -> jax.Array:
  """Averages f32[V, B, C] view logits into f32[B, C] scores in logit space."""
  if not softmax:
    return jnp.mean(view_logits, axis=0)
  if task.multi_label:
    p = jnp.clip(jnp.mean(jax.nn.sigmoid(view_logits), axis=0), 1e-7, 1 - 1e-7)
    return jnp.log(p) - jnp.log1p(-p)
  heads = []
  for start, stop in task.heads:
    p = jnp.mean(jax.nn.softmax(view_logits[..., start:stop], axis=-1), axis=0)
    heads.append(jnp.log(jnp.maximum(p, 1e-30)))
  return jnp.concatenate(heads, axis=-1)


def make_eval_fn(
  *,
  apply_fn: Callable[..., jax.Array],
  task: Task,
  multiview: bool = False,
  softmax_average: bool = False,
  placement: parallel.Replicated | parallel.Sharded | None = None,
) -> Callable[[Any, jax.Array], jax.Array]:
  """Returns the inference step `(params, inputs) -> logits`, pmapped by default.

  Args:
    apply_fn: the model's `apply`.
    task: how logits are read (for softmax averaging per head).
    multiview: inputs hold V views per clip, f32[D, B, V, T, H, W, 3]; the
      views run one after another (bounded memory) and are averaged.
    softmax_average: average probabilities (returned as log-probabilities)
      instead of logits; `config.multicrop_softmax_logits`.
    placement: as for `make_update_fn`; the params are placed by it.

  Returns:
    A function of replicated params and f32[D, B, (V,) T, H, W, 3] inputs
    returning f32[D, B, C] logits (or averaged log-probabilities).
  """

  def predict(params, inputs):
    if not multiview:
      return apply_fn({'params': params}, inputs, train=False).astype(jnp.float32)
    views = jnp.moveaxis(inputs, 1, 0)  # [V, B, T, H, W, 3]
    view_logits = jax.lax.map(
      lambda v: apply_fn({'params': params}, v, train=False).astype(jnp.float32), views
    )
    return _combine_views(view_logits, task, softmax_average)

  return (placement or parallel.Replicated()).eval_step(predict)

"""The training state, and the one place that wires schedule -> optimiser -> state.

The trainer, the benchmarks (`vivit_jax.harness.perf`) and the image pre-training of the
ablations all start from `build_train_state`, so they train the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from vivit_jax.train import optimizers, schedules


@flax.struct.dataclass
class TrainState:
  """Immutable training state; update it with `state.replace(...)`.

  As in `flax.training.train_state.TrainState`, it carries how it is applied and
  updated as static fields: they are neither leaves of the pytree nor in its
  state dict, so checkpoints and compiled steps see {'step', 'params',
  'opt_state', 'rng'} only. They are part of the tree structure, so
  `jax.tree.map` will not pair two states built with different optimiser or
  model objects: compare their state dicts, or their `params`.

  Attributes:
    step: i32[] number of updates applied so far.
    params: the model parameters.
    opt_state: the optax state.
    rng: u32[2] base key; the key of step s is `fold_in(rng, s)`, so a resumed
      run draws the same random numbers as an uninterrupted one.
    apply_fn: the model's `apply` (static).
    tx: the optimiser (static).
    schedule: step -> learning rate, the one `tx` is built on; the step reports
      it (static).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  apply_fn: Callable[..., jax.Array] = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  schedule: schedules.Schedule = flax.struct.field(pytree_node=False)

  @classmethod
  def create(
    cls,
    *,
    apply_fn: Callable[..., jax.Array],
    params: Any,
    tx: optax.GradientTransformation,
    schedule: schedules.Schedule,
    rng: jax.Array,
  ) -> TrainState:
    """The state at step 0 for `params` (host-local, not replicated)."""
    return cls(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      rng=rng,
      apply_fn=apply_fn,
      tx=tx,
      schedule=schedule,
    )


def init_params(module: nn.Module, rng: jax.Array, input_shape: tuple[int, ...]) -> Any:
  """Initialises the model parameters on a dummy batch of one clip.

  Args:
    module: the Flax model.
    rng: key for the initialisers.
    input_shape: (T, H, W, 3) of one clip.

  Returns:
    The `params` collection.
  """
  params_rng, dropout_rng = jax.random.split(rng)
  dummy = jnp.zeros((1, *input_shape), jnp.float32)

  @jax.jit
  def init(params_rng, dropout_rng):
    variables = module.init({'params': params_rng, 'dropout': dropout_rng}, dummy, train=False)
    return variables['params']

  return init(params_rng, dropout_rng)


def build_train_state(
  config: ml_collections.ConfigDict,
  module: nn.Module,
  input_shape: tuple[int, ...],
  total_steps: int,
  rng: jax.Array,
) -> TrainState:
  """Builds the schedule, the optimiser on it and a randomly initialised state.

  Args:
    config: a resolved experiment config (reads `lr_configs` and the optimiser keys).
    module: the Flax model.
    input_shape: (T, H, W, 3) of one clip.
    total_steps: the run's length, for schedules that decay to its end.
    rng: a key (typed or raw); split into the initialisers' key and the state's base key.

  Returns:
    The host-local (not replicated) state at step 0, carrying `module.apply`, the
    optimiser and its schedule; its rng is raw u32[2] key data whatever `rng` is,
    so checkpoints hold the same array as those written before typed keys.
  """
  schedule = schedules.build_schedule(config.lr_configs, total_steps)
  tx = optimizers.build_optimizer(config, schedule)
  init_rng, train_rng = jax.random.split(rng)
  if jax.dtypes.issubdtype(train_rng.dtype, jax.dtypes.prng_key):
    train_rng = jax.random.key_data(train_rng)
  return TrainState.create(
    apply_fn=module.apply,
    params=init_params(module, init_rng, input_shape),
    tx=tx,
    schedule=schedule,
    rng=train_rng,
  )

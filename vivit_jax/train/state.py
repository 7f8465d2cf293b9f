"""The training state: everything a checkpoint must hold to resume exactly."""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Immutable training state; update it with `state.replace(...)`.

  Attributes:
    step: i32[] number of updates applied so far.
    params: the model parameters.
    opt_state: the optax state.
    rng: u32[2] base key; the key of step s is `fold_in(rng, s)`, so a resumed
      run draws the same random numbers as an uninterrupted one.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


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


def create_train_state(params: Any, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
  """Returns the state at step 0 for `params` (host-local, not replicated)."""
  return TrainState(
    step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=rng
  )

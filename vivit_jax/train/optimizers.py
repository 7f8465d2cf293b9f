"""Optimisers from `config.optimizer` and `config.optimizer_configs`.

Gradient clipping is not part of these chains: the train step clips the
cross-device mean of the gradients itself, so every device clips the same
vector (Scenic clips each device's gradient before the mean).
"""

from __future__ import annotations

import jax
import ml_collections
import optax

from vivit_jax.config import ConfigError
from vivit_jax.train.schedules import Schedule

OPTIMIZERS = ('momentum', 'sgd', 'nesterov', 'adam', 'adamw')


def decay_mask(params) -> object:
  """True for the parameters weight decay applies to.

  Only matrices and convolution filters (leaves named `kernel`) are decayed;
  biases, LayerNorm scales, positional embeddings and class tokens are not.

  Args:
    params: a parameter pytree (nested dicts).

  Returns:
    A pytree of bools with the structure of `params`.
  """

  def is_kernel(path, _) -> bool:
    last = path[-1]
    name = getattr(last, 'key', getattr(last, 'name', None))
    return name == 'kernel'

  return jax.tree_util.tree_map_with_path(is_kernel, params)


def build_optimizer(
  config: ml_collections.ConfigDict, schedule: Schedule
) -> optax.GradientTransformation:
  """Returns the optax optimiser the config names.

  `momentum` (the paper's: SGD with heavy-ball momentum), `sgd` (no momentum),
  `nesterov`, `adam` (weight decay added to the gradient, i.e. L2) and `adamw`
  (decoupled weight decay). `optimizer_configs.weight_decay` is multiplied by
  the learning rate for every optimiser, as optax does; with
  `skip_scale_and_bias_regularization` it only touches kernels (`decay_mask`).

  Args:
    config: a resolved config.
    schedule: step -> learning rate.

  Returns:
    An optax GradientTransformation.
  """
  name = config.optimizer
  oc = config.optimizer_configs
  if name not in OPTIMIZERS:
    raise ConfigError(f"config.optimizer is '{name}'; expected one of {', '.join(OPTIMIZERS)}.")
  mask = decay_mask if oc.skip_scale_and_bias_regularization else None
  wd = float(oc.weight_decay or 0.0)
  if name == 'adamw':
    return optax.adamw(schedule, oc.beta1, oc.beta2, oc.epsilon, weight_decay=wd, mask=mask)
  chain = []
  if wd:
    chain.append(optax.add_decayed_weights(wd, mask))
  if name == 'adam':
    chain.append(optax.scale_by_adam(oc.beta1, oc.beta2, oc.epsilon))
  elif name in ('momentum', 'nesterov'):
    chain.append(optax.trace(decay=oc.momentum, nesterov=name == 'nesterov'))
  chain.append(optax.scale_by_learning_rate(schedule))
  return optax.chain(*chain)

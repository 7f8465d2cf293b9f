"""Optimisers from `config.optimizer` and `config.optimizer_configs`.

Gradient clipping is not part of these chains: the train step clips the
cross-device mean of the gradients itself, so every device clips the same
vector (Scenic clips each device's gradient before the mean).
"""

from __future__ import annotations

import re

import jax
import ml_collections
import optax

from vivit_jax.config import ConfigError
from vivit_jax.train.schedules import Schedule

OPTIMIZERS = ('momentum', 'sgd', 'nesterov', 'adam', 'adamw')


def _path_name(path) -> str:
  """'Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel' for a tree path."""
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path)


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
    return _path_name(path[-1:]) == 'kernel'

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
  With `optimizer_configs.freeze_params` (a regex over Scenic's '/'-joined
  names, matched at the start) the matching parameters get a zero update: no
  step, no weight decay. Their gradients are still computed and still count in
  the `max_grad_norm` clipping norm.

  Args:
    config: a resolved config.
    schedule: step -> learning rate.

  Returns:
    An optax GradientTransformation.
  """
  tx = _base_optimizer(config, schedule)
  pattern = config.optimizer_configs.freeze_params
  if not pattern:
    return tx
  return optax.multi_transform(
    {'trained': tx, 'frozen': optax.set_to_zero()}, freeze_labels(pattern)
  )


def freeze_labels(pattern: str):
  """params -> the same tree of 'frozen' / 'trained', by `pattern` over '/'-joined names.

  Raises ConfigError for a bad regular expression, and (when the labels are
  made, at `tx.init`) for one that matches no parameter: a typo would
  otherwise train everything.
  """
  try:
    regex = re.compile(pattern)
  except re.error as e:
    raise ConfigError(
      f'optimizer_configs.freeze_params {pattern!r} is not a regular expression: {e}.'
    ) from e

  def labels(params):
    def label(path, _):
      return 'frozen' if regex.match(_path_name(path)) else 'trained'

    tree = jax.tree_util.tree_map_with_path(label, params)
    if 'frozen' not in jax.tree_util.tree_leaves(tree):
      names = [_path_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
      raise ConfigError(
        f'optimizer_configs.freeze_params {pattern!r} matches no parameter (re.match over '
        f'names such as {", ".join(names[:3])}); fix the pattern or unset it.'
      )
    return tree

  return labels


def _base_optimizer(
  config: ml_collections.ConfigDict, schedule: Schedule
) -> optax.GradientTransformation:
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

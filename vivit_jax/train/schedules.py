"""Learning-rate schedules: Scenic's `compound` schedule.

`lr_configs.factors` is a product of named factors, e.g.
'constant * linear_warmup * cosine_decay'. The step passed to the schedule is
the number of updates already applied (0 for the first update), as in Scenic,
so ported configs produce the same learning rate at every step.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import ml_collections

from vivit_jax.config import ConfigError

Schedule = Callable[[jnp.ndarray], jnp.ndarray]
FACTORS = ('constant', 'linear_warmup', 'cosine_decay', 'rsqrt_decay', 'piecewise_constant')


def _piecewise_constant(step, events: tuple[int, ...], factors: tuple[float, ...]):
  # Each factor is absolute; it applies once the step is past its event.
  index = jnp.sum(jnp.asarray(events) < step)
  return jnp.take(jnp.asarray((1.0,) + tuple(factors), jnp.float32), index)


def _cosine(step, warmup_steps: int, steps_per_cycle: int):
  # The cosine starts after warm-up and spans the rest of the cycle; it
  # restarts every cycle, as Scenic's does.
  period = max(steps_per_cycle - warmup_steps, 1)
  progress = jnp.maximum(0.0, step - warmup_steps) / period
  return 0.5 * (1.0 + jnp.cos(jnp.pi * (progress % 1.0)))


def build_schedule(lr_configs: ml_collections.ConfigDict, total_steps: int) -> Schedule:
  """Returns step -> learning rate for Scenic's `compound` schedule.

  Factors (multiplied together):
    constant: `base_learning_rate`.
    linear_warmup: min(1, step / warmup_steps) (1 when warmup_steps is 0).
    cosine_decay: 0.5 * (1 + cos(pi * p)), p = (step - warmup_steps) /
      (steps_per_cycle - warmup_steps), cyclic; steps_per_cycle defaults to
      `total_steps`.
    rsqrt_decay: sqrt(timescale) / sqrt(step + timescale - warmup_steps) once
      step > warmup_steps, else 1.
    piecewise_constant: decay_factors[i] after decay_events[i] (absolute).

  Args:
    lr_configs: the config's `lr_configs`.
    total_steps: number of training steps (default cycle length).

  Returns:
    A function from an int step (scalar array) to an f32 scalar.

  Example:
    >>> lr = build_schedule(ConfigDict({'learning_rate_schedule': 'compound',
    ...   'factors': 'constant*linear_warmup', 'base_learning_rate': 0.1,
    ...   'warmup_steps': 10, ...}), 100)
    >>> lr(5)  # 0.05
  """
  if lr_configs.learning_rate_schedule != 'compound':
    raise ConfigError(
      f"lr_configs.learning_rate_schedule is '{lr_configs.learning_rate_schedule}'; "
      "only 'compound' is supported."
    )
  names = [n.strip() for n in lr_configs.factors.split('*') if n.strip()]
  for name in names:
    if name not in FACTORS:
      raise ConfigError(
        f"Unknown learning-rate factor '{name}' in lr_configs.factors; known: {', '.join(FACTORS)}."
      )
  if 'piecewise_constant' in names:
    events, factors = lr_configs.decay_events, lr_configs.decay_factors
    if not events or not factors or len(events) != len(factors):
      raise ConfigError(
        'piecewise_constant needs lr_configs.decay_events and decay_factors of equal length.'
      )
  base = float(lr_configs.base_learning_rate)
  warmup = int(lr_configs.warmup_steps or 0)
  cycle = int(lr_configs.steps_per_cycle or total_steps)
  timescale = float(lr_configs.timescale)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    lr = jnp.ones((), jnp.float32)
    for name in names:
      if name == 'constant':
        lr = lr * base
      elif name == 'linear_warmup':
        lr = lr * (jnp.minimum(1.0, step / warmup) if warmup > 0 else 1.0)
      elif name == 'cosine_decay':
        lr = lr * _cosine(step, warmup, cycle)
      elif name == 'rsqrt_decay':
        decayed = jnp.sqrt(timescale) / jnp.sqrt(step + timescale - warmup)
        lr = lr * jnp.where(step > warmup, decayed, 1.0)
      else:
        lr = lr * _piecewise_constant(step, lr_configs.decay_events, lr_configs.decay_factors)
    return lr

  return schedule

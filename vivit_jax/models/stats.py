"""Parameter counts and FLOPs, counted as the paper counts them."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def count_params(params) -> int:
  """Number of scalars in a parameter tree (arrays or ShapeDtypeStructs)."""
  return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def abstract_params(module: nn.Module, input_shape: Sequence[int]):
  """The parameter tree as ShapeDtypeStructs, without allocating any memory.

  Args:
    input_shape: one clip, (T, H, W, 3).
  """
  video = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  variables = jax.eval_shape(
    lambda x: module.init({'params': jax.random.key(0)}, x, train=False), video
  )
  return variables['params']


def forward_gflops(module: nn.Module, params, input_shape: Sequence[int]) -> float:
  """GFLOPs of one clip's forward pass as the paper reports them.

  The paper's "FLOPs" are multiply-adds, i.e. XLA's flop count divided by 2.
  XLA's cost analysis of the compiled (CPU) program gives the count; `params`
  may be abstract (ShapeDtypeStructs), nothing is run.

  Args:
    params: the parameter tree, concrete or abstract.
    input_shape: one clip, (T, H, W, 3).
  """
  video = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  forward = jax.jit(lambda p, x: module.apply({'params': p}, x, train=False))
  compiled = forward.lower(params, video).compile()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # Older JAX returns one dict per device.
    cost = cost[0]
  return float(cost['flops']) / 2 / 1e9

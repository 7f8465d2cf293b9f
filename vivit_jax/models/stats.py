"""Parameter counts and FLOPs, counted as the paper counts them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vivit_jax.models.build import build_module, describe_model


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


# The paper's figures for the configs that reproduce them: (params M, GFLOPs).
# Table 2 (ViViT-B/16x2, 32 frames, 224) and section 4.3 (ViViT-L).
PAPER = {
  'k400_spacetime': (88.9, 455.2),
  'k400_fe': (115.1, 284.4),
  'k400_fsa': (117.3, 372.3),
  'k400_fdp': (88.9, 277.1),
  'k400_fe_baseline': (86.7, 283.9),
  'k400_spacetime_large': (None, 1446.0),
  'k400_fe_large': (None, 995.3),
}


@dataclasses.dataclass
class ModelStats:
  name: str
  attention_type: str
  input_shape: tuple[int, ...]
  params_m: float
  gflops: float

  def row(self) -> str:
    # The paper's figures are for 32 frames of 224x224; another input is not comparable.
    comparable = tuple(self.input_shape[:3]) == (32, 224, 224)
    paper_params, paper_gflops = PAPER.get(self.name, (None, None)) if comparable else (None, None)
    fmt = lambda v, spec: '' if v is None else format(v, spec)
    gflops_delta = '' if paper_gflops is None else f'{100 * (self.gflops / paper_gflops - 1):+.2f}%'
    shape = 'x'.join(map(str, self.input_shape[:3]))
    return (
      f'| {self.name} | {self.attention_type} | {shape} | {self.params_m:.1f} | '
      f'{fmt(paper_params, ".1f")} | {self.gflops:.1f} | {fmt(paper_gflops, ".1f")} | '
      f'{gflops_delta} |'
    )


HEADER = (
  '| config | attention | input (TxHxW) | params (M) | paper params (M) | GFLOPs | '
  'paper GFLOPs | GFLOPs vs paper |\n|---|---|---|---|---|---|---|---|'
)


def model_stats(config, name: str) -> ModelStats:
  """Parameters (millions) and GFLOPs of one view of the config's model."""
  model = describe_model(config)
  module = build_module(model)
  shape = model.input_shape
  params = abstract_params(module, shape)
  return ModelStats(
    name=name,
    attention_type=model.attention.type,
    input_shape=shape,
    params_m=count_params(params) / 1e6,
    gflops=forward_gflops(module, params, shape),
  )

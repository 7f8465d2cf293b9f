"""Model surgery: a pretrained ViT or ViViT parameter tree -> a ViViT model's tree.

Every parameter of the model is looked up in the checkpoint under its own
name, or under the name it had in the source architecture:

- a ViT (or Model 1/4) source fills Model 1/4 block by block, and Model 2's
  `SpatialTransformer` (with `cls_SpatialTransformer` from ViT's `cls`);
  Model 2's temporal encoder comes from a Model 2 source, else stays fresh;
- Model 3 from a standard block: space attention and MLP from the block;
  temporal attention from the same attention with its output projection zeroed,
  so each block starts as the image model (`temporal_attention_init='zero'`),
  or a full copy as Scenic does (`'copy_spatial'`);
- the patch kernel is inflated to a tubelet, positional embeddings are tiled or
  resized (see `adapters`), `output_projection` is restored only when asked.

Whatever the checkpoint lacks keeps the model's fresh initialisation; whatever
the model lacks is dropped. Each decision is one `Entry` of the report.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np

from vivit_jax import config as config_lib
from vivit_jax.checkpoints import adapters
from vivit_jax.models.build import describe_model

Flat = dict[str, np.ndarray]
_POSEMB = 'posembed_input/pos_embedding'
_FSA_FROM_STANDARD = {
  'LayerNorm_time': 'LayerNorm_0',
  'MultiHeadDotProductAttention_time': 'MultiHeadDotProductAttention_0',
  'LayerNorm_space': 'LayerNorm_0',
  'MultiHeadDotProductAttention_space': 'MultiHeadDotProductAttention_0',
  'LayerNorm_mlp': 'LayerNorm_1',
  'MlpBlock': 'MlpBlock_0',
}
_KINDS = {
  'spacetime': 'standard',
  'factorized_dot_product_attention': 'standard',
  'factorized_encoder': 'fe',
  'factorized_self_attention_block': 'fsa',
}


@dataclasses.dataclass(frozen=True)
class Entry:
  """One line of the report: what happened to one parameter."""

  name: str
  action: str  # 'copied', 'adapted', 'new' or 'dropped'.
  detail: str = ''


@dataclasses.dataclass(frozen=True)
class Plan:
  """What surgery needs to know of the model and of `config.init_from`."""

  kind: str  # 'standard' (Models 1, 4), 'fe' (Model 2) or 'fsa' (Model 3).
  grid: adapters.Grid  # (t, h, w) tokens of one video.
  restore_positional_embedding: bool = True
  restore_input_embedding: bool = True
  posemb_method: str = 'tile'
  restore_output_proj: bool = False
  kernel_method: str = 'central_frame_initializer'
  temporal_attention_init: str = 'zero'
  source_grid: adapters.Grid | None = None  # From init_from.model_config, if given.


def _given(tree: Any, path: str) -> Any:
  """The value at dotted `path` of a free-form config, or None where it is not given."""
  for key in path.split('.'):
    if not isinstance(tree, (Mapping, ml_collections.ConfigDict)) or key not in tree:
      return None
    tree = tree[key]
  return tree


def _grid_of_source_config(model_config: Any) -> adapters.Grid | None:
  """(t, h, w) tokens of `init_from.model_config`, or None if it does not say.

  That config is free-form (whatever the user knows of the checkpoint's
  model), so it is read key by key rather than described as a whole model.
  """
  size = _given(model_config, 'model.patches.size')
  crop = _given(model_config, 'dataset_configs.crop_size')
  if size is None or not crop:
    return None
  size = tuple(size)
  if _given(model_config, 'model.temporal_encoding_config.method') == 'temporal_sampling':
    t = _given(model_config, 'model.temporal_encoding_config.n_sampled_frames')
  else:
    frames = _given(model_config, 'dataset_configs.num_frames')
    t = frames and frames // (size[2] if len(size) > 2 else 1)
  if not t:
    return None
  return (int(t), crop // size[0], crop // size[1])


def make_plan(config: ml_collections.ConfigDict | Mapping, num_classes: int | None) -> Plan:
  """Validates `config` (model and `init_from`) and returns the surgery plan."""
  config = config_lib.resolve(config)
  model = describe_model(config, num_classes)
  init = config.init_from
  config_lib.check_choice(
    'init_from.positional_embed_size_change',
    init.positional_embed_size_change,
    adapters.POSEMB_METHODS,
  )
  model_method = model.tokens.kernel_init_method
  if model_method == 'scenic_central_frame_initializer':
    # Only Scenic's from-scratch initialiser has the width-axis slip; its
    # checkpoint inflation puts the 2D kernel on the central frame.
    model_method = 'central_frame_initializer'
  kernel_method = init.kernel_init_method or model_method or 'central_frame_initializer'

  config_lib.check_choice('init_from.kernel_init_method', kernel_method, adapters.KERNEL_METHODS)
  config_lib.check_choice(
    'init_from.temporal_attention_init', init.temporal_attention_init, ('zero', 'copy_spatial')
  )
  return Plan(
    kind=_KINDS[model.attention.type],
    grid=model.token_grid,
    restore_positional_embedding=init.restore_positional_embedding,
    restore_input_embedding=init.restore_input_embedding,
    posemb_method=init.positional_embed_size_change,
    restore_output_proj=init.restore_output_proj,
    kernel_method=kernel_method,
    temporal_attention_init=init.temporal_attention_init,
    source_grid=_grid_of_source_config(init.model_config),
  )


def source_kind(source: Mapping[str, np.ndarray]) -> str:
  """'fe', 'fsa', 'vit' (2D patch kernel) or 'standard', read from the keys."""
  if any(k.startswith('SpatialTransformer/') for k in source):
    return 'fe'
  if any('/MultiHeadDotProductAttention_space/' in k for k in source):
    return 'fsa'
  kernel = source.get('embedding/kernel')
  return 'vit' if kernel is not None and kernel.ndim == 4 else 'standard'


def _source_name(name: str, src: str, kind: str) -> str:
  """The checkpoint name that fills model parameter `name`."""
  parts = name.split('/')
  if kind == 'fe' and src != 'fe':
    parts[0] = {'SpatialTransformer': 'Transformer', 'cls_SpatialTransformer': 'cls'}.get(
      parts[0], parts[0]
    )
  elif kind != 'fe' and src == 'fe':
    parts[0] = {'Transformer': 'SpatialTransformer', 'cls': 'cls_SpatialTransformer'}.get(
      parts[0], parts[0]
    )
  if kind == 'fsa' and src != 'fsa' and len(parts) > 2 and parts[1].startswith('encoderblock_'):
    parts[2] = _FSA_FROM_STANDARD.get(parts[2], parts[2])
  return '/'.join(parts)


def _cls_name(posemb_name: str) -> str:
  encoder = posemb_name.split('/')[0]
  return 'cls' if encoder == 'Transformer' else f'cls_{encoder}'


def _source_grid(name: str, n: int, src: str, plan: Plan, target: adapters.Grid):
  """(t, h, w) of a checkpoint positional embedding with n tokens (no class token)."""
  if name.startswith('TemporalTransformer/'):
    return (n, 1, 1)
  spatial_only = src == 'vit' or name.startswith('SpatialTransformer/')
  if plan.source_grid is not None and math.prod(plan.source_grid) == n:
    return (1,) + plan.source_grid[1:] if spatial_only else plan.source_grid
  if spatial_only:
    side = math.isqrt(n)
    if side * side == n:
      return (1, side, side)
  elif n % (target[1] * target[2]) == 0:
    return (n // (target[1] * target[2]),) + target[1:]
  raise adapters.ShapeError(
    f"Cannot tell the token grid of the checkpoint's '{name}' ({n} tokens): set "
    'init_from.model_config.{dataset_configs.num_frames, dataset_configs.crop_size, '
    'model.patches.size} to those of the checkpoint.'
  )


def _posemb(name: str, src_name: str, source: Flat, init: np.ndarray, src: str, plan: Plan):
  t, h, w = plan.grid
  encoder = name.split('/')[0]
  target = {'SpatialTransformer': (1, h, w), 'TemporalTransformer': (t, 1, 1)}.get(
    encoder, plan.grid
  )
  value = source[src_name]
  has_cls = _cls_name(src_name) in source
  grid = _source_grid(src_name, value.shape[1] - int(has_cls), src, plan, target)
  method = 'resize' if encoder == 'TemporalTransformer' else plan.posemb_method
  return adapters.adapt_posemb(
    name, value, init, source_grid=grid, target_grid=target, source_cls=has_cls, method=method
  )


def _fill(name: str, src_name: str, source: Flat, init: np.ndarray, src: str, plan: Plan):
  """(array, how) for one model parameter found in the checkpoint as `src_name`."""
  value = source[src_name]
  if name == 'embedding/kernel':
    return adapters.inflate_kernel(name, value, init.shape, plan.kernel_method)
  if name.endswith(_POSEMB):
    if value.shape == init.shape:
      # As Scenic: an embedding of the model's shape is the model's (the params
      # were checked against the config first), whatever its grid would be read as.
      return value, 'copied' if src_name == name else f'copied from {src_name}'
    return _posemb(name, src_name, source, init, src, plan)
  if value.shape != init.shape:
    raise adapters.shape_error(name, value.shape, init.shape)
  if (
    '/MultiHeadDotProductAttention_time/out/' in name
    and src != 'fsa'
    and plan.temporal_attention_init == 'zero'
  ):
    return np.zeros_like(value), 'adapted: zeroed, temporal attention starts as identity'
  return value, 'copied' if src_name == name else f'copied from {src_name}'


def _skip_reason(name: str, plan: Plan) -> str | None:
  if name.startswith('output_projection/') and not plan.restore_output_proj:
    return 'init_from.restore_output_proj=False'
  if name.startswith('embedding/') and not plan.restore_input_embedding:
    return 'init_from.restore_input_embedding=False'
  if name.endswith(_POSEMB) and not plan.restore_positional_embedding:
    return 'init_from.restore_positional_embedding=False'
  return None


def adapt(source: Flat, params: Flat, plan: Plan) -> tuple[Flat, list[Entry]]:
  """Fills the model's flat params from a checkpoint's flat params.

  Args:
    source: checkpoint params {Scenic name: array} (see `formats`).
    params: the model's freshly initialised params {name: array}.
    plan: from `make_plan`.

  Returns:
    (new flat params with the shapes and dtypes of `params`, report entries).

  Raises:
    ShapeError: a parameter's checkpoint array cannot be adapted; the message
      names the parameter and both shapes.
  """
  src = source_kind(source)
  out, report, used = {}, [], set()
  for name, init in params.items():
    init = np.asarray(init)
    src_name = _source_name(name, src, plan.kind)
    reason = _skip_reason(name, plan)
    if reason is None and src_name not in source:
      reason = 'not in the checkpoint'
    if reason is not None:
      out[name] = init
      report.append(Entry(name, 'new', reason))
      continue
    used.add(src_name)
    value, how = _fill(name, src_name, source, init, src, plan)
    out[name] = np.asarray(value, dtype=init.dtype)
    action, _, detail = how.partition(': ')
    action = 'adapted' if action == 'adapted' else 'copied'
    detail = detail if action == 'adapted' else how.removeprefix('copied').strip()
    report.append(Entry(name, action, detail))
  for name in sorted(set(source) - used):
    report.append(Entry(name, 'dropped', _skip_reason(name, plan) or 'not in the model'))
  return out, report


def format_report(entries: list[Entry]) -> str:
  """One line per parameter, then the counts of each action."""
  width = max((len(e.name) for e in entries), default=0)
  lines = [f'{e.action:8s} {e.name:{width}s} {e.detail.strip()}'.rstrip() for e in entries]
  counts: dict[str, int] = {}
  for e in entries:
    counts[e.action] = counts.get(e.action, 0) + 1
  lines.append(', '.join(f'{n} {a}' for a, n in counts.items()))
  return '\n'.join(lines)


def num_classes_of(params: Mapping[str, Any]) -> int:
  """Classes of a flat model tree, from output_projection's bias."""
  return int(np.shape(params['output_projection/bias'])[0])

"""The paper's ablations as data: a sweep is a list of rows, a row is config overrides.

Each sweep is built from the base config the user passes (after its
`--config.key=value` overrides), so "equal width and depth" means the width and
depth of that config. Paper numbers are top-1 (%) from the ViViT paper
(arXiv 2103.15691): Kinetics-400 for Tables 1-3, Epic Kitchens for Table 4.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from vivit_jax.harness.variants import VARIANTS
from vivit_jax.models import ModelDescription, describe_model


@dataclasses.dataclass(frozen=True)
class Row:
  """One configuration of a sweep.

  Attributes:
    label: the row's name in the table and plot (also its directory name).
    overrides: dotted config keys -> values, applied over the base config.
    value: the swept value (frames, temporal layers), None for categorical rows.
    paper_top1: the paper's top-1 (%) for the same row, None where it has none.
    paper_gflops: the paper's GFLOPs for the same row (ViViT-B, 32x224x224).
    seed_overrides: seed -> more overrides, for settings that differ per seed
      (`variants_pretrained` starts seed i from pre-trained seed i).
  """

  label: str
  overrides: Mapping[str, Any]
  value: float | None = None
  paper_top1: float | None = None
  paper_gflops: float | None = None
  seed_overrides: Callable[[int], Mapping[str, Any]] | None = None

  def overrides_for(self, seed: int) -> dict[str, Any]:
    """`overrides`, then what `seed_overrides(seed)` adds (e.g. each seed's checkpoint)."""
    extra = self.seed_overrides(seed) if self.seed_overrides else {}
    return {**self.overrides, **extra}


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A named ablation: rows, what the plot's x axis is, and what the paper column means.

  Attributes:
    x_axis: 'gflops' (accuracy against cost), 'value' (against `Row.value`) or
      'row' (categorical: one tick per row).
  """

  name: str
  title: str
  rows: tuple[Row, ...]
  x_axis: str
  x_label: str
  paper_source: str
  note: str = ''


def _depth(model: ModelDescription) -> tuple[int, int, int]:
  """(num_heads, mlp_dim, num_layers) of the base model, whichever variant it is."""
  name = 'SpatialTransformer' if model.attention.type == 'factorized_encoder' else 'Transformer'
  size = model.encoders[name]
  return size.num_heads, size.mlp_dim, size.num_layers


def _temporal_default(config: ml_collections.ConfigDict, model: ModelDescription) -> int:
  """The base config's temporal depth, else a third of the depth (the paper's 12 + 4)."""
  # Read from the key, not the description: the average-pool baseline has no
  # temporal encoder, yet its temporal_transformer.num_layers is the depth this
  # sweep gives Model 2.
  temporal = config.model.temporal_transformer.num_layers
  if model.attention.type == 'factorized_encoder' and temporal:
    return temporal
  return max(1, round(_depth(model)[2] / 3))


def variant_overrides(config, name: str, temporal_layers: int | None = None) -> dict[str, Any]:
  """Overrides that turn the base model into variant `name` at the same width and depth."""
  model = describe_model(config)
  heads, mlp, layers = _depth(model)
  variant = VARIANTS[name]
  out = {
    'model.attention_config.type': variant.attention_type,
    'model.attention_config.spatial_only_baseline': variant.spatial_only_baseline,
  }
  if variant.attention_type == 'factorized_encoder':
    temporal = _temporal_default(config, model) if temporal_layers is None else temporal_layers
    enc = {'num_heads': heads, 'mlp_dim': mlp}
    out.update({f'model.spatial_transformer.{k}': v for k, v in enc.items()})
    out['model.spatial_transformer.num_layers'] = layers
    out.update({f'model.temporal_transformer.{k}': v for k, v in enc.items()})
    out['model.temporal_transformer.num_layers'] = max(1, temporal)
  else:
    out.update({'model.num_heads': heads, 'model.mlp_dim': mlp, 'model.num_layers': layers})
  return out


# Table 2 of the paper, one line per row: (label, variant, K400 top-1, EK
# top-1, GFLOPs of ViViT-B at 32x224x224).
_TABLE2 = (
  ('1 spatio-temporal', 'spacetime', 80.0, 43.1, 455.2),
  ('2 factorised encoder', 'factorized_encoder', 78.8, 43.7, 284.4),
  ('3 factorised self-attn', 'factorized_self_attention_block', 77.4, 39.1, 372.3),
  ('4 factorised dot-product', 'factorized_dot_product_attention', 76.3, 39.5, 277.1),
  ('2 average-pool baseline', 'average_pool_baseline', 75.8, 38.8, 283.9),
)


def _equal_size_note(config: ml_collections.ConfigDict) -> str:
  model = describe_model(config)
  _, _, layers = _depth(model)
  n = _temporal_default(config, model)
  return (
    f'All at the base width and depth ({layers} layers); Model 2 adds '
    f'{n} temporal layer{"s" if n > 1 else ""}, as the paper adds 4 to 12.'
  )


def variants(config: ml_collections.ConfigDict) -> Sweep:
  """Table 2: the four models and the average-pool baseline."""
  rows = tuple(
    Row(label, variant_overrides(config, name), None, k400, gflops)
    for label, name, k400, _, gflops in _TABLE2
  )
  return Sweep(
    'variants',
    'Model variants (paper Table 2)',
    rows,
    'gflops',
    'GFLOPs per clip',
    'K400, ViViT-B',
    _equal_size_note(config),
  )


# What each variant keeps fixed when it starts from the average-pool baseline's
# encoder (`variants_pretrained`): the per-tubelet features that baseline learned
# (its tubelet embedding and what in each block is spatial or per token), so that
# only what attends over time, and the head, trains. Models 1 and 4 have no
# separate temporal parameters: their attention, LayerNorms and position
# embedding train. Regular expressions over Scenic's parameter names
# (`optimizer_configs.freeze_params`); measured in docs/ablations.md.
FROZEN_FROM_BASELINE = {
  'spacetime': r'embedding/|Transformer/encoderblock_\d+/MlpBlock_0/',
  'factorized_encoder': r'SpatialTransformer/|embedding/',
  'factorized_self_attention_block': (
    r'embedding/|Transformer/encoderblock_\d+/'
    r'(LayerNorm_space|MultiHeadDotProductAttention_space|LayerNorm_mlp|MlpBlock)/'
  ),
  'factorized_dot_product_attention': r'embedding/|Transformer/encoderblock_\d+/MlpBlock_0/',
  'average_pool_baseline': r'SpatialTransformer/|embedding/',
}


def variants_pretrained(
  config: ml_collections.ConfigDict, checkpoints: Callable[[int], str] | None = None
) -> Sweep:
  """Table 2 from a pre-trained per-tubelet encoder, held fixed.

  Every row is the `variants` row, initialised from `checkpoints(seed)` (a
  training workdir of the average-pool baseline, normally trained on other
  data; the ablation runner pre-trains it) through `init_from`'s surgery (the
  baseline's spatial encoder becomes Models 1, 3 and 4's `Transformer`, its
  position embedding tiled over time; a new head), with the parameters of
  `FROZEN_FROM_BASELINE` frozen. This is the recipe with which the models learn
  the temporal-order data (docs/ablations.md).
  """

  def per_seed(seed: int) -> dict[str, Any]:
    return {} if checkpoints is None else {'init_from.checkpoint_path': checkpoints(seed)}

  rows = tuple(
    Row(
      label,
      {
        **variant_overrides(config, name),
        'init_from.restore_output_proj': False,
        'init_from.positional_embed_size_change': 'tile',
        'optimizer_configs.freeze_params': FROZEN_FROM_BASELINE[name],
      },
      None,
      ek,
      gflops,
      seed_overrides=per_seed,
    )
    for label, name, _, ek, gflops in _TABLE2
  )
  # Table 2's Epic Kitchens column: the dataset on which the paper's models
  # that attend over time gain most on the average-pool baseline.
  return Sweep(
    'variants_pretrained',
    'Model variants from a pre-trained per-tubelet encoder, held fixed (paper Table 2)',
    rows,
    'gflops',
    'GFLOPs per clip',
    'EK, ViViT-B',
    _equal_size_note(config)
    + " Each seed starts from the average-pool baseline's encoder of the same seed, "
    'pre-trained on other data, with its per-tubelet parts frozen.',
  )


def temporal_layers(
  config: ml_collections.ConfigDict, values: Sequence[int] = (0, 1, 2, 4)
) -> Sweep:
  """Table 3 (left): temporal depth of the factorised encoder; 0 is the average-pool baseline."""
  paper = {0: 75.8, 1: 78.6, 4: 78.8}
  rows = []
  for n in values:
    name = 'average_pool_baseline' if n == 0 else 'factorized_encoder'
    rows.append(Row(f'{n} temporal layers', variant_overrides(config, name, n), n, paper.get(n)))
  return Sweep(
    'temporal_layers',
    'Temporal layers in the factorised encoder (paper Table 3)',
    tuple(rows),
    'value',
    'temporal layers',
    'K400, ViViT-B FE',
  )


def tubelet_init(config: ml_collections.ConfigDict, checkpoint: str | None = None) -> Sweep:
  """Table 1: how the tubelet embedding is initialised from an image model.

  Every row but `random` loads `checkpoint` (a ViT .npz or the image model
  pre-trained by `vivit_jax.harness.ablation.pretrain`; the runner fills it in).
  """
  model = describe_model(config)
  num_frames = model.input_shape[0]
  h, w, t = model.tokens.patch_size
  model1 = variant_overrides(config, 'spacetime')
  init = {
    **model1,
    'init_from.checkpoint_path': checkpoint,
    'init_from.restore_output_proj': False,
    'init_from.positional_embed_size_change': 'tile',
  }
  sampled = {
    'model.temporal_encoding_config.method': 'temporal_sampling',
    'model.temporal_encoding_config.n_sampled_frames': num_frames // t,
    'model.patches.size': (h, w, 1),
    **init,
  }
  rows = (
    Row('random', {**model1, 'init_from.checkpoint_path': None}, None, 73.2),
    Row(
      'filter inflation',
      {**init, 'init_from.kernel_init_method': 'average_frame_initializer'},
      None,
      77.6,
    ),
    Row(
      'central frame',
      {**init, 'init_from.kernel_init_method': 'central_frame_initializer'},
      None,
      79.2,
    ),
    Row('uniform frame sampling', sampled, None, 78.5),
  )
  return Sweep(
    'tubelet_init',
    'Tubelet embedding initialisation (paper Table 1)',
    rows,
    'row',
    'initialisation',
    'K400, ViViT-B Model 1',
    f'Uniform frame sampling embeds {num_frames // t} sampled frames with the 2D patch '
    'kernel, as many tokens as the tubelets.',
  )


def regularisers(config: ml_collections.ConfigDict) -> Sweep:
  """Table 4: the regularisers added one after another (the paper's EK settings)."""
  none = {
    'model.stochastic_droplayer_rate': 0.0,
    'dataset_configs.augmentation_params.do_rand_augment': False,
    'label_smoothing': 0.0,
    'mixup.alpha': None,
  }
  steps = [
    ('+ stochastic depth', {'model.stochastic_droplayer_rate': 0.2}, 40.2),
    (
      '+ RandAugment',
      {
        'dataset_configs.augmentation_params.do_rand_augment': True,
        'dataset_configs.augmentation_params.rand_augment_num_layers': 2,
        'dataset_configs.augmentation_params.rand_augment_magnitude': 15,
      },
      41.1,
    ),
    ('+ label smoothing', {'label_smoothing': 0.2}, 43.1),
    ('+ mixup', {'mixup.alpha': 0.1}, 43.7),
  ]
  rows, current = [Row('none', none, None, 39.6)], dict(none)
  for label, overrides, paper in steps:
    current = {**current, **overrides}
    rows.append(Row(label, current, None, paper))
  return Sweep(
    'regularisers',
    'Regularisation, cumulative (paper Table 4)',
    tuple(rows),
    'row',
    'regularisers',
    'EK, ViViT-L FE',
    "The paper's 'none' row (39.6) already has Kinetics initialisation (38.4 without); "
    'settings are its EK ones: stochastic depth 0.2, RandAugment 2/15, smoothing 0.2, mixup 0.1.',
  )


def frames(config: ml_collections.ConfigDict, values: Sequence[int] | None = None) -> Sweep:
  """Input frames against accuracy and cost (the paper's Figure 8 has no table).

  The default values stay at or below the config's `num_frames`, since a clip
  longer than its video wraps around (vivit_jax.data.sampling) and breaks the motion.
  """
  model = describe_model(config)
  t = model.tokens.patch_size[2]
  if values is None:
    n = model.input_shape[0]
    values = sorted({max(t, v - v % t) for v in (n // 3, n // 2, 2 * n // 3, n)})
  rows = tuple(Row(f'{v} frames', {'dataset_configs.num_frames': int(v)}, v) for v in values)
  return Sweep('frames', 'Number of input frames', rows, 'value', 'input frames', 'none')


SWEEPS: dict[str, Callable[..., Sweep]] = {
  'variants': variants,
  'variants_pretrained': variants_pretrained,
  'temporal_layers': temporal_layers,
  'tubelet_init': tubelet_init,
  'regularisers': regularisers,
  'frames': frames,
}


def get_sweep(name: str, config: ml_collections.ConfigDict, **kwargs) -> Sweep:
  """The sweep `name` built on `config` (resolved); kwargs go to its builder."""
  if name not in SWEEPS:
    raise ValueError(f'Unknown sweep {name!r}; known: {", ".join(SWEEPS)}.')
  return SWEEPS[name](config, **kwargs)

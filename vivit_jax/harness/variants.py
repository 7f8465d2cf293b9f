"""The model variants the benchmarks and ablations compare, and the ViViT-S base they share.

`VARIANTS` names the paper's four models plus its average-pool baseline
(Table 3), each as the config settings that select it.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from vivit_jax.config import resolve


@dataclasses.dataclass(frozen=True)
class Variant:
  """The `model.attention_config` settings that select one variant."""

  attention_type: str
  spatial_only_baseline: bool


VARIANTS = {
  'spacetime': Variant('spacetime', False),
  'factorized_encoder': Variant('factorized_encoder', False),
  'factorized_self_attention_block': Variant('factorized_self_attention_block', False),
  'factorized_dot_product_attention': Variant('factorized_dot_product_attention', False),
  'average_pool_baseline': Variant('factorized_encoder', True),
}


def small_config() -> ml_collections.ConfigDict:
  """ViViT-S/16x2: width 384, 12 layers, 6 heads, 8 frames of 112x112."""
  config = resolve({})
  model = config.model
  model.hidden_size = 384
  model.update(num_heads=6, mlp_dim=1536, num_layers=12)
  model.spatial_transformer.update(num_heads=6, mlp_dim=1536, num_layers=12)
  model.temporal_transformer.update(num_heads=6, mlp_dim=1536, num_layers=4)
  model.patches.size = (16, 16, 2)
  config.dataset_configs.update(num_classes=400, num_frames=8, crop_size=112)
  return config


def variant_config(base, name: str, **model_overrides) -> ml_collections.ConfigDict:
  """`base` with the variant's attention type and the `gap` classifier (all support it)."""
  config = ml_collections.ConfigDict(base.to_dict())
  variant = VARIANTS[name]
  config.model.attention_config.type = variant.attention_type
  config.model.attention_config.spatial_only_baseline = variant.spatial_only_baseline
  config.model.classifier = 'gap'
  config.model.update(model_overrides)
  return config

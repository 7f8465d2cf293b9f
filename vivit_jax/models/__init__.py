"""ViViT models: `build_model(config, num_classes)` is the public entry point.

`describe_model(config, num_classes)` says what that model is (variant, input
shape, token grid, options) without building it; `build_module` builds the
model from such a description.
"""

from vivit_jax.models.build import (
  ModelDescription,
  build_model,
  build_module,
  describe_model,
  input_shape,
)
from vivit_jax.models.options import (
  AttentionOptions,
  BlockOptions,
  EncoderSize,
  HeadOptions,
  TokenOptions,
)
from vivit_jax.models.vivit import FactorizedEncoderViViT, ViViT

__all__ = [
  'AttentionOptions',
  'BlockOptions',
  'EncoderSize',
  'FactorizedEncoderViViT',
  'HeadOptions',
  'ModelDescription',
  'TokenOptions',
  'ViViT',
  'build_model',
  'build_module',
  'describe_model',
  'input_shape',
]

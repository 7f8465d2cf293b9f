"""ViViT models: `build_model(config, num_classes)` is the public entry point."""

from vivit_jax.models.build import build_model, input_shape, model_kwargs
from vivit_jax.models.vivit import EncoderSize, FactorisedEncoderViViT, ViViT

__all__ = [
  'EncoderSize',
  'FactorisedEncoderViViT',
  'ViViT',
  'build_model',
  'input_shape',
  'model_kwargs',
]

"""Config -> model description -> model: the only place that reads `config.model`.

Every check here runs before anything is traced or compiled, so a wrong config
fails in milliseconds with a message that names the key and the fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from vivit_jax import config as config_lib
from vivit_jax.config import ConfigError, check_choice
from vivit_jax.models.embedding import uniform_frame_indices
from vivit_jax.models.options import (
  AttentionOptions,
  BlockOptions,
  EncoderSize,
  HeadOptions,
  TokenOptions,
)
from vivit_jax.models.vivit import FactorizedEncoderViViT, ViViT

_Options = TypeVar('_Options')
_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def _require(path: str, value: Any) -> Any:
  if value is None:
    raise ConfigError(f"Config key '{path}' must be set for this model.")
  return value


def _encoder_size(cfg: ml_collections.ConfigDict, path: str, hidden_size: int) -> EncoderSize:
  size = EncoderSize(
    num_layers=_require(f'{path}.num_layers', cfg.num_layers),
    num_heads=_require(f'{path}.num_heads', cfg.num_heads),
    mlp_dim=_require(f'{path}.mlp_dim', cfg.mlp_dim),
  )
  if hidden_size % size.num_heads:
    raise ConfigError(
      f"model.hidden_size={hidden_size} is not divisible by '{path}.num_heads'={size.num_heads}."
    )
  return size


def _patch_size(model: ml_collections.ConfigDict, method: str) -> tuple[int, int, int]:
  size = tuple(model.patches.size)
  if method == '3d_conv' and len(size) != 3:
    raise ConfigError(
      f'model.patches.size={size} must be (h, w, t) for 3d_conv tubelets, e.g. (16, 16, 2).'
    )
  if method == 'temporal_sampling' and len(size) not in (2, 3):
    raise ConfigError(f'model.patches.size={size} must be (h, w) for temporal_sampling.')
  if any(int(s) < 1 for s in size):
    raise ConfigError(f'model.patches.size={size} must be positive.')
  return (int(size[0]), int(size[1]), int(size[2]) if len(size) == 3 else 1)


def _check_input_size(config: ml_collections.ConfigDict, patch: tuple[int, int, int]) -> None:
  data = config.dataset_configs
  method = config.model.temporal_encoding_config.method
  crop = data.crop_size
  if crop is not None and (crop % patch[0] or crop % patch[1]):
    raise ConfigError(
      f'dataset_configs.crop_size={crop} is not divisible by the patch size '
      f'{patch[:2]} (model.patches.size): pick a crop size that is a multiple of it.'
    )
  if method == '3d_conv' and data.num_frames is not None and data.num_frames % patch[2]:
    raise ConfigError(
      f'dataset_configs.num_frames={data.num_frames} is not divisible by the tubelet '
      f'depth {patch[2]} (model.patches.size[2]).'
    )


def _check_rates(model: ml_collections.ConfigDict) -> None:
  for key in ('dropout_rate', 'attention_dropout_rate', 'stochastic_droplayer_rate'):
    if not 0.0 <= model[key] < 1.0:
      raise ConfigError(f'model.{key}={model[key]} must be in [0, 1).')


def _num_classes(config: ml_collections.ConfigDict, num_classes: int | None) -> int | None:
  """The caller's, else the config's class count (or the sum of its heads); None if neither says."""
  num_classes = num_classes if num_classes is not None else config.dataset_configs.num_classes
  splits = config.dataset_configs.class_splits
  if splits is not None:
    if num_classes is None:
      num_classes = int(sum(splits))
    elif sum(splits) != num_classes:
      raise ConfigError(
        f'dataset_configs.class_splits={tuple(splits)} sum to {sum(splits)}, '
        f'but the model has {num_classes} classes.'
      )
  if num_classes is not None and num_classes < 1:
    raise ConfigError('Set dataset_configs.num_classes (or pass num_classes) to a positive int.')
  return None if num_classes is None else int(num_classes)


@dataclasses.dataclass(frozen=True)
class ModelDescription:
  """What a config's model is: its variant, shapes and module options, read once.

  Everything outside the models that needs to know the model (surgery, Hugging
  Face export, statistics, visualisation, benchmarks, ablations) reads this
  instead of the config, and `build_module` builds the model from it.

  Attributes:
    tokens: tokenisation (method, patch size (h, w, t), hidden size, ...).
    attention: the variant: `type` and its options (Scenic's attention_config).
    options: the blocks' regularisation and speed options.
    head: num_classes (None where neither the config nor the caller gives it:
      the dataset's label map will), classifier, representation_size, ...
    encoders: {Scenic module name: size}: 'Transformer' for Models 1, 3 and 4;
      'SpatialTransformer' and (but for the baseline) 'TemporalTransformer' for Model 2.
    input_shape: (T, H, W, 3) of one clip.
    token_grid: (t, h, w) tokens of one clip, class tokens not counted.
    return_preclassifier: the model returns the encoder's tokens.
  """

  tokens: TokenOptions
  attention: AttentionOptions
  options: BlockOptions
  head: HeadOptions
  encoders: Mapping[str, EncoderSize]
  input_shape: tuple[int, int, int, int]
  token_grid: tuple[int, int, int]
  return_preclassifier: bool

  @property
  def spatial_only_baseline(self) -> bool:
    """Model 2 without its temporal encoder; the option means nothing for the other variants."""
    return self.attention.type == 'factorized_encoder' and self.attention.spatial_only_baseline

  @property
  def class_tokens(self) -> tuple[str, ...]:
    """Names of the class-token parameters: ('cls',), one per Model 2 encoder, or ()."""
    if self.head.classifier != 'token':
      return ()
    return tuple('cls' if name == 'Transformer' else f'cls_{name}' for name in self.encoders)


def _token_grid(tokens: TokenOptions, shape: tuple[int, int, int, int]) -> tuple[int, int, int]:
  num_frames, height, width, _ = shape
  ph, pw, pt = tokens.patch_size
  if tokens.method == 'temporal_sampling':
    t = len(uniform_frame_indices(num_frames, tokens.n_sampled_frames))
  else:
    t = num_frames // pt
  return (t, height // ph, width // pw)


def _encoders(config: ml_collections.ConfigDict, hidden_size: int) -> dict[str, EncoderSize]:
  """The encoder sizes by Scenic module name, checked against the variant."""
  model = config.model
  attention = model.attention_config
  if attention.type == 'factorized_encoder':
    if model.return_preclassifier:
      raise ConfigError('model.return_preclassifier is not supported by the factorised encoder.')
    spatial = _encoder_size(model.spatial_transformer, 'model.spatial_transformer', hidden_size)
    if attention.spatial_only_baseline:
      return {'SpatialTransformer': spatial}
    temporal = _encoder_size(model.temporal_transformer, 'model.temporal_transformer', hidden_size)
    return {'SpatialTransformer': spatial, 'TemporalTransformer': temporal}

  encoder = _encoder_size(model, 'model', hidden_size)
  if attention.type != 'spacetime' and model.classifier == 'token':
    raise ConfigError(
      f"model.classifier='token' is not supported by {attention.type} (as in Scenic): "
      "use 'gap', 'gmp' or 'gsp'."
    )
  if attention.type == 'factorized_dot_product_attention' and encoder.num_heads % 2:
    raise ConfigError(
      f'model.num_heads={encoder.num_heads} must be even for factorized_dot_product_attention: '
      'half of the heads attend over time, half over space.'
    )
  if attention.type == 'factorized_self_attention_block':
    check_choice(
      'model.attention_config.attention_order',
      attention.attention_order,
      ('time_space', 'space_time'),
    )
    check_choice(
      'model.attention_config.attention_kernel_init_method',
      attention.attention_kernel_init_method,
      ('xavier', 'zero'),
    )
  return {'Transformer': encoder}


def _options(cls: type[_Options], section: ml_collections.ConfigDict, **given: Any) -> _Options:
  """An option group: the fields not `given` are the section's keys of the same names."""
  names = [f.name for f in dataclasses.fields(cls) if f.name not in given]
  return cls(**{name: section[name] for name in names}, **given)


def describe_model(
  config: ml_collections.ConfigDict | Mapping, num_classes: int | None = None
) -> ModelDescription:
  """Validates `config`'s model and describes it (see `ModelDescription`).

  Args:
    config: an experiment config; it is resolved against the schema, so unknown
      keys and bad values raise `ConfigError` here, before any compile.
    num_classes: classes of output_projection; defaults to
      `config.dataset_configs.num_classes` (or the sum of `class_splits`).
  """
  config = config_lib.resolve(config)
  model = config.model
  attention = model.attention_config
  encoding = model.temporal_encoding_config
  check_choice('model.attention_config.type', attention.type, config_lib.ATTENTION_TYPES)
  check_choice(
    'model.temporal_encoding_config.method', encoding.method, config_lib.TEMPORAL_ENCODINGS
  )
  check_choice(
    'model.temporal_encoding_config.kernel_init_method',
    encoding.kernel_init_method,
    config_lib.KERNEL_INITS,
  )
  check_choice('model.classifier', model.classifier, config_lib.CLASSIFIERS)
  check_choice(
    'model.attention_implementation',
    model.attention_implementation,
    config_lib.ATTENTION_IMPLEMENTATIONS,
  )
  check_choice('model_dtype_str', config.model_dtype_str, config_lib.DTYPES)
  _check_rates(model)
  hidden_size = _require('model.hidden_size', model.hidden_size)
  patch = _patch_size(model, encoding.method)
  _check_input_size(config, patch)
  if encoding.method == 'temporal_sampling':
    _require('model.temporal_encoding_config.n_sampled_frames', encoding.n_sampled_frames)
  head = _options(HeadOptions, model, num_classes=_num_classes(config, num_classes))
  encoders = _encoders(config, hidden_size)
  data = config.dataset_configs
  if data.num_frames is None or data.crop_size is None:
    raise ConfigError(
      'Set dataset_configs.num_frames and crop_size: they give the input shape and token grid.'
    )
  tokens = _options(TokenOptions, encoding, patch_size=patch, hidden_size=hidden_size)
  shape = config_lib.clip_shape(data)
  return ModelDescription(
    tokens=tokens,
    attention=_options(AttentionOptions, attention),
    options=_options(BlockOptions, model, dtype=_DTYPES[config.model_dtype_str]),
    head=head,
    encoders=encoders,
    input_shape=shape,
    token_grid=_token_grid(tokens, shape),
    return_preclassifier=model.return_preclassifier,
  )


def build_module(description: ModelDescription) -> nn.Module:
  """The Flax module `description` describes (see `build_model`)."""
  d = description
  if d.head.num_classes is None:
    raise ConfigError('Set dataset_configs.num_classes (or pass num_classes) to a positive int.')
  if d.attention.type == 'factorized_encoder':
    return FactorizedEncoderViViT(
      tokens=d.tokens,
      spatial=d.encoders['SpatialTransformer'],
      temporal=None if d.spatial_only_baseline else d.encoders['TemporalTransformer'],
      attention=d.attention,
      options=d.options,
      head=d.head,
    )
  return ViViT(
    tokens=d.tokens,
    encoder=d.encoders['Transformer'],
    attention=d.attention,
    options=d.options,
    head=d.head,
    return_preclassifier=d.return_preclassifier,
  )


def build_model(
  config: ml_collections.ConfigDict | Mapping, num_classes: int | None = None
) -> nn.Module:
  """Builds the ViViT variant that `config.model.attention_config.type` names.

  Args:
    config: an experiment config; it is resolved against the schema, so unknown
      keys and bad values raise `ConfigError` here, before any compile.
    num_classes: classes of output_projection; defaults to
      `config.dataset_configs.num_classes` (or the sum of `class_splits`).

  Returns:
    A Flax module, applied as `module.apply({'params': p}, video, train=False)`
    with video f32[B, T, H, W, 3]; `train=True` needs `rngs={'dropout': key}`.
  """
  return build_module(describe_model(config, num_classes))


def input_shape(config: ml_collections.ConfigDict | Mapping) -> tuple[int, int, int, int]:
  """(T, H, W, 3) of one clip as the config's input pipeline makes it."""
  return config_lib.clip_shape(config_lib.resolve(config).dataset_configs)

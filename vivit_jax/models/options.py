"""The options of the ViViT modules, grouped as the modules use them.

Each group is a small frozen dataclass with required fields: `build_model`
fills them once from the config (the only place with defaults is
vivit_jax/config.py) and the modules pass them down unchanged, so an option is
spelt once here and read where it acts. Field names are the config's keys, and
`build.describe_model` fills the fields by those names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

Dtype = Any


@dataclasses.dataclass(frozen=True)
class EncoderSize:
  """Depth and width of one transformer encoder."""

  num_layers: int
  num_heads: int
  mlp_dim: int


@dataclasses.dataclass(frozen=True)
class TokenOptions:
  """How a video becomes tokens (`model.temporal_encoding_config`, `model.patches`).

  Attributes:
    method: '3d_conv' (tubelets) or 'temporal_sampling' (2D patches of sampled frames).
    patch_size: (h, w, t) tubelet; t is 1 with temporal_sampling.
    hidden_size: token width d.
    n_sampled_frames: frames embedded by temporal_sampling (None for 3d_conv).
    kernel_init_method: the tubelet kernel's initialiser (embedding.KERNEL_INITIALIZERS).
  """

  method: str
  patch_size: tuple[int, int, int]
  hidden_size: int
  n_sampled_frames: int | None
  kernel_init_method: str | None


@dataclasses.dataclass(frozen=True)
class AttentionOptions:
  """Which attention the model computes (Scenic's `model.attention_config`).

  Attributes:
    type: 'spacetime' (Model 1), 'factorized_encoder' (Model 2),
      'factorized_self_attention_block' (Model 3) or
      'factorized_dot_product_attention' (Model 4).
    attention_order: Model 3's 'time_space' or 'space_time'.
    attention_kernel_init_method: Model 3's attention kernel init, 'xavier' or 'zero'.
    spatial_only_baseline: Model 2 without a temporal encoder (the average-pool baseline).
    zero_init_temporal_out: Model 3's temporal attentions start with a zero
      output projection (the block is identity over time at initialisation;
      query, key and value keep their init, so unlike zeroing every kernel the
      temporal attention still trains).
  """

  type: str
  attention_order: str
  attention_kernel_init_method: str
  spatial_only_baseline: bool
  zero_init_temporal_out: bool


@dataclasses.dataclass(frozen=True)
class BlockOptions:
  """Regularisation and speed options shared by every encoder block.

  Attributes:
    dropout_rate: after the embedding, each attention and each MLP layer.
    attention_dropout_rate: on the attention probabilities.
    stochastic_droplayer_rate: stochastic depth of the last block; the encoder
      grows the per-block rate linearly from 0.
    stochastic_depth_rescale: divide kept branches by (1 - rate); False is Scenic.
    attention_implementation: 'default', 'xla' or 'cudnn' (jax.nn.dot_product_attention),
      or 'splash' (Pallas's TPU kernel; see attention.py).
    remat: recompute each block's activations in the backward pass.
    dtype: computation dtype (parameters stay float32).
  """

  dropout_rate: float
  attention_dropout_rate: float
  stochastic_droplayer_rate: float
  stochastic_depth_rescale: bool
  attention_implementation: str
  remat: bool
  dtype: Dtype


@dataclasses.dataclass(frozen=True)
class HeadOptions:
  """The classification head.

  Attributes:
    num_classes: outputs of output_projection (sum over heads for multi-head).
    classifier: 'token' (class tokens), 'gap', 'gmp' or 'gsp' (pooling).
    representation_size: width of the tanh pre_logits layer, None for none.
    return_prelogits: return the representation instead of the logits.
  """

  num_classes: int
  classifier: str
  representation_size: int | None
  return_prelogits: bool

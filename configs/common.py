"""Settings shared by the experiment configs: model sizes, datasets, the paper's recipe.

Every config starts from `vivit_jax.config.get_defaults()`, so every known key
is present and can be overridden on the command line (`--config.key=value`).
"""

from __future__ import annotations

import ml_collections

from vivit_jax.config import get_defaults

# name -> (hidden_size, num_heads, mlp_dim, num_layers), as in ViT.
SIZES = {
  'S': (384, 6, 1536, 12),
  'B': (768, 12, 3072, 12),
  'L': (1024, 16, 4096, 24),
  'H': (1280, 16, 5120, 32),
}


def base_config(experiment_name: str) -> ml_collections.ConfigDict:
  """Every key at its library default, and the paper's optimiser (appendix Table 7)."""
  config = get_defaults()
  config.experiment_name = experiment_name
  config.optimizer = 'momentum'
  config.optimizer_configs.momentum = 0.9
  config.max_grad_norm = 1.0
  config.l2_decay_factor = 0.0
  config.batch_size = 64
  config.rng_seed = 0
  config.checkpoint_steps = 1000
  config.log_eval_steps = 1000
  config.log_summary_steps = 100
  return config


def set_model(
  config: ml_collections.ConfigDict,
  size: str,
  attention_type: str,
  *,
  temporal_layers: int = 4,
  classifier: str = 'token',
  tubelet: tuple[int, int, int] = (16, 16, 2),
) -> None:
  """ViViT-`size` with the given attention type and 16x16x2 tubelets."""
  hidden, heads, mlp, layers = SIZES[size]
  model = config.model
  model.hidden_size = hidden
  model.attention_config.type = attention_type
  if attention_type == 'factorized_encoder':
    model.spatial_transformer.update(num_heads=heads, mlp_dim=mlp, num_layers=layers)
    model.temporal_transformer.update(num_heads=heads, mlp_dim=mlp, num_layers=temporal_layers)
  else:
    model.update(num_heads=heads, mlp_dim=mlp, num_layers=layers)
  model.classifier = classifier
  model.patches.size = tubelet
  model.temporal_encoding_config.method = '3d_conv'
  model.temporal_encoding_config.kernel_init_method = 'central_frame_initializer'
  model.dropout_rate = 0.0
  model.attention_dropout_rate = 0.0


def set_video_dataset(
  config: ml_collections.ConfigDict,
  *,
  num_classes: int,
  sizes: dict[str, int],
  num_frames: int = 32,
  stride: int = 2,
  color_augment: bool = True,
) -> None:
  """A DMVR-format dataset; `base_dir` is left for the command line."""
  data = config.dataset_configs
  config.dataset_name = 'video_tfrecord_dataset'
  data.tables = {split: f'{split}.tfrecord@1024' for split in ('train', 'validation', 'test')}
  data.examples_per_subset = dict(sizes)
  data.num_classes = num_classes
  data.num_frames = num_frames
  data.stride = stride
  data.min_resize = 256
  data.crop_size = 224
  data.one_hot_labels = True
  data.zero_centering = True
  # These configs train on GPUs and TPUs: resize, colour, normalisation and
  # erasing run in the train step there, and the host sends uint8 crop windows
  # (docs/data.md, "Throughput"). Set False to train on CPU, where tf.data does
  # them faster.
  data.augment_on_device = True
  # Evaluation as in the paper: 4 temporal views x 3 spatial crops.
  data.do_multicrop_test = True
  data.log_test_epochs = 5
  data.num_test_clips = 4
  data.do_three_spatial_crops = True
  aug = data.augmentation_params
  aug.do_jitter_scale = True
  aug.scale_min_factor = 0.9
  aug.scale_max_factor = 1.33
  aug.prob_scale_jitter = 1.0
  aug.do_color_augment = color_augment
  aug.prob_color_augment = 0.8
  aug.prob_color_drop = 0.1


def set_schedule(
  config: ml_collections.ConfigDict, *, train_size: int, epochs: float, base_lr: float
) -> None:
  """Cosine decay with 2.5 epochs of linear warm-up (appendix Table 7)."""
  steps_per_epoch = train_size // config.batch_size
  config.num_training_epochs = float(epochs)
  lr = config.lr_configs
  lr.learning_rate_schedule = 'compound'
  lr.factors = 'constant * cosine_decay * linear_warmup'
  lr.warmup_steps = 2.5 * steps_per_epoch
  lr.steps_per_cycle = int(epochs * steps_per_epoch)
  lr.base_learning_rate = base_lr


def set_regularisers(
  config: ml_collections.ConfigDict,
  *,
  rand_augment: tuple[int, int],
  stochastic_depth: float,
  label_smoothing: float,
  mixup: float,
) -> None:
  """The regularisers the paper uses on the smaller datasets (EK, SSv2)."""
  aug = config.dataset_configs.augmentation_params
  aug.do_rand_augment = True
  aug.rand_augment_num_layers, aug.rand_augment_magnitude = rand_augment
  config.model.stochastic_droplayer_rate = stochastic_depth
  config.label_smoothing = label_smoothing
  config.mixup.alpha = mixup


def set_imagenet21k_init(config: ml_collections.ConfigDict) -> None:
  """Initialise from an ImageNet-21k ViT checkpoint whose path the user gives.

  Whether the checkpoint has a class token or a representation layer is read
  from its keys when it is loaded.
  """
  config.init_from.checkpoint_path = None  # --config.init_from.checkpoint_path=...
  config.init_from.checkpoint_format = 'big_vision'
  config.init_from.restore_positional_embedding = True
  config.init_from.restore_input_embedding = True
  config.init_from.positional_embed_size_change = 'tile'


KINETICS_400_SIZES = {'train': 214834, 'validation': 17637, 'test': 34579}
KINETICS_600_SIZES = {'train': 363213, 'validation': 27676, 'test': 55377}
SSV2_SIZES = {'train': 168913, 'validation': 24777, 'test': 24777}
EPIC_KITCHENS_SIZES = {'train': 67217, 'validation': 9668, 'test': 9668}

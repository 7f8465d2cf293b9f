"""Small factorised-encoder ViViT on the synthetic motion dataset (`make train`).

The dataset (8 motion classes, 24-frame 32x32 clips; see
vivit_jax/data/synthetic.py) is generated into `data/synthetic` on first use.
Override the location with `--config.dataset_configs.base_dir=DIR`.
"""

import os

import ml_collections

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_TRAIN = 4096


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment_name = 'vivit_synthetic'
  c.dataset_name = 'video_tfrecord_dataset'
  c.rng_seed = 0

  d = ml_collections.ConfigDict()
  d.base_dir = os.path.join(_REPO, 'data', 'synthetic')
  d.generate_synthetic_if_missing = True
  d.tables = {
    'train': 'synthetic_train@8',
    'validation': 'synthetic_validation@2',
    'test': 'synthetic_test@2',
  }
  d.examples_per_subset = {'train': NUM_TRAIN, 'validation': 512, 'test': 512}
  d.num_classes = 8
  d.num_frames = 16
  d.stride = 1
  d.min_resize = 32
  d.crop_size = 32
  # Flipping would turn 'move_right' into 'move_left' and clockwise into
  # counter-clockwise: the labels depend on direction, as in SSv2.
  d.random_flip = False
  d.zero_centering = True
  d.shuffle_buffer_size = 512
  d.num_test_clips = 2
  d.do_three_spatial_crops = False
  # Every clip already shows the whole scene at 32x32: no crop or colour jitter
  # is needed to reach high accuracy. All keys are listed so that they can be
  # switched on from the command line.
  d.augmentation_params = ml_collections.ConfigDict(
    {
      'do_jitter_scale': False,
      'scale_min_factor': 0.9,
      'scale_max_factor': 1.33,
      'prob_scale_jitter': 1.0,
      'do_color_augment': False,
      'prob_color_augment': 0.8,
      'prob_color_drop': 0.1,
      'do_rand_augment': False,
      'rand_augment_num_layers': 2,
      'rand_augment_magnitude': 10,
      'do_random_erasing': False,
      'prob_random_erasing': 0.25,
    }
  )
  c.dataset_configs = d

  m = ml_collections.ConfigDict()
  m.hidden_size = 96
  m.patches = ml_collections.ConfigDict({'size': (8, 8, 2)})
  m.attention_config = ml_collections.ConfigDict({'type': 'factorized_encoder'})
  m.spatial_transformer = ml_collections.ConfigDict(
    {'num_heads': 4, 'mlp_dim': 384, 'num_layers': 4}
  )
  m.temporal_transformer = ml_collections.ConfigDict(
    {'num_heads': 4, 'mlp_dim': 384, 'num_layers': 4}
  )
  m.classifier = 'token'
  m.dropout_rate = 0.0
  m.attention_dropout_rate = 0.0
  m.stochastic_droplayer_rate = 0.0
  c.model = m

  c.optimizer = 'adamw'
  c.optimizer_configs = ml_collections.ConfigDict({'weight_decay': 0.05})
  c.batch_size = 32
  c.eval_batch_size = 64
  c.num_training_steps = 12 * NUM_TRAIN // 32
  c.lr_configs = ml_collections.ConfigDict(
    {
      'learning_rate_schedule': 'compound',
      'factors': 'constant * cosine_decay * linear_warmup',
      'base_learning_rate': 1e-3,
      'warmup_steps': 200,
      'steps_per_cycle': 12 * NUM_TRAIN // 32,
    }
  )
  c.label_smoothing = 0.1
  c.max_grad_norm = 1.0
  c.checkpoint_steps = 500
  c.log_eval_steps = 250
  c.log_summary_steps = 50
  return c

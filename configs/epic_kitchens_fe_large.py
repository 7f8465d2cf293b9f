"""ViViT-L/16x2 factorised encoder on EPIC-Kitchens-100: noun and verb heads.

The model has one output_projection of 300 + 97 logits; `class_splits` cuts it
into the two heads for the loss and the per-head and action accuracies.

Usage: python main.py --config=configs/epic_kitchens_fe_large.py --workdir=DIR \
  --config.dataset_configs.base_dir=/path/to/epic_kitchens \
  --config.init_from.checkpoint_path=/path/to/k400_vivit_l_fe_checkpoint
"""

from configs import common


def get_config():
  config = common.base_config('epic_kitchens_fe_large')
  common.set_video_dataset(
    config, num_classes=397, sizes=common.EPIC_KITCHENS_SIZES, stride=1, color_augment=False
  )
  config.model_name = 'vivit_multihead_classification'
  config.dataset_configs.class_splits = (300, 97)
  config.dataset_configs.split_names = ('noun', 'verb')
  common.set_model(config, 'L', 'factorized_encoder', temporal_layers=4)
  common.set_schedule(
    config, train_size=common.EPIC_KITCHENS_SIZES['train'], epochs=50, base_lr=0.5
  )
  common.set_regularisers(
    config, rand_augment=(2, 15), stochastic_depth=0.2, label_smoothing=0.2, mixup=0.1
  )
  common.set_imagenet21k_init(config)
  return config

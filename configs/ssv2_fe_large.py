"""ViViT-L/16x2 factorised encoder on Something-Something v2 (appendix Table 7).

SSv2 labels depend on the direction of motion ("pushing left to right"), so the
horizontal flip is off.

Usage: python main.py --config=configs/ssv2_fe_large.py --workdir=DIR \
  --config.dataset_configs.base_dir=/path/to/ssv2 \
  --config.init_from.checkpoint_path=/path/to/k400_vivit_l_fe_checkpoint
"""

from configs import common


def get_config():
  config = common.base_config('ssv2_fe_large')
  common.set_video_dataset(
    config, num_classes=174, sizes=common.SSV2_SIZES, stride=1, color_augment=False
  )
  config.dataset_configs.random_flip = False
  common.set_model(config, 'L', 'factorized_encoder', temporal_layers=4)
  common.set_schedule(config, train_size=common.SSV2_SIZES['train'], epochs=35, base_lr=0.5)
  common.set_regularisers(
    config, rand_augment=(2, 20), stochastic_depth=0.3, label_smoothing=0.3, mixup=0.3
  )
  common.set_imagenet21k_init(config)
  return config

"""ViViT-L/16x2 factorised encoder (24 temporal layers) on Kinetics-600.

Usage: python main.py --config=configs/k600_fe_large.py --workdir=DIR \
  --config.dataset_configs.base_dir=/path/to/kinetics600 \
  --config.init_from.checkpoint_path=/path/to/imagenet21k_ViT-L_16.npz
"""

from configs import common


def get_config():
  config = common.base_config('k600_fe_large')
  common.set_video_dataset(config, num_classes=600, sizes=common.KINETICS_600_SIZES)
  common.set_model(config, 'L', 'factorized_encoder', temporal_layers=24)
  common.set_schedule(config, train_size=common.KINETICS_600_SIZES['train'], epochs=30, base_lr=0.1)
  common.set_imagenet21k_init(config)
  return config

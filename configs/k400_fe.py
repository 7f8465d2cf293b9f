"""ViViT-B/16x2 Model 2 (factorised encoder, 4 temporal layers) on Kinetics-400.

Paper Table 2: 78.8 top-1.

Usage: python main.py --config=configs/k400_fe.py --workdir=DIR \
  --config.dataset_configs.base_dir=/path/to/kinetics400 \
  --config.init_from.checkpoint_path=/path/to/imagenet21k_ViT-B_16.npz
"""

from configs import common


def get_config():
  config = common.base_config('k400_fe')
  common.set_video_dataset(config, num_classes=400, sizes=common.KINETICS_400_SIZES)
  common.set_model(config, 'B', 'factorized_encoder', temporal_layers=4, classifier='token')
  common.set_schedule(config, train_size=common.KINETICS_400_SIZES['train'], epochs=30, base_lr=0.1)
  common.set_imagenet21k_init(config)
  return config

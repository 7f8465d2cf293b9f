"""The paper's average-pool baseline: Model 2 with no temporal encoder (Table 2: 75.8).

Usage: python main.py --config=configs/k400_fe_baseline.py --workdir=DIR \
  --config.dataset_configs.base_dir=/path/to/kinetics400
"""

from configs import k400_fe


def get_config():
  config = k400_fe.get_config()
  config.experiment_name = 'k400_fe_baseline'
  config.model.attention_config.spatial_only_baseline = True
  return config

"""ViViT-L/16x2 Model 2 (factorised encoder, 4 temporal layers) on EPIC-Kitchens-100.

Noun and verb heads. The recipe is the paper's appendix Table 7 for EPIC-Kitchens, but for the
initialisation: the paper starts from a Kinetics-400 model (+K400 init in its regularisation
ablation), while init_from here reads an ImageNet-21k ViT; give a Kinetics workdir as the comment
at init_from says. Gradient clipping at norm 1 comes from Scenic's config.

Where it departs from Scenic's epic_kitchens/vivit_large_factorised_encoder.py (the same model,
learning rate, regularisers and epochs):
- init_from reads an ImageNet-21k ViT .npz (checkpoint_format 'big_vision'); Scenic's leaves the
  path unset, suggests a Kinetics or an ImageNet checkpoint, and reads Scenic's format. (That
  file does not parse as published: a comment line in its init_from section lacks its '#'.)
- augment_on_device: the resize stays on the host with RandAugment; the train step normalises.
- test_batch_size is left at its default, one video per device, which Scenic's 8 assumes.
- checkpoint_steps and log_eval_steps are 1000; Scenic's config checkpoints every 500 steps.
Where the library's defaults differ from Scenic's behaviour (gradients clipped after the
cross-device mean, for one): docs/scenic_differences.md; RandAugment's contrast: docs/data.md.

Usage: python main.py --config=configs/epic_kitchens_fe_large.py --workdir=DIR \
  --config.dataset_configs.base_dir=/path/to/epic_kitchens \
  --config.init_from.checkpoint_path=/path/to/imagenet21k_ViT-L_16.npz
"""

from vivit_jax.config import get_defaults


def get_config():
  config = get_defaults()
  config.experiment_name = 'epic_kitchens_fe_large'
  config.model_name = 'vivit_multihead_classification'

  # Dataset: DMVR-format TFRecords under --config.dataset_configs.base_dir.
  config.dataset_name = 'video_tfrecord_dataset'
  data = config.dataset_configs
  data.tables = {
    'train': 'train.tfrecord@1024',
    'validation': 'validation.tfrecord@1024',
    'test': 'test.tfrecord@1024',
  }
  # The schedule below is computed from the train count.
  data.examples_per_subset = {'train': 67217, 'validation': 9668, 'test': 9668}
  # One output of 300 + 97 logits, cut into the noun and verb heads for the loss and the
  # per-head and action accuracies.
  data.num_classes = 397
  data.class_splits = (300, 97)
  data.split_names = ('noun', 'verb')
  data.num_frames = 32
  data.stride = 1
  data.min_resize = 256
  data.crop_size = 224
  data.zero_centering = True  # Frames in [-1, 1], as in the paper.

  # Augmentation (appendix Table 7): scale jitter, random crop, flip, RandAugment.
  data.random_flip = True
  aug = data.augmentation_params
  aug.do_jitter_scale = True
  aug.scale_min_factor = 0.9
  aug.scale_max_factor = 1.33
  aug.prob_scale_jitter = 1.0
  aug.do_rand_augment = True
  aug.rand_augment_num_layers = 2
  aug.rand_augment_magnitude = 15
  aug.do_color_augment = False  # RandAugment replaces it: the two are refused together.
  # This recipe trains on GPUs and TPUs: normalisation and erasing run in the train step there,
  # and the host sends uint8 clips, resized and RandAugmented (docs/data.md, "Throughput"). Set
  # False to train on CPU, where tf.data does them faster.
  data.augment_on_device = True

  # Test as the paper does: 4 temporal views x 3 spatial crops per video, logits averaged.
  data.do_multicrop_test = True
  data.log_test_epochs = 5
  data.num_test_clips = 4
  data.do_three_spatial_crops = True

  # Model 2: a ViT-L encoder over each frame's tubelets, then 4 layers over the frames.
  model = config.model
  model.attention_config.type = 'factorized_encoder'
  model.hidden_size = 1024
  model.spatial_transformer.update(num_heads=16, mlp_dim=4096, num_layers=24)
  model.temporal_transformer.update(num_heads=16, mlp_dim=4096, num_layers=4)
  model.patches.size = (16, 16, 2)
  model.classifier = 'token'
  # ViT's 2D kernel on the tubelet's central frame: the best of the paper's tubelet inits
  # (79.2 top-1 against 77.6 for filter inflation, on Model 1).
  model.temporal_encoding_config.method = '3d_conv'
  model.temporal_encoding_config.kernel_init_method = 'central_frame_initializer'
  # Regularisers (appendix Table 7). Stochastic depth grows linearly with depth to this rate.
  model.stochastic_droplayer_rate = 0.2
  config.label_smoothing = 0.2
  config.mixup.alpha = 0.1

  # Optimiser and schedule (appendix Table 7).
  config.optimizer = 'momentum'
  config.optimizer_configs.momentum = 0.9
  config.l2_decay_factor = 0.0
  config.max_grad_norm = 1.0
  config.batch_size = 64
  config.num_training_epochs = 50.0
  steps_per_epoch = data.examples_per_subset['train'] // config.batch_size
  lr = config.lr_configs
  lr.learning_rate_schedule = 'compound'
  lr.factors = 'constant * cosine_decay * linear_warmup'
  lr.base_learning_rate = 0.5
  lr.warmup_steps = 2.5 * steps_per_epoch
  lr.steps_per_cycle = int(config.num_training_epochs * steps_per_epoch)

  # Initialise from ImageNet-21k ViT-L/16: --config.init_from.checkpoint_path=... (a Kinetics
  # model instead: its workdir, with --config.init_from.checkpoint_format=orbax).
  config.init_from.checkpoint_path = None
  config.init_from.checkpoint_format = 'big_vision'
  config.init_from.positional_embed_size_change = 'tile'

  # More often than once an epoch (1050 steps), so a preempted run loses little.
  config.checkpoint_steps = 1000
  config.log_eval_steps = 1000
  return config

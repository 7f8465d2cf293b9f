"""The configuration schema: every key vivit-jax reads, with its default.

Configs use Scenic's key names so that a Scenic ViViT config ports by changing
paths. Unlike Scenic, which reads keys with `.get(key, default)` and so
silently ignores typos, every config is checked against this schema before
anything is built: an unknown key fails with the name of the closest known key.

`get_defaults()` is the one place where library defaults live. Experiment
configs (`configs/*.py`) override them; `resolve(config)` fills in whatever an
experiment config leaves out and validates the result.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from absl import logging
from ml_collections import config_dict

from vivit_jax import errors
from vivit_jax.errors import UserError

# Sub-trees whose keys are free-form (split names, a source model's config).
FREE_FORM_KEYS = frozenset(
  {
    'dataset_configs.tables',
    'dataset_configs.examples_per_subset',
    'init_from.model_config',
  }
)

# Keys Scenic's released configs set that mean nothing here. They are accepted
# so those configs load unchanged; `datset_configs` is a typo in Scenic's own
# config files.
IGNORED_SCENIC_KEYS = frozenset({'datset_configs'})

ATTENTION_TYPES = (
  'spacetime',
  'factorized_encoder',
  'factorized_self_attention_block',
  'factorized_dot_product_attention',
)
TEMPORAL_ENCODINGS = ('3d_conv', 'temporal_sampling')
KERNEL_INITS = (
  None,
  'central_frame_initializer',
  'average_frame_initializer',
  'scenic_central_frame_initializer',
)
CLASSIFIERS = ('token', 'gap', 'gmp', 'gsp')
ATTENTION_IMPLEMENTATIONS = ('default', 'xla', 'cudnn', 'splash')
DTYPES = ('float32', 'bfloat16')
PARALLELISM_MODES = ('pmap', 'mesh')


def _model_defaults() -> ml_collections.ConfigDict:
  m = ml_collections.ConfigDict()
  m.hidden_size = config_dict.placeholder(int)
  # Single-encoder variants (Models 1, 3 and 4).
  m.num_heads = config_dict.placeholder(int)
  m.mlp_dim = config_dict.placeholder(int)
  m.num_layers = config_dict.placeholder(int)
  # Factorized encoder (Model 2).
  for name in ('spatial_transformer', 'temporal_transformer'):
    enc = ml_collections.ConfigDict()
    enc.num_heads = config_dict.placeholder(int)
    enc.mlp_dim = config_dict.placeholder(int)
    enc.num_layers = config_dict.placeholder(int)
    m[name] = enc
  m.patches = ml_collections.ConfigDict({'size': (16, 16, 2)})
  m.attention_config = ml_collections.ConfigDict(
    {
      'type': 'spacetime',
      'attention_order': 'time_space',  # Model 3 only.
      'spatial_only_baseline': False,  # Model 2 only: the average-pool baseline.
      'attention_kernel_init_method': 'xavier',  # Model 3 only, as Scenic.
      # Model 3 from scratch only: zero each temporal attention's output
      # projection, so every block starts as identity over time (as
      # init_from.temporal_attention_init='zero' does from an image model).
      # False is Scenic; see docs/scenic_differences.md.
      'zero_init_temporal_out': False,
    }
  )
  m.temporal_encoding_config = ml_collections.ConfigDict(
    {
      'method': '3d_conv',
      'kernel_init_method': config_dict.placeholder(str),
      'n_sampled_frames': config_dict.placeholder(int),  # temporal_sampling only.
    }
  )
  m.classifier = 'gap'
  m.representation_size = config_dict.placeholder(int)
  m.dropout_rate = 0.0
  m.attention_dropout_rate = 0.0
  m.stochastic_droplayer_rate = 0.0
  # Rescale kept residual branches by 1/(1-p) so training and evaluation see
  # the same expected activation. False reproduces Scenic, which does not.
  m.stochastic_depth_rescale = True
  m.return_prelogits = False
  m.return_preclassifier = False
  # 'default'/'xla'/'cudnn' as jax.nn.dot_product_attention takes them, or
  # 'splash': Pallas's fused TPU kernel (XLA's attention on other platforms).
  m.attention_implementation = 'default'
  m.remat = False
  return m


def _dataset_defaults() -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict()
  d.base_dir = config_dict.placeholder(str)
  d.tables = ml_collections.ConfigDict()
  d.examples_per_subset = ml_collections.ConfigDict()
  d.num_classes = config_dict.placeholder(int)
  # EPIC-Kitchens style multi-head output: sizes and names of the heads.
  d.class_splits = config_dict.placeholder(tuple)
  d.split_names = config_dict.placeholder(tuple)
  d.num_frames = 32
  d.stride = 2
  # Frame rate of the dataset's frames (make_tfrecords --fps, default 25): the
  # rate at which vivit_jax.tools.predict resamples a video before sampling clips.
  d.fps = 25.0
  # dataset_name='video_files': the rate videos are resampled to (unset: fps),
  # the class names file (unset: the workdir's label_map.txt, else the sorted
  # train labels), decoding threads (unset: the CPU count) and the seconds
  # after which a stalled decode is abandoned and reported as bad input.
  d.video_fps = config_dict.placeholder(float)
  d.label_map = config_dict.placeholder(str)
  d.decode_workers = config_dict.placeholder(int)
  d.decode_timeout_s = 60.0
  # The rate at which a folder of frames (a video given as its JPEG frames, as
  # EPIC-Kitchens ships them) was extracted; unset: the rate it is read at
  # (video_fps, else fps), so each frame file is one frame of the clip.
  d.frame_folder_fps = config_dict.placeholder(float)
  d.min_resize = 256
  d.crop_size = 224
  d.one_hot_labels = True
  d.zero_centering = True
  d.random_flip = True
  # Train batches leave the host as uint8 crop windows (flipped; resized and
  # RandAugmented when RandAugment is on) with each clip's drawn color change,
  # erasing box and window size; the train step does the resize, color,
  # normalisation and random erasing on the devices
  # (vivit_jax/data/device_augment.py). Validation and test are unchanged.
  d.augment_on_device = False
  d.skip_corrupt = False
  # Clips may list several classes in clip/label/index (multi-hot targets); when
  # False such a record is an error rather than a silently wrong label.
  d.multi_label = False
  # Write the procedural dataset of vivit_jax/data/synthetic.py into base_dir
  # when its files are missing (configs/synthetic.py sets this).
  d.generate_synthetic_if_missing = False
  # Which synthetic data: 'motion' (8 motions) or 'temporal_order' (6 orders of
  # the same three motions; see vivit_jax/data/synthetic.py).
  d.synthetic_variant = 'motion'
  d.shuffle_buffer_size = 256
  d.do_multicrop_test = False
  d.log_test_epochs = 1
  d.num_test_clips = 4
  d.test_batch_size = config_dict.placeholder(int)
  d.do_three_spatial_crops = False
  d.keep_test_key = True
  d.prefetch_to_device = 2
  d.tfds_name = config_dict.placeholder(str)
  d.tfds_data_dir = config_dict.placeholder(str)
  aug = ml_collections.ConfigDict()
  aug.do_jitter_scale = False
  aug.scale_min_factor = 0.9
  aug.scale_max_factor = 1.33
  aug.prob_scale_jitter = 1.0
  aug.do_color_augment = False
  aug.prob_color_augment = 0.8
  aug.prob_color_drop = 0.1
  aug.do_rand_augment = False
  aug.rand_augment_num_layers = 2
  aug.rand_augment_magnitude = 10
  # 'mean': RandAugment's contrast blends towards the clip's mean grey level (PIL's
  # meaning); 'model_garden': towards pixel count / 256, TF Model Garden's bug, which
  # Scenic trains with (see vivit_jax/data/rand_augment.py).
  aug.rand_augment_contrast_pivot = 'mean'
  aug.do_random_erasing = False
  aug.prob_random_erasing = 0.25
  d.augmentation_params = aug
  return d


def get_defaults() -> ml_collections.ConfigDict:
  """Returns every known key with its library default."""
  c = ml_collections.ConfigDict()
  c.experiment_name = ''
  c.model_name = 'vivit_classification'
  c.trainer_name = 'vivit_trainer'
  c.dataset_name = 'video_tfrecord_dataset'
  c.data_dtype_str = 'float32'
  c.model_dtype_str = 'float32'
  c.rng_seed = 0
  c.model = _model_defaults()
  c.dataset_configs = _dataset_defaults()

  # Optimisation.
  c.optimizer = 'momentum'
  c.optimizer_configs = ml_collections.ConfigDict(
    {
      'momentum': 0.9,
      'beta1': 0.9,
      'beta2': 0.999,
      'epsilon': 1e-8,
      'weight_decay': 0.0,
      'skip_scale_and_bias_regularization': True,
      # A regular expression over Scenic's '/'-joined parameter names (matched
      # at the start, as re.match): matching parameters are never updated.
      'freeze_params': config_dict.placeholder(str),
    }
  )
  c.l2_decay_factor = config_dict.placeholder(float)
  c.max_grad_norm = config_dict.placeholder(float)
  # True clips each device's gradient before the cross-device mean, as Scenic's
  # ViViT trainer does; the default clips the mean (independent of the device count).
  c.clip_grads_per_device = False
  c.label_smoothing = config_dict.placeholder(float)
  c.mixup = ml_collections.ConfigDict(
    {
      'alpha': config_dict.placeholder(float),
      'cutmix_alpha': config_dict.placeholder(float),
      'cutmix_switch_prob': 0.5,
    }
  )
  c.lr_configs = ml_collections.ConfigDict(
    {
      'learning_rate_schedule': 'compound',
      'factors': 'constant',
      'base_learning_rate': 0.1,
      'warmup_steps': 0.0,  # Steps; a float, as Scenic's configs write 2.5 epochs.
      'steps_per_cycle': config_dict.placeholder(int),
      'timescale': 10_000,
      'decay_events': config_dict.placeholder(tuple),
      'decay_factors': config_dict.placeholder(tuple),
    }
  )
  c.num_training_steps = config_dict.placeholder(int)
  c.num_training_epochs = config_dict.placeholder(float)
  c.batch_size = config_dict.placeholder(int)
  c.eval_batch_size = config_dict.placeholder(int)
  c.multicrop_clips_per_device = 2
  c.multicrop_softmax_logits = False

  # How the step is spread over devices (vivit_jax/train/parallel.py): 'pmap'
  # replicates the state on every device; 'mesh' runs one jit program over a
  # ('data', 'fsdp') mesh, with parameters and optimiser state split over
  # mesh.fsdp devices (-1: all); arrays of fewer than mesh.min_sharded_size
  # elements (biases, norms) stay whole. Same per-example semantics; checkpoints
  # move between the two and between device counts.
  c.parallelism = 'pmap'
  c.mesh = ml_collections.ConfigDict({'fsdp': 1, 'min_sharded_size': 2**14})

  # Initialisation from a pretrained checkpoint.
  c.init_from = ml_collections.ConfigDict(
    {
      'checkpoint_path': config_dict.placeholder(str),
      'checkpoint_format': config_dict.placeholder(str),
      'model_config': ml_collections.ConfigDict(),
      'restore_positional_embedding': True,
      'restore_input_embedding': True,
      'positional_embed_size_change': 'tile',
      'restore_output_proj': False,
      # 2D -> 3D tubelet kernel: 'central_frame_initializer',
      # 'average_frame_initializer' or 'average_arp_frame_initializer'; unset
      # uses model.temporal_encoding_config.kernel_init_method, else central.
      'kernel_init_method': config_dict.placeholder(str),
      # Model 3 from a ViT: 'zero' (output projection zeroed, so each temporal
      # attention starts as an identity residual; paper section 3.4) or
      # 'copy_spatial' (Scenic: a full copy of the spatial attention).
      'temporal_attention_init': 'zero',
    }
  )

  # Logging and checkpointing.
  c.write_summary = True
  c.checkpoint = True
  c.checkpoint_steps = config_dict.placeholder(int)
  c.max_checkpoints_to_keep = 3
  c.log_summary_steps = 100
  c.log_eval_steps = config_dict.placeholder(int)
  c.count_flops = True
  c.num_profile_steps = (
    0  # Trainer: trace this many steps (from the 10th) into the workdir; 0 = off.
  )
  c.debug_train = False
  c.debug_eval = False
  return c


class ConfigError(UserError, ValueError):
  """A config has an unknown key, a value of the wrong type, or bad values."""


def _all_paths(tree: ml_collections.ConfigDict, prefix: str = '') -> list[str]:
  paths = []
  for key in tree.keys():
    path = f'{prefix}.{key}' if prefix else key
    paths.append(path)
    if isinstance(tree[key], ml_collections.ConfigDict) and path not in FREE_FORM_KEYS:
      paths.extend(_all_paths(tree[key], path))
  return paths


def _closest(key: str, known: Sequence[str], prefix: str = '') -> str:
  """A hint naming the closest known key, here or elsewhere in the schema."""
  paths = _all_paths(get_defaults())
  leaves = [p.rsplit('.', 1)[-1] for p in paths]
  if key in leaves:  # The right key at the wrong level.
    return f" Did you mean '{paths[leaves.index(key)]}'?"
  match = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
  if match:
    return f" Did you mean '{prefix + '.' if prefix else ''}{match[0]}'?"
  match = difflib.get_close_matches(key, leaves, n=1, cutoff=0.8)
  if match:
    return f" Did you mean '{paths[leaves.index(match[0])]}'?"
  return ''


def _as_dict(value: Any) -> dict[str, Any] | None:
  if isinstance(value, ml_collections.ConfigDict):
    return {k: value[k] for k in value.keys()}
  if isinstance(value, Mapping):
    return dict(value)
  return None


def _check_type(path: str, default: Any, value: Any, field_type: Any) -> None:
  """Raises ConfigError when `value` cannot stand where `default` does."""
  if value is None:
    return
  expected = field_type if default is None else type(default)
  if expected is None or expected is type(None):
    return
  if expected is float and isinstance(value, int) and not isinstance(value, bool):
    return
  if expected in (tuple, list) and isinstance(value, (tuple, list)):
    return
  if expected is int and isinstance(value, bool):
    raise ConfigError(f"Config key '{path}' must be an int, got the bool {value!r}.")
  if not isinstance(value, expected):
    raise ConfigError(
      f"Config key '{path}' must be of type {expected.__name__}, got "
      f'{type(value).__name__} {value!r}. Fix the value in the config or on the '
      'command line.'
    )


def _unknown_key(path: str, known: Sequence[str], given: str = '') -> ConfigError:
  """The error for the unknown key `path`; `known` are the keys beside it."""
  prefix, _, key = path.rpartition('.')
  where = f' (given as {given})' if given else ''
  return ConfigError(
    f"Unknown config key '{path}'{where}.{_closest(key, known, prefix)} Known keys under "
    f"'{prefix or '<root>'}': {', '.join(sorted(known))}."
  )


def check_key(path: str, given: str = '') -> None:
  """Raises ConfigError unless the dotted `path` names a key of the schema.

  Used on command-line overrides (`--config.model.hidden_size=...`) before
  ml_collections parses them, whose own error for a misspelt key is an escaped
  AttributeError deep inside flag parsing.

  Args:
    path: e.g. 'model.hidden_size'.
    given: the command-line argument, quoted in the message.
  """
  tree = get_defaults()
  parts = path.split('.')
  for i, key in enumerate(parts):
    here = '.'.join(parts[: i + 1])
    if here in IGNORED_SCENIC_KEYS:
      return
    if not isinstance(tree, ml_collections.ConfigDict) or key not in tree:
      if not isinstance(tree, ml_collections.ConfigDict):
        raise ConfigError(
          f"Config key '{'.'.join(parts[:i])}' is a value, not a group of settings, so "
          f"'{path}'{f' (given as {given})' if given else ''} does not exist."
        )
      raise _unknown_key(here, list(tree.keys()), given)
    if here in FREE_FORM_KEYS:
      return
    tree = tree[key]


def _merge(defaults: ml_collections.ConfigDict, user: Any, prefix: str) -> None:
  """Writes `user` over `defaults` in place, rejecting unknown keys."""
  user_dict = _as_dict(user)
  if user_dict is None:
    raise ConfigError(f"Config key '{prefix}' must be a dict of settings, got {user!r}.")
  known = list(defaults.keys())
  for key, value in user_dict.items():
    path = f'{prefix}.{key}' if prefix else key
    if path in IGNORED_SCENIC_KEYS:
      logging.warning("Ignoring Scenic config key '%s' (not used by vivit-jax).", path)
      continue
    if key not in known:
      raise _unknown_key(path, known)
    default = defaults[key]
    if path in FREE_FORM_KEYS:
      as_dict = _as_dict(value)
      defaults[key] = ml_collections.ConfigDict(as_dict if as_dict is not None else {})
    elif isinstance(default, ml_collections.ConfigDict):
      if value is None:
        raise ConfigError(f"Config key '{path}' must be a dict of settings, got None.")
      _merge(default, value, path)
    else:
      field = defaults.get_ref(key)
      _check_type(path, default, value, field.get_type())
      with defaults.ignore_type():
        defaults[key] = tuple(value) if isinstance(value, list) else value


def with_overrides(
  config: ml_collections.ConfigDict | Mapping[str, Any], overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
  """A resolved copy of `config` with each dotted key of `overrides` set, as
  `--config.KEY=VALUE` would set it (a list becomes a tuple).

  Raises:
    ConfigError: an override names no key of the config (the message names the
      closest one).
  """
  out = resolve(config)
  for path, value in overrides.items():
    keys = path.split('.')
    node = out
    for depth, key in enumerate(keys):
      if key not in node:
        raise _unknown_key('.'.join(keys[: depth + 1]), list(node.keys()))
      if depth < len(keys) - 1:
        node = node[key]
    with node.ignore_type():
      node[keys[-1]] = tuple(value) if isinstance(value, list) else value
  return resolve(out)


def resolve(config: ml_collections.ConfigDict | Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Returns the defaults overridden by `config`, checked key by key.

  Args:
    config: an experiment config (ConfigDict or nested dict).

  Returns:
    A new unlocked ConfigDict holding every known key.

  Raises:
    ConfigError: a key is unknown (the message names the closest known key), a
      value has the wrong type, or the clip settings contradict each other.
  """
  resolved = get_defaults()
  _merge(resolved, config, '')
  _check_clip_settings(resolved.dataset_configs)
  _check_parallelism(resolved)
  return resolved


def _check_parallelism(c: ml_collections.ConfigDict) -> None:
  check_choice('parallelism', c.parallelism, PARALLELISM_MODES)
  if c.mesh.fsdp != -1 and c.mesh.fsdp < 1:
    raise ConfigError(
      f'config.mesh.fsdp={c.mesh.fsdp} must be a number of devices (at least 1), or -1 for all.'
    )
  if c.parallelism == 'pmap' and c.mesh.fsdp != 1:
    raise ConfigError(
      f'config.mesh.fsdp={c.mesh.fsdp} splits the state only under the mesh: add '
      '--config.parallelism=mesh (pmap keeps a whole copy on every device).'
    )


def _check_clip_settings(dc: ml_collections.ConfigDict) -> None:
  """Refuses clip settings no clip can be made with, before any data is read.

  The model's own keys (patch size against crop size, tubelet depth against
  num_frames) are checked by `vivit_jax.models.describe_model`.
  """
  for key in ('num_frames', 'stride', 'crop_size', 'num_test_clips', 'test_batch_size'):
    if dc[key] is not None and dc[key] < 1:
      raise ConfigError(f'dataset_configs.{key}={dc[key]} must be at least 1.')
  for key in ('fps', 'video_fps', 'decode_timeout_s'):
    if dc[key] is not None and not dc[key] > 0:
      raise ConfigError(f'dataset_configs.{key}={dc[key]} must be positive.')
  if dc.min_resize is not None and dc.min_resize < 0:
    raise ConfigError(
      f'dataset_configs.min_resize={dc.min_resize} must be positive, or 0 to keep the size '
      'of the frames.'
    )
  if dc.min_resize and dc.crop_size and dc.crop_size > dc.min_resize:
    raise ConfigError(
      f'dataset_configs.crop_size={dc.crop_size} is larger than dataset_configs.min_resize='
      f'{dc.min_resize}: evaluation resizes the frames to a short side of {dc.min_resize} '
      f'pixels, which holds no {dc.crop_size}-pixel crop. Set min_resize to at least '
      f'crop_size (--config.dataset_configs.min_resize={dc.crop_size}; the paper uses 256 '
      'for crops of 224), or lower crop_size.'
    )
  aug = dc.augmentation_params
  if aug.do_jitter_scale and not 0 < aug.scale_min_factor <= aug.scale_max_factor:
    raise ConfigError(
      f'dataset_configs.augmentation_params.scale_min_factor={aug.scale_min_factor} and '
      f'scale_max_factor={aug.scale_max_factor} are no range of zoom factors: they need '
      '0 < scale_min_factor <= scale_max_factor (the paper: 0.9 and 1.33).'
    )
  for key in ('prob_scale_jitter', 'prob_color_augment', 'prob_color_drop', 'prob_random_erasing'):
    if not 0 <= aug[key] <= 1:
      raise ConfigError(
        f'dataset_configs.augmentation_params.{key}={aug[key]} is a probability: it must be '
        'in [0, 1].'
      )


def clip_shape(dataset_configs: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
  """(T, H, W, 3) of one clip as the input pipeline makes it: the one place it is derived.

  The model description and the dataset metadata both read it, so the shape the
  model is built for is the shape the data has.
  """
  dc = dataset_configs
  return (dc.num_frames, dc.crop_size, dc.crop_size, 3)


def check_choice(path: str, value: Any, choices: Sequence[Any]) -> None:
  """Raises ConfigError unless `value` is one of `choices`."""
  if value not in choices:
    raise ConfigError(
      f"Config key '{path}' is {value!r}; expected one of {', '.join(map(repr, choices))}."
    )


def batch_split_problem(name: str, total: int, hosts: int, local_devices: int) -> str | None:
  """The message for a batch size that does not split over the devices, or None if it does.

  Args:
    name: the config key, e.g. 'batch_size'.
    total: its value, the global batch size.
    hosts: the number of processes.
    local_devices: devices per process.
  """
  devices = hosts * local_devices
  if total % devices == 0 and total > 0:
    return None
  per_host = f'{hosts} hosts x {local_devices} local devices' if hosts > 1 else '1 host'
  example = errors.nearest_multiples(total, devices)
  return (
    f'config.{name}={total} does not split evenly over the {devices} devices ({per_host}): '
    f'set it to a multiple of {devices}, e.g. {example} (--config.{name}=...).'
  )


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """Loads `get_config()` from a config file, as `--config=path` does."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Config file {path!r} does not exist.')
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f'_vivit_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()

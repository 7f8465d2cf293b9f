"""The static settings of clip making, read once from `dataset_configs`.

`ClipSpec` (sampling, resizing, cropping, labels, test views) and its
`Augmentation` are frozen dataclasses whose fields have no defaults: the
defaults live in `vivit_jax.config`, and `from_config` is the one place that
reads these keys. Everything that makes clips (`pipeline`, `video_files`,
inference) reads them by attribute.
"""

from __future__ import annotations

import dataclasses
import math

import ml_collections

from vivit_jax.config import ConfigError
from vivit_jax.data import rand_augment


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """The train-time augmentation settings, `dataset_configs.augmentation_params`.

  Fields are named as the config keys (see `vivit_jax.config` for each one's
  meaning and default). Every construction, `dataclasses.replace` included,
  runs the checks of `__post_init__`.
  """

  do_jitter_scale: bool
  scale_min_factor: float
  scale_max_factor: float
  prob_scale_jitter: float
  do_color_augment: bool
  prob_color_augment: float
  prob_color_drop: float
  do_rand_augment: bool
  rand_augment_num_layers: int
  rand_augment_magnitude: float
  rand_augment_contrast_pivot: str
  do_random_erasing: bool
  prob_random_erasing: float

  @classmethod
  def from_config(cls, aug: ml_collections.ConfigDict) -> Augmentation:
    """Reads `dataset_configs.augmentation_params` of a resolved config."""
    return cls(**{field.name: getattr(aug, field.name) for field in dataclasses.fields(cls)})

  def __post_init__(self) -> None:
    # Scenic applies at most one of RandAugment and color augmentation (it
    # warns and keeps RandAugment); asking for both is a config mistake, so it
    # stops here naming the keys.
    if self.do_rand_augment and self.do_color_augment:
      raise ConfigError(
        'dataset_configs.augmentation_params.do_rand_augment and .do_color_augment are both '
        'True; Scenic applies only one of them. Set one to False (the paper uses RandAugment '
        'for SSv2 and EPIC-Kitchens, color augmentation for Kinetics).'
      )
    if self.rand_augment_contrast_pivot not in rand_augment.CONTRAST_PIVOTS:
      raise ConfigError(
        'dataset_configs.augmentation_params.rand_augment_contrast_pivot is '
        f"{self.rand_augment_contrast_pivot!r}; expected 'mean' or 'model_garden'."
      )

  @property
  def scale_range(self) -> tuple[float, float] | None:
    """(min, max) factor of the scale jitter, or None when it is off."""
    if not self.do_jitter_scale:
      return None
    return (self.scale_min_factor, self.scale_max_factor)


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """Static settings of clip making, read once from `dataset_configs`."""

  num_frames: int
  stride: int
  min_resize: int
  crop_size: int
  zero_centering: bool
  random_flip: bool
  augment_on_device: bool
  num_classes: int
  class_splits: tuple[int, ...] | None
  split_names: tuple[str, ...]
  multi_label: bool
  num_test_clips: int
  three_crops: bool
  augmentation: Augmentation

  @property
  def num_views(self) -> int:
    return self.num_test_clips * (3 if self.three_crops else 1)

  @property
  def device_resize(self) -> bool:
    """Train crops are resized in the train step (`augment_on_device` without RandAugment,
    which works on the resized clip and so keeps the resize on the host)."""
    return self.augment_on_device and not self.augmentation.do_rand_augment

  @property
  def device_window(self) -> int:
    """The side the host pads train crop windows to with `device_resize`.

    A window covers `crop_size / scale` source pixels for frames whose short side
    is `min_resize` (as make_tfrecords writes them), at most
    `crop_size / scale_min_factor`, plus two pixels spare for rounding. Larger
    windows (frames bigger than `min_resize`) are resized on the host and sent
    at `crop_size`.
    """
    aug = self.augmentation
    smallest = min(1.0, aug.scale_min_factor) if aug.do_jitter_scale else 1.0
    return math.ceil(self.crop_size / smallest) + 2

  @classmethod
  def from_config(cls, dc: ml_collections.ConfigDict, num_classes: int) -> ClipSpec:
    """Reads `dataset_configs` of a resolved config; `num_classes` comes from the data.

    Raises:
      ConfigError: the augmentation settings contradict each other.
    """
    return cls(
      num_frames=dc.num_frames,
      stride=dc.stride,
      min_resize=dc.min_resize,
      crop_size=dc.crop_size,
      zero_centering=dc.zero_centering,
      random_flip=dc.random_flip,
      augment_on_device=dc.augment_on_device,
      num_classes=num_classes,
      class_splits=tuple(dc.class_splits) if dc.class_splits else None,
      split_names=tuple(dc.split_names or ()),
      multi_label=dc.multi_label,
      num_test_clips=dc.num_test_clips,
      three_crops=dc.do_three_spatial_crops,
      augmentation=Augmentation.from_config(dc.augmentation_params),
    )

"""What a dataset tells the trainer: `DatasetMeta`, and the `TrainingData` protocol.

`build_dataset` returns a `vivit_jax.data.Dataset`; the trainer needs only
what `TrainingData` lists, so tests and custom loaders can hand it any object
with these members (tests/train_fakes.py has one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from vivit_jax.task import Task

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
  """The facts about a dataset that the model, the trainer and the tools read.

  Attributes:
    task: how the labels are read (classes, heads, multi-label).
    input_shape: (T, H, W, 3) of one clip as the pipeline makes it.
    num_train_examples: clips in the train split over all hosts (0 if none).
    num_eval_examples: clips in the validation split over all hosts (0 if none).
    num_test_examples: clips in the test split over all hosts (0 if none).
    num_test_views: views of each test clip (temporal x spatial).
    label_names: class names in label order, or None when the data has no map.
    device_augment: None, or what the train step must apply to each train batch
      on the devices, `(batch, rng) -> f32 inputs` (a
      `vivit_jax.data.device_augment.DeviceAugment`, with
      `dataset_configs.augment_on_device`: the batches then hold u8 'inputs',
      'color', 'erase' and, unless RandAugment is on, 'window').
  """

  task: Task
  input_shape: tuple[int, int, int, int]
  num_train_examples: int
  num_eval_examples: int
  num_test_examples: int
  num_test_views: int
  label_names: Sequence[str] | None
  device_augment: Callable[[dict[str, Any], Any], Any] | None

  @property
  def num_classes(self) -> int:
    return self.task.num_classes


class TrainingData(Protocol):
  """What `train_and_evaluate` needs from a dataset.

  Batches are dicts of numpy arrays with a leading local-device axis:
  'inputs' f32[devices, b, T, H, W, 3] (test: [devices, b, views, T, H, W, 3];
  train: u8 plus 'color' and 'erase' when `meta.device_augment` is set),
  'label' f32[devices, b, C], 'batch_mask' f32[devices, b]; evaluation
  batches also carry 'key' (a clip's name) and are padded to a whole batch,
  with batch_mask 0 on the padding.
  """

  meta: DatasetMeta

  def train_iter(self, start_step: int = 0) -> Iterator[Batch]:
    """Endless training batches; `start_step` resumes the order of a stopped run."""
    ...

  def eval_iter(self, split: str = 'validation') -> Iterator[Batch]:
    """One exact pass over `split`."""
    ...

  def test_iter(self) -> Iterator[Batch]:
    """One exact pass over the test split, every clip as `num_test_views` views."""
    ...

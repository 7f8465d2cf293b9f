"""What the labels of a dataset are: `Task`, read by the data, training and inference.

It sits at the bottom of the package (it imports nothing of it) because the
dataset describes its task, the trainer's losses read it, and the classifier
builds one from a checkpoint's config.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Task:
  """How logits and labels are interpreted.

  Attributes:
    num_classes: total number of logits (sum of the heads for multi-head).
    class_splits: sizes of the heads when the output is multi-head, else None.
    split_names: names of the heads (e.g. ('verb', 'noun')), else None.
    multi_label: labels are independent binary targets (sigmoid loss).
  """

  num_classes: int
  class_splits: tuple[int, ...] | None = None
  split_names: tuple[str, ...] | None = None
  multi_label: bool = False

  @property
  def heads(self) -> tuple[tuple[int, int], ...]:
    """(start, stop) class offsets of each head; one head when not multi-head."""
    splits = self.class_splits or (self.num_classes,)
    bounds, start = [], 0
    for size in splits:
      bounds.append((start, start + size))
      start += size
    return tuple(bounds)

  @property
  def head_names(self) -> tuple[str, ...]:
    if self.split_names:
      return tuple(self.split_names)
    return tuple(f'head{i}' for i in range(len(self.heads)))


def task_from_config(dataset_configs: Any, num_classes: int) -> Task:
  """The task that `config.dataset_configs` describes, for a model of `num_classes` outputs."""
  dc = dataset_configs
  return Task(
    num_classes=int(num_classes),
    class_splits=tuple(dc.class_splits) if dc.class_splits else None,
    split_names=tuple(dc.split_names) if dc.split_names else None,
    multi_label=bool(dc.multi_label),
  )

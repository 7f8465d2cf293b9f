"""Class indices to target vectors, with every bad label reported, never clipped.

Targets are always `f32[C]`: one-hot for single-label data, multi-hot when a
clip lists several classes (`dataset_configs.multi_label=True`), and for
multi-head data (`class_splits`, e.g. EPIC-Kitchens verbs and nouns) the
concatenation of one one-hot vector per head, in `split_names` order.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def label_target(
  label_index: tf.Tensor,
  *,
  num_classes: int,
  class_splits: Sequence[int] | None = None,
  multi_label: bool = False,
  head_names: Sequence[str] = (),
) -> tuple[tf.Tensor, tf.Tensor]:
  """Builds a clip's target and checks its indices.

  Args:
    label_index: int64[L] the clip's class indices; for multi-head data one
      per head (-1 for a head whose index is missing or repeated).
    num_classes: total number of classes (over all heads).
    class_splits: classes per head, or None for a single head.
    multi_label: whether a clip may have several classes.
    head_names: names of the heads, for error messages.

  Returns:
    (target f32[num_classes], error string[]: '' when the labels are valid,
    otherwise what is wrong).
  """
  index = tf.cast(label_index, tf.int32)
  if class_splits:
    return _multi_head(index, class_splits, head_names)
  count = tf.size(index)
  outside = tf.logical_or(index < 0, index >= num_classes)
  padded = tf.concat([index, [0]], 0)
  first_outside = tf.gather(padded, tf.argmax(tf.cast(tf.concat([outside, [True]], 0), tf.int32)))
  error = tf.where(
    count == 0,
    'has no label (clip/label/index is missing or empty)',
    tf.where(
      tf.reduce_any(outside),
      tf.strings.format('has label {} outside [0, {})', (first_outside, num_classes)),
      '',
    ),
  )
  if not multi_label:
    error = tf.where(
      tf.logical_and(tf.equal(error, ''), count > 1),
      tf.strings.format(
        'has {} labels {} but dataset_configs.multi_label is False', (count, index)
      ),
      error,
    )
  safe = tf.clip_by_value(index, 0, num_classes - 1)
  target = tf.reduce_max(tf.one_hot(safe, num_classes), axis=0)
  target = tf.where(count > 0, target, tf.zeros([num_classes]))
  return target, error


def _multi_head(
  index: tf.Tensor, class_splits: Sequence[int], head_names: Sequence[str]
) -> tuple[tf.Tensor, tf.Tensor]:
  names = list(head_names) or [str(i) for i in range(len(class_splits))]
  error = tf.constant('')
  parts = []
  for head, size in reversed(list(enumerate(class_splits))):
    value = index[head]
    error = tf.where(
      value == -1,
      f'has no single index for label head {names[head]!r} (clip/label/{names[head]}/index)',
      tf.where(
        tf.logical_or(value < 0, value >= size),
        tf.strings.format(
          'has label {} outside [0, {}) in head ' + repr(names[head]), (value, size)
        ),
        error,
      ),
    )
  for head, size in enumerate(class_splits):
    parts.append(tf.one_hot(tf.clip_by_value(index[head], 0, size - 1), size))
  return tf.concat(parts, 0), error

"""Targets from class indices: one-hot, multi-hot, multi-head, and every bad label."""

import numpy as np
import tensorflow as tf

from vivit_jax.data import labels


def _target(index, **kw):
  target, error = labels.label_target(tf.constant(index, tf.int64), **kw)
  return target.numpy(), error.numpy().decode()


def test_one_hot():
  target, error = _target([2], num_classes=4)
  np.testing.assert_array_equal(target, [0, 0, 1, 0])
  assert error == ''


def test_multi_hot():
  target, error = _target([0, 3], num_classes=4, multi_label=True)
  np.testing.assert_array_equal(target, [1, 0, 0, 1])
  assert error == ''


def test_several_labels_without_multi_label_is_an_error():
  _, error = _target([0, 3], num_classes=4)
  assert error == 'has 2 labels [0 3] but dataset_configs.multi_label is False'


def test_out_of_range_and_missing():
  assert _target([4], num_classes=4)[1] == 'has label 4 outside [0, 4)'
  assert _target([-1], num_classes=4)[1] == 'has label -1 outside [0, 4)'
  assert _target([], num_classes=4)[1] == 'has no label (clip/label/index is missing or empty)'


def test_multi_head():
  kw = {'num_classes': 5, 'class_splits': (2, 3), 'head_names': ('verb', 'noun')}
  target, error = _target([1, 2], **kw)
  np.testing.assert_array_equal(target, [0, 1, 0, 0, 1])
  assert error == ''
  assert _target([1, 3], **kw)[1] == "has label 3 outside [0, 3) in head 'noun'"
  assert _target([-1, 0], **kw)[1] == (
    "has no single index for label head 'verb' (clip/label/verb/index)"
  )

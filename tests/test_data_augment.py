"""Colour augmentation, RandAugment and random erasing act alike on every frame."""

import numpy as np
import pytest
import tensorflow as tf

from vivit_jax.data import augment, rand_augment


def _clip(t=3):
  frame = np.random.default_rng(0).uniform(0, 1, (1, 12, 12, 3)).astype(np.float32)
  return tf.constant(np.repeat(frame, t, axis=0))


def _same_frames(clip):
  clip = np.asarray(clip)
  for frame in clip[1:]:
    np.testing.assert_allclose(frame, clip[0], atol=1e-6)


def test_color_augment_same_for_all_frames_and_seeded():
  clip = _clip()
  out = augment.color_augment(clip, prob_color=1.0, prob_drop=0.0, seed=tf.constant([1, 2]))
  _same_frames(out)
  assert not np.allclose(out, clip)
  again = augment.color_augment(clip, prob_color=1.0, prob_drop=0.0, seed=tf.constant([1, 2]))
  np.testing.assert_array_equal(out, again)
  assert 0 <= np.min(out) and np.max(out) <= 1


def test_color_drop_and_probability_zero():
  clip = _clip()
  grey = augment.color_augment(clip, prob_color=0.0, prob_drop=1.0, seed=tf.constant([0, 0]))
  np.testing.assert_allclose(grey[..., 0], grey[..., 2])
  same = augment.color_augment(clip, prob_color=0.0, prob_drop=0.0, seed=tf.constant([0, 0]))
  np.testing.assert_array_equal(same, clip)


@pytest.mark.parametrize('op', rand_augment.OPS)
def test_rand_augment_ops_consistent_over_frames(op):
  clip = _clip()
  out = rand_augment.apply_op(clip, op, tf.constant(0.7))
  assert out.shape == clip.shape
  _same_frames(out)
  assert 0 <= np.min(out) and np.max(out) <= 1 + 1e-6
  if op != 'identity':
    assert not np.allclose(out, clip), op


def test_rand_augment_layers_seeded():
  clip = _clip()
  a = rand_augment.rand_augment(clip, num_layers=2, magnitude=10, seed=tf.constant([3, 4]))
  b = rand_augment.rand_augment(clip, num_layers=2, magnitude=10, seed=tf.constant([3, 4]))
  np.testing.assert_array_equal(a, b)
  _same_frames(a)


def test_random_erasing_same_rectangle_in_every_frame():
  clip = tf.zeros([4, 20, 20, 3])
  out = augment.random_erasing(clip, 1.0, tf.constant([5, 6])).numpy()
  erased = np.any(out != 0, axis=-1)
  for frame in erased[1:]:
    np.testing.assert_array_equal(frame, erased[0])
  rows, cols = np.nonzero(erased[0])
  area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
  assert 0.02 * 400 * 0.5 <= area <= 400 / 3 * 1.5
  np.testing.assert_array_equal(augment.random_erasing(clip, 0.0, tf.constant([5, 6])), clip)

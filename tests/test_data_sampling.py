"""Exact frame indices of train, validation and multi-view test sampling."""

import numpy as np
import tensorflow as tf

from vivit_jax.data import sampling


def _train(length, num_frames, stride, seed):
  return sampling.train_indices(length, num_frames, stride, tf.constant([seed, 0])).numpy()


def test_train_window_in_bounds_with_stride():
  starts = set()
  for seed in range(300):
    idx = _train(100, 8, 2, seed)
    np.testing.assert_array_equal(idx, idx[0] + 2 * np.arange(8))
    assert 0 <= idx[0] <= 85 and idx[-1] <= 99
    starts.add(int(idx[0]))
  # Uniform over the 86 possible starts: both ends are reached.
  assert min(starts) <= 3 and max(starts) >= 82 and len(starts) > 60


def test_train_window_same_seed_same_window():
  np.testing.assert_array_equal(_train(100, 8, 2, 7), _train(100, 8, 2, 7))


def test_train_short_video_loops():
  for seed in range(20):
    idx = _train(10, 8, 2, seed)
    np.testing.assert_array_equal(idx, (idx[0] + 2 * np.arange(8)) % 10)
    assert 0 <= idx[0] < 10


def test_centre_window():
  np.testing.assert_array_equal(
    sampling.centre_indices(100, 8, 2).numpy(), [42, 44, 46, 48, 50, 52, 54, 56]
  )
  np.testing.assert_array_equal(sampling.centre_indices(16, 16, 1).numpy(), np.arange(16))
  np.testing.assert_array_equal(sampling.centre_indices(10, 8, 2).numpy(), [0, 2, 4, 6, 8, 0, 2, 4])


def test_multi_view_evenly_spread():
  idx = sampling.multi_view_indices(100, 8, 2, 4).numpy()
  # Starts round(linspace(0, 85, 4)) = 0, 28, 57, 85.
  np.testing.assert_array_equal(idx[:, 0], [0, 28, 57, 85])
  np.testing.assert_array_equal(idx, idx[:, :1] + 2 * np.arange(8))
  np.testing.assert_array_equal(
    sampling.multi_view_indices(100, 8, 2, 1).numpy(), sampling.centre_indices(100, 8, 2)[None]
  )


def test_multi_view_short_video_starts_at_zero():
  idx = sampling.multi_view_indices(5, 4, 2, 3).numpy()
  np.testing.assert_array_equal(idx, np.tile([0, 2, 4, 1], (3, 1)))

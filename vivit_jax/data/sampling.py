"""Which frames of a video make a clip.

A clip is `num_frames` frames taken every `stride` frames, so it spans
`(num_frames - 1) * stride + 1` frames of the video. A video shorter than that
loops: frame indices are taken modulo the video length, so a 10-frame video read
with num_frames=8, stride=2 from start 0 gives frames 0, 2, 4, 6, 8, 0, 2, 4.

- Training: the start is uniform over every window that fits
  (`[0, length - span]`); when none fits, uniform over `[0, length)`.
- Evaluation: the centre window, start `(length - span) // 2` (0 when none fits).
- Multi-view test: `num_clips` windows whose starts are spread evenly from the
  first to the last window that fits (`round(linspace(0, length - span, n))`),
  so the views cover the whole video; all start at 0 when none fits.
"""

from __future__ import annotations

import tensorflow as tf


def clip_span(num_frames: int, stride: int) -> int:
  """Number of video frames one clip covers."""
  return (num_frames - 1) * stride + 1


def _window(start: tf.Tensor, length: tf.Tensor, num_frames: int, stride: int) -> tf.Tensor:
  offsets = tf.range(num_frames, dtype=tf.int32) * stride
  return tf.math.floormod(start + offsets, tf.maximum(length, 1))


def train_indices(length: tf.Tensor, num_frames: int, stride: int, seed: tf.Tensor) -> tf.Tensor:
  """A random window of frame indices.

  Args:
    length: int32[] number of frames of the video.
    num_frames: frames per clip.
    stride: step between consecutive clip frames.
    seed: int32[2] stateless seed.

  Returns:
    int32[num_frames] frame indices, all in [0, length).
  """
  length = tf.cast(length, tf.int32)
  last_start = length - clip_span(num_frames, stride)
  max_start = tf.where(last_start >= 0, last_start, tf.maximum(length - 1, 0))
  start = tf.random.stateless_uniform([], seed, 0, max_start + 1, dtype=tf.int32)
  return _window(start, length, num_frames, stride)


def centre_indices(length: tf.Tensor, num_frames: int, stride: int) -> tf.Tensor:
  """int32[num_frames]: the centre window of a video of `length` frames."""
  length = tf.cast(length, tf.int32)
  start = tf.maximum(length - clip_span(num_frames, stride), 0) // 2
  return _window(start, length, num_frames, stride)


def multi_view_indices(
  length: tf.Tensor, num_frames: int, stride: int, num_clips: int
) -> tf.Tensor:
  """int32[num_clips, num_frames]: windows spread evenly over the video.

  One clip is the centre window, as in evaluation.
  """
  if num_clips == 1:
    return centre_indices(length, num_frames, stride)[None]
  length = tf.cast(length, tf.int32)
  last_start = tf.cast(tf.maximum(length - clip_span(num_frames, stride), 0), tf.float64)
  fractions = tf.range(num_clips, dtype=tf.float64) / (num_clips - 1)
  # tf.round rounds half to even, as numpy does.
  starts = tf.cast(tf.round(fractions * last_start), tf.int32)
  return tf.stack([_window(s, length, num_frames, stride) for s in tf.unstack(starts)])

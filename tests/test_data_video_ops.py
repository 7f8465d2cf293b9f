"""Decoding, resizing, crops, flip and normalisation, with exact pixel values."""

import numpy as np
import tensorflow as tf

from vivit_jax.data import augment, records, video_ops


def _ramp(t=2, h=6, w=10):
  """u8[T,H,W,3] with value 10 * x + y + 100 * frame in channel 0."""
  x = np.arange(w)[None, None, :]
  y = np.arange(h)[None, :, None]
  f = np.arange(t)[:, None, None]
  frames = np.zeros((t, h, w, 3), np.uint8)
  frames[..., 0] = 10 * x + y + 100 * f
  return frames


def _train_crop(frames, *, min_resize, crop_size, scale_range, prob_scale, seed):
  """The train crop of decoded frames as the pipeline makes it: the window, then its resize."""
  shape = tf.shape(frames)
  top, left, h, w = tf.unstack(
    video_ops.crop_window(
      shape[1],
      shape[2],
      min_resize=min_resize,
      crop_size=crop_size,
      scale_range=scale_range,
      prob_scale=prob_scale,
      seed=seed,
    )
  )
  return video_ops.resize_region(frames[:, top : top + h, left : left + w, :], crop_size)


def test_decode_only_sampled_frames():
  encoded = tf.constant(
    [records.encode_jpeg(np.full((4, 4, 3), 8 * i, np.uint8), 100) for i in range(5)]
  )
  frames = video_ops.decode_frames(encoded, tf.constant([[4, 0], [4, 2]])).numpy()
  assert frames.shape == (2, 2, 4, 4, 3)
  np.testing.assert_array_equal(frames[..., 0, 0, 0], [[32, 0], [32, 16]])


def test_first_bad_jpeg():
  good = records.encode_jpeg(np.zeros((8, 8, 3), np.uint8))
  assert video_ops.first_bad_jpeg(tf.constant([good, good])).numpy() == -1
  assert video_ops.first_bad_jpeg(tf.constant([good, good[:-30]])).numpy() == 1
  assert video_ops.first_bad_jpeg(tf.constant([b'', good])).numpy() == 0
  assert video_ops.first_bad_jpeg(tf.constant([good + b'\0\0', b'GIF89a'])).numpy() == 1


def test_short_side_shape_and_resize():
  np.testing.assert_array_equal(video_ops.short_side_shape(240, 320, 256), [256, 341])
  np.testing.assert_array_equal(video_ops.short_side_shape(320, 240, 256), [341, 256])
  frames = _ramp()
  np.testing.assert_array_equal(video_ops.resize_short_side(frames, 6), frames)
  assert video_ops.resize_short_side(frames, 12).shape == (2, 12, 20, 3)


def test_centre_and_three_crops():
  frames = _ramp()
  centre = video_ops.centre_crop(frames, 4).numpy()
  np.testing.assert_array_equal(centre, frames[:, 1:5, 3:7])
  crops = video_ops.three_crops(frames, 6).numpy()
  assert crops.shape == (3, 2, 6, 6, 3)
  for crop, left in zip(crops, [0, 2, 4], strict=True):
    np.testing.assert_array_equal(crop, frames[:, :, left : left + 6])
  portrait = np.transpose(frames, (0, 2, 1, 3))
  crops = video_ops.three_crops(portrait, 6).numpy()
  for crop, top in zip(crops, [0, 2, 4], strict=True):
    np.testing.assert_array_equal(crop, portrait[:, top : top + 6])


def test_random_crop_is_an_exact_window_without_scaling():
  frames = _ramp()
  offsets = set()
  for seed in range(30):
    crop = _train_crop(
      frames, min_resize=6, crop_size=4, scale_range=None, prob_scale=1.0, seed=[seed, 1]
    ).numpy()
    top, left = int(round(crop[0, 0, 0, 0])) % 10, int(round(crop[0, 0, 0, 0])) // 10
    offsets.add((top, left))
    np.testing.assert_allclose(crop, frames[:, top : top + 4, left : left + 4], atol=1e-3)
  assert {t for t, _ in offsets} == {0, 1, 2} and {x for _, x in offsets} == set(range(7))


def test_random_crop_with_scale_jitter_magnifies():
  frames = _ramp(t=1, h=12, w=16)
  frames[..., 0] = 10 * np.arange(16)[None, None, :] + np.arange(12)[None, :, None]
  for seed in range(5):
    crop = _train_crop(
      frames, min_resize=12, crop_size=8, scale_range=(2.0, 2.0), prob_scale=1.0, seed=[0, seed]
    ).numpy()[0, 1:-1, 1:-1, 0]
    crop = crop.astype(float)
    # Twice the size: the ramp climbs half as fast per output pixel (values are
    # rounded to integers, hence the tolerance of 1).
    np.testing.assert_allclose(np.diff(crop, axis=1), 5.0, atol=1)
    np.testing.assert_allclose(np.diff(crop, axis=0).mean(), 0.5, atol=0.1)


def test_flip_is_an_exact_mirror():
  # The train clip's flip happens in augment.finish_clip's one compiled pass.
  frames = tf.constant(_ramp())
  plain, flipped = (
    augment.finish_clip(frames, flip=tf.constant(f), color=None, zero_centering=False).numpy()
    for f in (False, True)
  )
  np.testing.assert_allclose(plain * 255, _ramp(), atol=1e-4)
  np.testing.assert_array_equal(flipped, plain[:, :, ::-1])


def test_normalise():
  x = np.array([0, 51, 255], np.uint8)
  np.testing.assert_allclose(video_ops.normalise(x, True), [-1.0, -0.6, 1.0], atol=1e-6)
  np.testing.assert_allclose(video_ops.normalise(x, False), [0.0, 0.2, 1.0], atol=1e-6)
  np.testing.assert_allclose(video_ops.normalise(np.float32([0.5]), True, 1.0), [0.0])

"""Augmentations as Scenic trains: RandAugment, DMVR color, scale jitter, either/or.

Statistical tests run on random uint8 clips; the color recipe is checked
against TensorFlow's own `tf.image` ops with the same drawn factors.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from vivit_jax import config as config_lib
from vivit_jax.config import ConfigError
from vivit_jax.data import augment, clip_spec, rand_augment, video_ops


def _random_clip(t=3, h=32, w=32, seed=0):
  return tf.constant(np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), np.uint8))


def _corr(a, b):
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  if a.std() == 0 or b.std() == 0:
    return 0.0
  return float(np.corrcoef(a, b)[0, 1])


# Ops whose meaning is to invert (all or part of) the clip, or to push its dark
# pixels up to bright (solarize-add: correlation near 0 at high magnitudes).
_INVERTING = ('invert', 'solarize', 'solarize_add')


@pytest.mark.parametrize('op', rand_augment.OPS)
def test_no_op_blanks_or_inverts_a_clip_at_any_magnitude(op):
  # Cutout's box (half-side 120 at M = 30) is checked on frames larger than
  # it; on a 224 crop it may cover everything at M >= 28, as the op means.
  clip = _random_clip(t=2, h=248, w=248) if op == 'cutout' else _random_clip()
  x = clip.numpy()
  for magnitude in range(31):
    out = rand_augment.apply_op(clip, op, magnitude, tf.constant([magnitude, 1])).numpy()
    assert out.dtype == np.uint8 and out.shape == x.shape
    if op == 'posterize' and magnitude < 3:
      # int(4 * M / 10) = 0 bits: the op keeps nothing.
      assert out.max() == 0
      continue
    assert out.min() < out.max(), (op, magnitude)
    if op not in _INVERTING:
      # An inverted clip has correlation -1; the old signed levels gave that.
      assert _corr(out, x) > 0.3, (op, magnitude)
    if op == 'solarize_add':
      np.testing.assert_array_equal(out[x >= 128], x[x >= 128])


def test_levels_follow_model_garden():
  assert rand_augment.op_args('brightness', 0) == pytest.approx(0.1)
  assert rand_augment.op_args('contrast', 15) == pytest.approx(2.8)
  assert rand_augment.op_args('color', 20) == pytest.approx(3.7)
  assert rand_augment.op_args('posterize', 15) == 6
  assert rand_augment.op_args('solarize', 5) == 128
  assert rand_augment.op_args('solarize_add', 10) == 110
  assert rand_augment.op_args('cutout', 20) == 80
  assert not {'rotate', 'shear_x', 'shear_y', 'translate_x', 'translate_y'} & set(rand_augment.OPS)
  assert len(rand_augment.OPS) == 11


def test_solarize_and_posterize_at_the_ends():
  clip = _random_clip()
  x = clip.numpy()
  seed = tf.constant([0, 0])
  np.testing.assert_array_equal(rand_augment.apply_op(clip, 'solarize', 0, seed), 255 - x)
  for magnitude in (10, 15, 20, 30):  # Threshold >= 256: nothing is inverted.
    np.testing.assert_array_equal(rand_augment.apply_op(clip, 'solarize', magnitude, seed), x)
  np.testing.assert_array_equal(rand_augment.apply_op(clip, 'posterize', 20, seed), x)
  np.testing.assert_array_equal(rand_augment.apply_op(clip, 'posterize', 10, seed), x & 0xF0)
  np.testing.assert_array_equal(rand_augment.apply_op(clip, 'invert', 7, seed), 255 - x)


def test_enhance_ops_blend_as_model_garden():
  clip = _random_clip()
  x = clip.numpy().astype(np.float64)
  seed = tf.constant([0, 0])
  for magnitude in (0, 5, 15, 20):
    f = rand_augment.op_args('brightness', magnitude)
    expected = np.clip(f * x, 0, 255).astype(np.uint8)
    out = rand_augment.apply_op(clip, 'brightness', magnitude, seed).numpy()
    assert np.abs(out.astype(int) - expected).max() <= 1
  # Contrast pivots on the clip's mean grey level; Model Garden's own pivot is white.
  mean = int(tf.reduce_mean(tf.cast(tf.image.rgb_to_grayscale(clip), tf.float32)))
  out = rand_augment.contrast(clip, 0.5).numpy()
  assert np.abs(out.astype(int) - (mean + 0.5 * (x - mean)).astype(int)).max() <= 1
  # Model Garden's pivot: grey pixel count / 256 (12 here), capped at 255.
  bug = rand_augment.contrast(clip, 0.5, 'model_garden').numpy()
  assert np.abs(bug.astype(int) - (12 + 0.5 * (x - 12)).astype(int)).max() <= 1
  big = tf.tile(clip, [4, 8, 8, 1])
  white = rand_augment.contrast(big, 0.5, 'model_garden').numpy().astype(int)
  assert np.abs(white - (255 + 0.5 * (big.numpy() - 255.0)).astype(int)).max() <= 1


def test_auto_contrast_and_equalize_use_the_whole_clip():
  rng = np.random.default_rng(1)
  # A dim first frame and a brighter second one.
  dim = tf.constant(
    np.stack([rng.integers(50, 71, (16, 16, 3)), rng.integers(80, 101, (16, 16, 3))]).astype(
      np.uint8
    )
  )
  out = rand_augment.auto_contrast(dim).numpy()
  assert out.min() == 0 and out.max() == 255
  # Stretched over the clip, not per frame: the dim frame stays darker.
  assert out[0].max() < 140 and out[1].min() > 110
  eq = rand_augment.equalize(dim).numpy()
  assert eq.min() < 10 and eq.max() > 240
  flat = tf.fill([2, 8, 8, 3], tf.constant(7, tf.uint8))
  np.testing.assert_array_equal(rand_augment.equalize(flat), flat)
  np.testing.assert_array_equal(rand_augment.auto_contrast(flat), flat)


@pytest.mark.parametrize('op', rand_augment.OPS)
def test_ops_same_on_every_frame(op):
  frame = np.random.default_rng(2).integers(0, 256, (1, 20, 20, 3), np.uint8)
  clip = tf.constant(np.repeat(frame, 3, axis=0))
  out = rand_augment.apply_op(clip, op, 15, tf.constant([4, 5])).numpy()
  # Sharpness smooths the tall [T*H, W] image, as Scenic does: the rows where
  # frames meet see their neighbour frame.
  rows = slice(1, -1) if op == 'sharpness' else slice(None)
  for f in out[1:]:
    np.testing.assert_array_equal(f[rows], out[0][rows])


def test_rand_augment_branches_uniform_and_seeded():
  clip = _random_clip(t=2, h=16, w=16)
  run = tf.function(lambda s: rand_augment.rand_augment(clip, num_layers=1, magnitude=20, seed=s))
  a, b = run(tf.constant([3, 4])), run(tf.constant([3, 4]))
  np.testing.assert_array_equal(a, b)
  # At M = 20, identity, posterize (8 bits) and solarize (threshold 512) leave
  # the clip unchanged: 3 of the 12 branches.
  n = 240
  same = sum(np.array_equal(run(tf.constant([s, 9])), clip) for s in range(n))
  assert abs(same / n - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n)
  with pytest.raises(ValueError, match='uint8'):
    rand_augment.rand_augment(
      tf.cast(clip, tf.float32), num_layers=1, magnitude=5, seed=tf.constant([0, 0])
    )


def _dmvr_color(x, brightness, saturation, contrast, hue):
  """DMVR's color_augment with fixed factors, from TensorFlow's own ops."""
  x = tf.image.adjust_brightness(x, brightness)
  x = tf.image.adjust_saturation(x, saturation)
  x = tf.image.adjust_contrast(x, contrast)
  x = tf.image.adjust_hue(x, hue)
  return tf.clip_by_value(x, 0.0, 1.0)


def test_color_matches_tf_image_ops():
  x = tf.cast(_random_clip(t=2, h=12, w=12), tf.float32) / 255.0
  for b, s, c, h in [(0.1, 1.3, 0.7, 0.15), (-0.12, 0.6, 1.4, -0.2), (0.0, 1.0, 1.0, 0.05)]:
    transform = tf.constant([1.0, b, s, c, h, 0.0])
    ours = augment.apply_color(x, transform).numpy()
    np.testing.assert_allclose(ours, _dmvr_color(x, b, s, c, h), atol=2e-5)
  np.testing.assert_array_equal(
    augment.apply_color(x, tf.constant([0.0, 0.1, 1.3, 0.7, 0.1, 0])), x
  )
  grey = augment.apply_color(x, tf.constant([0.0, 0, 1, 1, 0, 1.0])).numpy()
  np.testing.assert_allclose(grey, np.repeat(tf.image.rgb_to_grayscale(x), 3, -1), atol=1e-6)


def test_color_ranges_probabilities_and_hue_units():
  draws = np.stack(
    [
      augment.color_transform(prob_color=0.8, prob_drop=0.1, seed=tf.constant([s, 3])).numpy()
      for s in range(600)
    ]
  )
  apply, bright, sat, con, hue, drop = draws.T
  n = len(draws)
  assert abs(apply.mean() - 0.8) < 4 * np.sqrt(0.16 / n)
  assert abs(drop.mean() - 0.1) < 4 * np.sqrt(0.09 / n)
  for values, low, high in [
    (bright, -32 / 255, 32 / 255),
    (sat, 0.6, 1.4),
    (con, 0.6, 1.4),
    (hue, -0.2, 0.2),
  ]:
    assert low <= values.min() and values.max() <= high
    # Spread over the whole range: the extremes are reached within 3%.
    assert values.min() < low + 0.03 * (high - low) and values.max() > high - 0.03 * (high - low)
  # Hue is in tf.image units: 0.2 moves pure red a fifth of the way round the circle.
  red = tf.constant([[[[1.0, 0.0, 0.0]]]])
  shifted = augment.apply_color(red, tf.constant([1.0, 0, 1, 1, 0.2, 0]))
  assert float(tf.image.rgb_to_hsv(shifted)[0, 0, 0, 0]) == pytest.approx(0.2, abs=1e-5)


def test_color_in_finish_clip_matches_and_is_frame_consistent():
  # Smooth content, as video frames are: the contrast pivot is estimated from
  # every 4th row and column there.
  coarse = np.random.default_rng(3).uniform(0, 255, (1, 5, 5, 3)).astype(np.float32)
  frame = tf.cast(tf.round(tf.image.resize(coarse, [32, 32])), tf.uint8).numpy()
  clip = tf.constant(np.repeat(frame, 3, axis=0))
  unit = tf.cast(clip, tf.float32) / 255.0
  for transform in ([1.0, 0.05, 1.2, 0.6, -0.1, 0.0], [1.0, -0.1, 0.7, 1.4, 0.2, 1.0]):
    out = augment.finish_clip(
      clip, flip=tf.constant(True), color=tf.constant(transform), zero_centering=False
    ).numpy()
    expected = _dmvr_color(unit, *transform[1:5]).numpy()[:, :, ::-1]
    if transform[5]:
      expected = np.repeat(tf.image.rgb_to_grayscale(expected).numpy(), 3, -1)
    assert np.abs(out - expected).max() < 3 / 255
    for f in out[1:]:
      np.testing.assert_allclose(f, out[0], atol=1e-6)
  plain = augment.finish_clip(
    clip,
    flip=tf.constant(False),
    color=tf.constant([0.0, 0.1, 1.3, 0.7, 0.1, 0]),
    zero_centering=True,
  )
  np.testing.assert_allclose(plain, unit * 2 - 1, atol=1e-6)


def test_scale_jitter_draws_height_and_width_independently():
  ratios, sides = [], []
  for s in range(200):
    top, left, h, w = video_ops.crop_window(
      256,
      455,
      min_resize=256,
      crop_size=224,
      scale_range=(0.9, 1.33),
      prob_scale=1.0,
      seed=tf.constant([s, 7]),
    ).numpy()
    assert 0 <= top <= 256 - h and 0 <= left <= 455 - w
    ratios.append(h / w)
    sides.append((h, w))
  h, w = np.array(sides, float).T
  # Source pixels under 224 output pixels: 224 / (256 * f) * 256 = 224 / f.
  assert 224 / 1.33 - 1 <= h.min() and h.max() <= 224 / 0.9 + 1
  assert 224 / 1.33 - 1 <= w.min() and w.max() <= 224 / 0.9 + 1
  assert np.std(ratios) > 0.08  # Aspect-ratio jitter; one factor would give ratio 1.
  assert abs(np.corrcoef(h, w)[0, 1]) < 0.25
  fixed = video_ops.crop_window(
    256,
    455,
    min_resize=256,
    crop_size=224,
    scale_range=(0.9, 1.33),
    prob_scale=0.0,
    seed=tf.constant([0, 0]),
  ).numpy()
  assert tuple(fixed[2:]) == (224, 224)


def _augmentation(**overrides) -> clip_spec.Augmentation:
  aug = config_lib.get_defaults().dataset_configs.augmentation_params
  aug.update(overrides)
  return clip_spec.Augmentation.from_config(aug)


def test_rand_augment_and_color_are_either_or():
  with pytest.raises(ConfigError, match='do_rand_augment.*do_color_augment'):
    _augmentation(do_rand_augment=True, do_color_augment=True)
  _augmentation(do_rand_augment=True, do_color_augment=False)
  color_only = _augmentation(do_rand_augment=False, do_color_augment=True)
  # A replace is checked too: the settings cannot be made inconsistent later.
  with pytest.raises(ConfigError, match='do_rand_augment.*do_color_augment'):
    dataclasses.replace(color_only, do_rand_augment=True)
  with pytest.raises(ConfigError, match='rand_augment_contrast_pivot'):
    _augmentation(rand_augment_contrast_pivot='white')


def test_augmentation_has_every_config_key_and_no_default():
  keys = set(config_lib.get_defaults().dataset_configs.augmentation_params.keys())
  fields = dataclasses.fields(clip_spec.Augmentation)
  assert {f.name for f in fields} == keys
  assert all(f.default is dataclasses.MISSING for f in fields)
  aug = _augmentation(do_jitter_scale=True, scale_min_factor=0.5, rand_augment_magnitude=7)
  assert (aug.scale_range, aug.rand_augment_magnitude) == ((0.5, 1.33), 7)
  assert _augmentation().scale_range is None
  with pytest.raises(dataclasses.FrozenInstanceError):
    aug.do_jitter_scale = False  # type: ignore[misc]


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


@pytest.mark.parametrize(
  'name, color, rand_aug, flip',
  [
    ('k400_fe.py', True, None, True),
    ('k400_spacetime_large.py', True, None, True),
    ('k600_fe_large.py', True, None, True),
    ('ssv2_fe_large.py', False, (2, 20), False),
    ('epic_kitchens_fe_large.py', False, (2, 15), True),
    ('synthetic.py', False, None, False),
  ],
)
def test_paper_configs_pick_one_appearance_augmentation(name, color, rand_aug, flip):
  config = config_lib.resolve(config_lib.load_config_file(f'configs/{name}'))
  dc = config.dataset_configs
  spec = clip_spec.ClipSpec.from_config(dc, 10)  # Validates the either/or rule.
  assert spec.augmentation == clip_spec.Augmentation.from_config(dc.augmentation_params)
  aug = dc.augmentation_params
  assert aug.do_color_augment == color and dc.random_flip == flip
  assert aug.do_rand_augment == (rand_aug is not None)
  if rand_aug:
    assert (aug.rand_augment_num_layers, aug.rand_augment_magnitude) == rand_aug
  assert aug.rand_augment_contrast_pivot == 'mean'

"""Tokenisation: frame sampling indices, tubelet initialisers, patch projection."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vivit_jax.models import embedding


@pytest.mark.parametrize(
  'num_frames,n,expected',
  [
    (8, 4, [2, 3, 5, 6]),  # REFERENCE.md's example; 1.6 -> 2, 4.8 -> 5 etc.
    (32, 2, [11, 21]),  # Scenic's float arange returns 3 frames here.
    (10, 4, [2, 4, 6, 8]),
    (5, 5, [0, 1, 2, 3, 4]),
    (4, 8, [0, 1, 2, 3]),
  ],
)
def test_uniform_frame_indices(num_frames, n, expected):
  np.testing.assert_array_equal(embedding.uniform_frame_indices(num_frames, n), expected)


def test_uniform_frame_indices_round_half_to_even():
  # k * T / (n + 1) = 2.5 and 7.5 for T=10, n=3: numpy rounds to 2 and 8.
  np.testing.assert_array_equal(embedding.uniform_frame_indices(10, 3), [2, 5, 8])


def test_central_frame_initializer_keeps_only_the_central_frame():
  kernel = embedding.central_frame_initializer()(jax.random.key(0), (3, 2, 2, 3, 4))
  assert np.abs(kernel[1]).sum() > 0
  np.testing.assert_array_equal(kernel[0], 0.0)
  np.testing.assert_array_equal(kernel[2], 0.0)
  # Scenic's version zeroes the width axis instead; every width slice is used here.
  assert all(np.abs(kernel[1, :, w]).sum() > 0 for w in range(2))


def test_scenic_central_frame_initializer_reproduces_scenic_zeroing_the_width_axis():
  shape = (3, 2, 4, 3, 5)
  kernel = embedding.KERNEL_INITIALIZERS['scenic_central_frame_initializer']()(
    jax.random.key(0), shape
  )
  base = nn.initializers.lecun_normal()(jax.random.key(0), shape)
  # Scenic keeps width index t // 2 = 1 of every frame and zeroes the other widths.
  np.testing.assert_array_equal(kernel[:, :, 1], base[:, :, 1])
  np.testing.assert_array_equal(kernel[:, :, [0, 2, 3]], 0.0)


def test_average_frame_initializer_repeats_one_frame():
  kernel = embedding.average_frame_initializer()(jax.random.key(0), (4, 2, 2, 3, 5))
  for t in range(1, 4):
    np.testing.assert_array_equal(kernel[t], kernel[0])


def patch_embedding(features, patch):
  """PatchEmbedding with nn.Conv's default initialiser, in float32."""
  return embedding.PatchEmbedding(
    features, patch, kernel_init=nn.initializers.lecun_normal(), dtype=jnp.float32
  )


@pytest.mark.parametrize('patch', [(2, 4, 4), (1, 2, 3)])
def test_patch_embedding_equals_strided_conv(patch):
  x = jax.random.normal(jax.random.key(1), (2, 4, 8, 12, 3))
  ours = patch_embedding(6, patch)
  params = ours.init(jax.random.key(0), x)
  conv = nn.Conv(6, patch, strides=patch, padding='VALID')
  expected = conv.apply(params, x)
  np.testing.assert_allclose(ours.apply(params, x), expected, atol=1e-5)


def test_patch_embedding_rejects_indivisible_input():
  with pytest.raises(ValueError, match='not divisible by the patch size'):
    patch_embedding(4, (2, 4, 4)).init(jax.random.key(0), jnp.zeros((1, 3, 8, 8, 3)))


def test_tokens_are_time_major():
  # A kernel that reads channel 0 of the tubelet's first pixel; the video's
  # pixel value is t * 100 + y * 10 + x, so each token names its position.
  t, h, w = np.meshgrid(np.arange(4), np.arange(8), np.arange(8), indexing='ij')
  value = (t * 100 + h * 10 + w).astype(np.float32)
  video = np.zeros((1, 4, 8, 8, 3), np.float32)
  video[..., 0] = value
  kernel = np.zeros((2, 4, 4, 3, 1), np.float32)
  kernel[0, 0, 0, 0, 0] = 1.0
  params = {'params': {'kernel': kernel, 'bias': np.zeros(1, np.float32)}}
  tokens = patch_embedding(1, (2, 4, 4)).apply(params, video)
  flat = np.asarray(tokens).reshape(-1)
  np.testing.assert_array_equal(flat, [0, 4, 40, 44, 200, 204, 240, 244])

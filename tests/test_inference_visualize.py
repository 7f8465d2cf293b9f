"""Attention rollout and the visualize tool's image."""

import numpy as np
import pytest
from PIL import Image
from test_inference_fakes import moving_frames, random_params, tiny_config, write_mp4

from vivit_jax.inference import VideoClassifier, heatmap, rollout


def test_rollout_of_uniform_attention_is_uniform():
  n = 5
  uniform = np.full((n, n), 1 / n)
  rolled = rollout.rollout([uniform, uniform])
  # 0.5 * U + 0.5 * I twice: the diagonal keeps 1/4 + 3/4 * 1/n.
  np.testing.assert_allclose(np.diag(rolled), 0.25 + 0.75 / n)
  np.testing.assert_allclose(rolled.sum(-1), 1.0)


@pytest.mark.parametrize('attention', ['spacetime', 'factorized_encoder'])
def test_visualize_writes_an_image_of_the_expected_size(attention, tmp_path):
  config = tiny_config(attention)
  clf = VideoClassifier(config, random_params(config))
  frames = clf.decode(write_mp4(tmp_path / 'a.mp4', moving_frames(12, size=(21, 33))))
  maps = rollout.attention_maps(
    clf.module,
    clf.params,
    clf.views(frames).inputs[:1],
    attention_type=attention,
    has_cls=True,
    patch_size=8,
  )
  # 4 frames in tubelets of 2 -> 2 time steps of a 2x2 grid, each map peaking at 1.
  assert maps.shape == (2, 2, 2)
  np.testing.assert_allclose(maps.max(axis=(1, 2)), 1.0)
  image = heatmap.attention_image(clf, frames, scale=3)
  assert image.shape == (2 * 16 * 3, 4 * 16 * 3, 3) and image.dtype == np.uint8
  Image.fromarray(image).save(tmp_path / 'attention.png')
  assert Image.open(tmp_path / 'attention.png').size == (4 * 16 * 3, 2 * 16 * 3)

"""Attention rollout and the visualize tool's image."""

import dataclasses

import numpy as np
import pytest
from PIL import Image
from test_inference_fakes import LABELS, moving_frames, random_params, tiny_config, write_mp4

from vivit_jax.inference import VideoClassifier, heatmap, preprocess, rollout


def test_rollout_of_uniform_attention_is_uniform():
  n = 5
  uniform = np.full((n, n), 1 / n)
  rolled = rollout.rollout([uniform, uniform])
  # 0.5 * U + 0.5 * I twice: the diagonal keeps 1/4 + 3/4 * 1/n.
  np.testing.assert_allclose(np.diag(rolled), 0.25 + 0.75 / n)
  np.testing.assert_allclose(rolled.sum(-1), 1.0)


@pytest.mark.parametrize('attention', ['spacetime', 'factorized_encoder'])
def test_visualize_figure_of_a_clip(attention, tmp_path):
  config = tiny_config(attention)
  clf = VideoClassifier(config, random_params(config), label_names=LABELS)
  frames = clf.decode(write_mp4(tmp_path / 'a.mp4', moving_frames(12, size=(21, 33))))
  maps = rollout.attention_maps(
    clf.module,
    clf.params,
    # The centre clip, the evaluation view the figure shows.
    preprocess.multi_view_inputs(frames, dataclasses.replace(clf.spec, num_test_clips=1)).inputs,
    attention_type=attention,
    has_cls=True,
    patch_size=8,
  )
  # 4 frames in tubelets of 2 -> 2 time steps of a 2x2 grid, on one scale for the clip.
  assert maps.shape == (2, 2, 2)
  np.testing.assert_allclose(maps.sum(), 1.0, rtol=1e-5)
  att = heatmap.clip_attention(clf, frames)
  np.testing.assert_allclose(att.maps, maps, rtol=1e-5)
  # The centre clip of 12 frames: 4 frames 2 apart, at 8 fps.
  np.testing.assert_array_equal(att.frame_indices, [2, 4, 6, 8])
  assert att.fps == 8 and att.frames.shape == (4, 16, 16, 3)
  np.testing.assert_array_equal(att.frame_steps, [0, 0, 1, 1])
  np.testing.assert_allclose(att.step_shares.sum(), 1.0, rtol=1e-5)
  scores = clf.predict(frames).scores
  assert att.label == LABELS[int(scores.argmax())]
  np.testing.assert_allclose(att.probability, scores.max(), rtol=1e-6)
  image = heatmap.attention_image(clf, frames, title='a.mp4')
  assert image.dtype == np.uint8 and image.shape[2] == 3
  # Readable at its default size, and --scale multiplies the resolution.
  assert image.shape[0] >= 300 and image.shape[1] >= 400
  double = heatmap.figure_image(att, scale=2, title='a.mp4')
  assert abs(double.shape[0] - 2 * image.shape[0]) <= 2
  assert abs(double.shape[1] - 2 * image.shape[1]) <= 2
  Image.fromarray(image).save(tmp_path / 'attention.png')
  assert Image.open(tmp_path / 'attention.png').size == image.shape[1::-1]


def _attention(maps: np.ndarray) -> heatmap.Attention:
  return heatmap.Attention(
    frames=np.full((4, 16, 16, 3), 0.5, np.float32),
    frame_indices=np.arange(4),
    fps=8.0,
    maps=maps.astype(np.float32) / maps.sum(),
    label='dog',
    probability=0.5,
  )


def test_one_color_scale_over_time():
  # Step 1 holds 9 times the attention of step 0: its frames are hot, step 0's stay cold
  # (scaled per step, both would peak at 1).
  maps = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 9.0)])
  att = _attention(maps)
  np.testing.assert_allclose(att.step_shares, [0.1, 0.9], rtol=1e-6)
  np.testing.assert_allclose(att.frame_maps[:2], 1 / 9, rtol=1e-6)
  np.testing.assert_allclose(att.frame_maps[2:], 1.0, rtol=1e-6)
  # Swapping the steps changes the figure (heatmaps and bars): it is drawn from these maps.
  hot = heatmap.figure_image(att)
  cold = heatmap.figure_image(_attention(np.stack([maps[1], maps[0]])))
  assert hot.shape == cold.shape and np.abs(hot.astype(int) - cold).max() > 100

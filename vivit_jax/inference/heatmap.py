"""Frames with attention-rollout heatmaps over them; see vivit_jax/tools/visualize.py."""

from __future__ import annotations

import dataclasses

import numpy as np


def attention_image(classifier, frames: np.ndarray, scale: int = 1) -> np.ndarray:
  """u8[2*S*scale, T*S*scale, 3]: frames above, heatmap overlays below.

  Args:
    classifier: a `VideoClassifier` of a Model 1 or Model 2 config.
    frames: u8[N, H, W, 3] at the dataset's frame rate.
    scale: integer upscaling of every pixel.
  """
  import matplotlib

  from vivit_jax.inference import preprocess, rollout

  spec = dataclasses.replace(classifier.spec, num_test_clips=1, three_crops=False)
  view = preprocess.multi_view_inputs(frames, spec, jpeg_quality=classifier.jpeg_quality).inputs
  model = classifier.config.model
  maps = rollout.attention_maps(
    classifier.module,
    classifier.params,
    view,
    attention_type=model.attention_config.type,
    has_cls=model.classifier == 'token',
    patch_size=model.patches.size[0],
  )
  clip = view[0]
  num_frames, size = clip.shape[0], clip.shape[1]
  low = -1.0 if classifier.config.dataset_configs.zero_centering else 0.0
  rgb = (clip - low) / (1.0 - low)
  # Frame f belongs to token time step f * t // T (tubelets cover T / t frames).
  steps = np.arange(num_frames) * maps.shape[0] // num_frames
  up = np.kron(maps[steps], np.ones((size // maps.shape[1], size // maps.shape[2])))
  heat = matplotlib.colormaps['jet'](up)[..., :3]
  overlay = 0.5 * rgb + 0.5 * heat
  rows = [np.concatenate(list(images), axis=1) for images in (rgb, overlay)]
  image = np.concatenate(rows, axis=0)
  image = np.kron(image, np.ones((scale, scale, 1)))
  return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)

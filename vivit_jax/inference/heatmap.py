"""Where a ViViT looks in a video: the attention figure of vivit_jax/tools/visualize.py.

The figure shows the centre clip (the evaluation view) of a video: the input
frames with their index in the video and time in seconds, the same frames under
the attention-rollout heatmap of the token time step each frame belongs to, on
ONE color scale for the whole clip (so a step the model ignores looks cold),
with its color bar, a bar chart of each time step's share of the clip's
attention, and the predicted class with its probability in the title.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from vivit_jax.data import sampling
from vivit_jax.inference import preprocess, rollout
from vivit_jax.train.evaluation import figure_to_array

# Default width of one frame in the figure, in inches at 100 dots per inch; long
# clips shrink their frames so the figure stays at most _MAX_WIDTH inches wide.
_FRAME_INCHES = 0.9
_MAX_WIDTH = 16.0


@dataclasses.dataclass(frozen=True)
class Attention:
  """The attention of one clip, as the figure draws it.

  Attributes:
    frames: f32[T, S, S, 3] in [0, 1], the model's input frames.
    frame_indices: i64[T], each frame's index in the video at the dataset's fps.
    fps: frames per second of the decoded video.
    maps: f32[t, h, w], the rollout relevance of each token, summing to 1 over
      the clip (t = T / temporal patch size).
    label: the predicted class (per head, joined by ' + ' for multi-head models).
    probability: its probability (of the first head for multi-head models).
  """

  frames: np.ndarray
  frame_indices: np.ndarray
  fps: float
  maps: np.ndarray
  label: str
  probability: float

  @property
  def step_shares(self) -> np.ndarray:
    """f32[t]: each token time step's share of the clip's attention (sums to 1)."""
    return self.maps.sum(axis=(1, 2))

  @property
  def frame_steps(self) -> np.ndarray:
    """i64[T]: the token time step of each frame (tubelets cover T / t frames)."""
    num_frames = len(self.frames)
    return np.arange(num_frames) * len(self.maps) // num_frames

  @property
  def frame_maps(self) -> np.ndarray:
    """f32[T, h, w] in [0, 1]: each frame's step map over the clip's hottest token."""
    return self.maps[self.frame_steps] / max(float(self.maps.max()), 1e-12)


def clip_attention(classifier: Any, frames: np.ndarray) -> Attention:
  """Rollout attention of the centre clip of u8[N, H, W, 3] frames, and the prediction.

  Args:
    classifier: a `VideoClassifier` of a Model 1 or Model 2 config.
    frames: u8[N, H, W, 3] at the dataset's frame rate.
  """
  spec = dataclasses.replace(classifier.spec, num_test_clips=1, three_crops=False)
  view = preprocess.multi_view_inputs(frames, spec, jpeg_quality=classifier.jpeg_quality).inputs
  model = classifier.model
  maps = rollout.attention_maps(
    classifier.module,
    classifier.params,
    view,
    attention_type=model.attention.type,
    has_cls=model.head.classifier == 'token',
    patch_size=model.tokens.patch_size[0],
  )
  indices = sampling.multi_view_indices(len(frames), spec.num_frames, spec.stride, 1)
  dc = classifier.config.dataset_configs
  low = -1.0 if dc.zero_centering else 0.0
  # The prediction `predict` reports for the whole video (all test views).
  best = classifier.top_k(classifier.predict(frames).scores, 1)
  return Attention(
    frames=np.clip((view[0] - low) / (1.0 - low), 0.0, 1.0),
    frame_indices=indices.numpy()[0].astype(np.int64),
    fps=float(dc.fps),
    maps=maps,
    label=' + '.join(head[0]['label'] for head in best.values()),
    probability=next(iter(best.values()))[0]['score'],
  )


def figure_image(attention: Attention, *, scale: int = 1, title: str | None = None) -> np.ndarray:
  """u8[H, W, 3]: the attention figure (see the module docstring).

  Args:
    attention: from `clip_attention`.
    scale: resolution multiplier (1: 100 dots per inch, about 90 pixels a frame).
    title: a first title line, e.g. the video's file name.
  """
  num_frames = len(attention.frames)
  num_steps = len(attention.maps)
  frame_inches = min(_FRAME_INCHES, (_MAX_WIDTH - 1.5) / num_frames)
  width = num_frames * frame_inches + 1.65
  height = 2 * frame_inches + 2.3
  fig = Figure(figsize=(width, height), dpi=100 * scale)
  grid = fig.add_gridspec(
    3,
    num_frames + 1,
    height_ratios=[frame_inches, frame_inches, 1.0],
    width_ratios=[1] * num_frames + [0.25],
    hspace=0.55,
    wspace=0.06,
    left=0.75 / width,
    right=1 - 0.5 / width,
    top=1 - 0.75 / height,
    bottom=0.4 / height,
  )
  # One color scale for the whole clip: the hottest token of any step is 1.
  frame_maps = attention.frame_maps
  size = attention.frames.shape[1]
  cmap = matplotlib.colormaps['jet']
  for f in range(num_frames):
    rgb = attention.frames[f]
    step_map = frame_maps[f]
    up = np.kron(step_map, np.ones((size // step_map.shape[0], size // step_map.shape[1])))
    overlay = 0.45 * rgb + 0.55 * cmap(up)[..., :3]
    for row, image in ((0, rgb), (1, overlay)):
      ax = fig.add_subplot(grid[row, f])
      ax.imshow(image, interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        index = int(attention.frame_indices[f])
        ax.set_xlabel(f'#{index}\n{index / attention.fps:.2f} s', fontsize=7, labelpad=2)
    if f == 0:
      fig.axes[-2].set_ylabel('input', fontsize=8)
      fig.axes[-1].set_ylabel('attention', fontsize=8)
  bar_axis = fig.add_subplot(grid[1, num_frames])
  color_bar = fig.colorbar(
    matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0, 1), cmap), cax=bar_axis
  )
  color_bar.set_ticks([0, 0.5, 1])
  color_bar.ax.tick_params(labelsize=6)
  color_bar.set_label('relevance / clip max', fontsize=6)
  # Each time step's share, one bar spanning the frames of its tubelets.
  shares = attention.step_shares
  chart = fig.add_subplot(grid[2, :num_frames])
  per_step = num_frames / num_steps
  centres = (np.arange(num_steps) + 0.5) * per_step - 0.5
  chart.bar(centres, 100 * shares, width=0.85 * per_step, color='tab:orange')
  for x, share in zip(centres, shares, strict=True):
    chart.text(x, 100 * share, f'{100 * share:.0f}%', ha='center', va='bottom', fontsize=6)
  chart.axhline(100 / num_steps, color='grey', linewidth=0.8, linestyle='--')
  chart.set_xlim(-0.5, num_frames - 0.5)
  chart.set_ylim(0, 100 * float(shares.max()) * 1.3)
  first = attention.frame_indices[np.searchsorted(attention.frame_steps, np.arange(num_steps))]
  last = attention.frame_indices[
    np.searchsorted(attention.frame_steps, np.arange(num_steps), side='right') - 1
  ]
  ticks = [f't{s}: #{a}-#{b}' for s, (a, b) in enumerate(zip(first, last, strict=True))]
  chart.set_xticks(centres, ticks, fontsize=6)
  chart.tick_params(axis='y', labelsize=6)
  chart.set_ylabel('share of\nattention', fontsize=7)
  chart.set_title('share of attention per token time step (dashed: uniform)', fontsize=7)
  lines = [title] if title else []
  lines.append(f'predicted: {attention.label} ({100 * attention.probability:.1f}%)')
  fig.suptitle('\n'.join(lines), fontsize=10, y=1 - 0.12 / height, va='top')
  return figure_to_array(fig)


def attention_image(
  classifier: Any, frames: np.ndarray, scale: int = 1, title: str | None = None
) -> np.ndarray:
  """u8[H, W, 3]: the attention figure of a video's centre clip.

  Args:
    classifier: a `VideoClassifier` of a Model 1 or Model 2 config.
    frames: u8[N, H, W, 3] at the dataset's frame rate.
    scale: resolution multiplier of the figure.
    title: a first title line, e.g. the video's file name.
  """
  return figure_image(clip_attention(classifier, frames), scale=scale, title=title)

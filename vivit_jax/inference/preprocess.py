"""Video files and frame arrays -> the multi-view test inputs of evaluation.

Nothing here re-implements the pipeline: a video's frames go to
`vivit_jax.data.clips.test_inputs`, the decoded-frames twin of the
`test_clip` that makes the test views in evaluation (tests/test_data_pinned.py
holds the two equal). With `jpeg_quality` the frames the test sampling picks
are first JPEG-encoded as `make_tfrecords` stores them and decoded as
evaluation decodes them, so that a video gives exactly the inputs that
evaluating its converted TFRecord gives.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from vivit_jax.data import clips, records, sampling, video_io, video_ops
from vivit_jax.data.clip_spec import ClipSpec


@dataclasses.dataclass(frozen=True)
class Views:
  """The test views of one video.

  Attributes:
    inputs: f32[V, T, S, S, 3], clip-major (v = clip * crops + crop).
    num_frames: frames of the video at the dataset's frame rate.
    looped: the video is shorter than one clip, so its frames were repeated.
  """

  inputs: np.ndarray
  num_frames: int
  looped: bool


def decode_file(
  path: str, *, fps: float, min_resize: int, frames_fps: float | None = None
) -> np.ndarray:
  """Decodes a video as `make_tfrecords` does: resampled to `fps`, short side `min_resize`.

  Args:
    path: any file PyAV (FFmpeg) reads, or a folder of frames.
    fps: frames per second of the output (the dataset's `fps`).
    min_resize: short side of the output frames (0 keeps the size).
    frames_fps: the rate of a folder of frames (default: `fps`).

  Returns:
    u8[N, H, W, 3]; grayscale and other pixel formats are converted to RGB.

  Raises:
    vivit_jax.data.video_io.VideoError: a missing or unreadable file, or one
      without video frames.
  """
  return video_io.decode_video(path, fps=fps, min_resize=min_resize, frames_fps=frames_fps)


def as_rgb(frames: np.ndarray) -> np.ndarray:
  """u8[T, H, W], [T, H, W, 1] or [T, H, W, 3] -> u8[T, H, W, 3]."""
  frames = np.asarray(frames)
  if frames.dtype != np.uint8:
    raise ValueError(f'Frames must be uint8 in [0, 255]; got {frames.dtype}.')
  if frames.ndim == 3:
    frames = frames[..., None]
  if frames.ndim != 4 or frames.shape[-1] not in (1, 3) or frames.shape[0] == 0:
    raise ValueError(f'Frames must be [T, H, W, 3] (or grayscale [T, H, W]); got {frames.shape}.')
  if frames.shape[-1] == 1:
    frames = np.repeat(frames, 3, axis=-1)
  return frames


def multi_view_inputs(
  frames: np.ndarray, spec: ClipSpec, *, jpeg_quality: int | None = None
) -> Views:
  """The multi-view test inputs of a video, made by the evaluation pipeline's functions.

  Args:
    frames: u8[N, H, W, 3] (or grayscale [N, H, W]) at the dataset's frame rate.
    spec: clip settings (`ClipSpec.from_config(config.dataset_configs, ...)`).
    jpeg_quality: None takes the frames as they are (as a lossless format
      would store them); a quality first passes the frames the views use
      through JPEG, as `make_tfrecords` stores them (it uses 90).

  Returns:
    The views, f32[V, T, S, S, 3] with V = num_test_clips x (1 or 3 crops).
  """
  frames = as_rgb(frames)
  length = len(frames)
  if jpeg_quality is None:
    inputs = clips.test_inputs(frames, spec)
  else:
    indices = sampling.multi_view_indices(length, spec.num_frames, spec.stride, spec.num_test_clips)
    # Frames no view uses stay empty: only the sampled ones are decoded.
    encoded = [b''] * length
    for i in np.unique(indices.numpy()):
      encoded[int(i)] = records.encode_jpeg(frames[int(i)], jpeg_quality)
    sampled = video_ops.decode_frames(tf.constant(encoded), indices, jpeg_only=True)
    inputs = clips.test_from_frames(sampled, spec)
  span = sampling.clip_span(spec.num_frames, spec.stride)
  return Views(inputs=inputs.numpy(), num_frames=length, looped=length < span)

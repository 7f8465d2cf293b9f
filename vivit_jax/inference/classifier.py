"""`VideoClassifier`: a trained ViViT applied to videos as the test split is evaluated.

A video becomes `num_test_clips` x (1 or 3) views through the evaluation
pipeline's own `test_clip` (see preprocess.py), and the views are scored by
the trainer's own multi-view step (`steps.make_eval_fn(multiview=True)`), so a
clip gets the scores evaluation gives it: logits averaged over views, or
probabilities when `config.multicrop_softmax_logits` is set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from vivit_jax import config as config_lib
from vivit_jax.checkpoints import workdir
from vivit_jax.data import records
from vivit_jax.data.clip_spec import ClipSpec
from vivit_jax.data.sources import DataError
from vivit_jax.inference import checkpoint as checkpoint_lib
from vivit_jax.inference import preprocess
from vivit_jax.models import build_module, describe_model
from vivit_jax.task import Task, task_from_config
from vivit_jax.train import steps


@dataclasses.dataclass
class Prediction:
  """Scores of one video.

  Attributes:
    scores: f32[C] probabilities: softmax per head (sigmoid when multi-label)
      of the view-averaged output, as evaluation's prediction files write them.
    num_frames: frames of the video at the dataset's frame rate.
    looped: the video was shorter than a clip and its frames were repeated.
  """

  scores: np.ndarray
  num_frames: int
  looped: bool


def _probabilities(logits: np.ndarray, task: Task) -> np.ndarray:
  """f32[..., C] combined logits -> probabilities, per head."""
  logits = np.asarray(logits, np.float64)
  if task.multi_label:
    return (1 / (1 + np.exp(-logits))).astype(np.float32)
  out = []
  for start, stop in task.heads:
    head = logits[..., start:stop]
    e = np.exp(head - head.max(axis=-1, keepdims=True))
    out.append(e / e.sum(axis=-1, keepdims=True))
  return np.concatenate(out, axis=-1).astype(np.float32)


class VideoClassifier:
  """Classifies videos with a trained model, exactly as the test split is evaluated.

  Args:
    config: the experiment config the model was trained with.
    params: the model parameters.
    label_names: class names (line i of label_map.txt is class i), or None.
    jpeg_quality: None feeds frames losslessly; 90 reproduces the JPEG frames
      `make_tfrecords` writes (inputs then equal those of the converted data).
    source: where `params` came from, named when they do not fit the model.

  Attributes:
    model: the `ModelDescription` of the config's model (variant, shapes, token grid).
    module: that model, built.
    input_shape: (T, S, S, 3) of one view.

  Example:
    >>> clf = VideoClassifier.from_checkpoint(config, '/tmp/workdir')
    >>> clf.predict_file('cat.mp4').scores.argmax()
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    params: Any,
    *,
    label_names: Sequence[str] | None = None,
    jpeg_quality: int | None = None,
    source: str = 'given to VideoClassifier',
  ):
    self.config = config_lib.resolve(config)
    dc = self.config.dataset_configs
    kernel = params.get('output_projection', {}).get('kernel')
    num_classes = int(np.shape(kernel)[-1]) if kernel is not None else None
    self.model = describe_model(self.config, num_classes)
    self.module = build_module(self.model)
    self.input_shape = self.model.input_shape
    workdir.check_fits(self.module, params, self.input_shape, source, self.config)
    num_classes = self.model.head.num_classes
    self.task = task_from_config(dc, num_classes)
    if label_names is not None and len(label_names) != num_classes:
      raise DataError(
        f'The label map has {len(label_names)} names for a model of {num_classes} classes: '
        'give the label map of the data the model was trained on (--label_map).'
      )
    self.label_names = list(label_names) if label_names is not None else None
    self.spec = ClipSpec.from_config(dc, num_classes)
    self.jpeg_quality = jpeg_quality
    self.params = params
    # The trainer's test step, on one device: params and inputs get a device axis of 1.
    self._step = steps.make_eval_fn(
      apply_fn=self.module.apply,
      task=self.task,
      multiview=True,
      softmax_average=self.config.multicrop_softmax_logits,
    )
    self._replicated = jax.tree_util.tree_map(lambda x: np.asarray(x)[None], params)

  @classmethod
  def from_checkpoint(
    cls,
    config: ml_collections.ConfigDict | str,
    checkpoint: str,
    *,
    label_map: str | None = None,
    jpeg_quality: int | None = None,
    step: int | None = None,
  ) -> VideoClassifier:
    """Loads the params of a workdir, Orbax step directory or msgpack checkpoint.

    Args:
      config: the config, or the path of its file.
      checkpoint: see `vivit_jax.inference.checkpoint.load_params` (relative
        paths start from the current directory).
      label_map: class names, one a line; default: the `label_map.txt` found
        by `vivit_jax.inference.checkpoint.default_label_map` (the workdir's,
        then the dataset's), if any.
      jpeg_quality: see the class.
      step: which checkpoint of a workdir; None for the latest.

    Raises:
      MissingFileError: no checkpoint at `checkpoint`, or no such step.
      ModelMismatchError: the checkpoint was trained with another config.
    """
    if isinstance(config, str):
      config = config_lib.load_config_file(config)
    params, source = checkpoint_lib.load_params(checkpoint, step)
    if label_map is None:
      base_dir = config_lib.resolve(config).dataset_configs.base_dir
      label_map = checkpoint_lib.default_label_map(checkpoint, base_dir)
    names = records.read_label_map(label_map) if label_map else None
    return cls(config, params, label_names=names, jpeg_quality=jpeg_quality, source=source)

  def views(self, frames: np.ndarray) -> preprocess.Views:
    """The test views of u8[N, H, W, 3] frames (at the dataset's fps): f32[V, T, S, S, 3]."""
    return preprocess.multi_view_inputs(frames, self.spec, jpeg_quality=self.jpeg_quality)

  def decode(self, path: str) -> np.ndarray:
    """u8[N, H, W, 3]: `path` (a file or a folder of frames) decoded at the dataset's fps and
    min_resize (as make_tfrecords)."""
    dc = self.config.dataset_configs
    return preprocess.decode_file(
      path, fps=dc.fps, min_resize=dc.min_resize, frames_fps=dc.frame_folder_fps
    )

  def logits(self, inputs: np.ndarray) -> np.ndarray:
    """f32[B, V, T, S, S, 3] views -> f32[B, C] view-averaged logits (evaluation's step)."""
    out = self._step(self._replicated, np.asarray(inputs, np.float32)[None])
    return np.asarray(out)[0]

  def scores(self, logits: np.ndarray) -> np.ndarray:
    """f32[..., C] combined logits -> probabilities (softmax per head, or sigmoid)."""
    return _probabilities(logits, self.task)

  def predict_views(self, views: Sequence[preprocess.Views]) -> list[Prediction]:
    """Scores several videos' views in one batch."""
    scores = self.scores(self.logits(np.stack([v.inputs for v in views])))
    return [Prediction(s, v.num_frames, v.looped) for s, v in zip(scores, views, strict=True)]

  def predict(self, frames: np.ndarray) -> Prediction:
    """Scores one video given as u8[N, H, W, 3] (or [N, H, W]) frames at the dataset's fps."""
    return self.predict_views([self.views(frames)])[0]

  def predict_file(self, path: str) -> Prediction:
    """Scores one video file (decoded with PyAV at the dataset's fps)."""
    return self.predict(self.decode(path))

  def top_k(self, scores: np.ndarray, k: int) -> dict[str, list[dict[str, Any]]]:
    """The k best classes of each head: {head: [{'index', 'label', 'score'}, ...]}."""
    out = {}
    for name, (start, stop) in zip(self.task.head_names, self.task.heads, strict=True):
      head = scores[start:stop]
      order = np.argsort(-head, kind='stable')[:k]
      out[name] = [
        {
          'index': int(c),
          'label': self.label_names[start + c] if self.label_names else str(int(c)),
          'score': float(head[c]),
        }
        for c in order
      ]
    return out

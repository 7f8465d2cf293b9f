"""Exact evaluation passes: every example counted once, metrics on the host.

The eval step returns logits; the host drops padding with `batch_mask`, keeps
logits, labels and keys of the real examples, and computes every metric from
them. On several hosts the rows are gathered so process 0 sees the whole split.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vivit_jax import fileio
from vivit_jax.task import Task
from vivit_jax.train import losses


@dataclasses.dataclass
class Predictions:
  """The outputs of one pass over a split, real examples only.

  Attributes:
    logits: f32[N, C] (averaged over views for the test split).
    labels: f32[N, C].
    keys: str[N] example ids ('' where the pipeline gives none).
  """

  logits: np.ndarray
  labels: np.ndarray
  keys: np.ndarray


def _gather_rows(rows: np.ndarray) -> np.ndarray:
  """Concatenates every process's rows along axis 0 (identity on one process)."""
  if jax.process_count() == 1:
    return rows
  counts = multihost_utils.process_allgather(np.int32(len(rows)))
  padded = np.zeros((int(counts.max()), *rows.shape[1:]), rows.dtype)
  padded[: len(rows)] = rows
  gathered = np.asarray(multihost_utils.process_allgather(padded))
  return np.concatenate([gathered[p, :n] for p, n in enumerate(counts)], axis=0)


def _gather_keys(keys: np.ndarray) -> np.ndarray:
  if jax.process_count() == 1:
    return keys
  encoded = [k.encode('utf-8') for k in keys]
  width = int(multihost_utils.process_allgather(np.int32(max(map(len, encoded), default=1))).max())
  table = np.zeros((len(encoded), max(width, 1)), np.uint8)
  for i, k in enumerate(encoded):
    table[i, : len(k)] = np.frombuffer(k, np.uint8)
  return np.array([bytes(r).rstrip(b'\0').decode('utf-8') for r in _gather_rows(table)])


def predict_split(
  predict_fn: Callable[[Any, Any], Any], params: Any, batches: Iterable[dict[str, np.ndarray]]
) -> Predictions:
  """Runs one exact pass and returns the predictions of the real examples.

  Args:
    predict_fn: from `steps.make_eval_fn`.
    params: replicated parameters.
    batches: one pass of {'inputs': f32[D, B, ...], 'label': f32[D, B, C],
      'batch_mask': f32[D, B], 'key' (optional): str[D, B]}; closed (if it
      can be) when the pass ends or fails.

  Returns:
    Predictions over the whole split (all processes).
  """
  logits, labels, keys = [], [], []
  try:
    for batch in batches:
      out = np.asarray(predict_fn(params, batch['inputs']))
      valid = np.asarray(batch['batch_mask']).reshape(-1) > 0
      logits.append(out.reshape(-1, out.shape[-1])[valid])
      label = np.asarray(batch['label'])
      labels.append(label.reshape(-1, label.shape[-1])[valid])
      key = batch.get('key')
      keys.append(
        np.asarray(key).reshape(-1)[valid].astype(str)
        if key is not None
        else np.full(valid.sum(), '')
      )
  finally:
    # A pass that fails stops its input now: a tf.data iterator left to the
    # interpreter's exit can wait for ever (docs/reliability.md).
    close = getattr(batches, 'close', None)
    if close is not None:
      close()
  if not logits:
    raise ValueError('The evaluation pass yielded no batches.')
  return Predictions(
    logits=_gather_rows(np.concatenate(logits).astype(np.float32)),
    labels=_gather_rows(np.concatenate(labels).astype(np.float32)),
    keys=_gather_keys(np.concatenate(keys)),
  )


def mean_per_class_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
  """Mean over classes present in `labels` of the top-1 recall of that class."""
  true, pred = labels.argmax(-1), logits.argmax(-1)
  recalls = [np.mean(pred[true == c] == c) for c in np.unique(true)]
  return float(np.mean(recalls))


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
  """Average precision of one class, scikit-learn's `average_precision_score`.

  AP = sum_n (R_n - R_{n-1}) P_n over the distinct scores n, high to low: clips
  with tied scores share one threshold, so the answer does not depend on their order.

  Args:
    scores: f32[N] scores of the class.
    positives: [N] > 0 where the clip is a positive.

  Returns:
    AP in [0, 1]; 0 when there is no positive.
  """
  order = np.argsort(-scores, kind='stable')
  sorted_scores, hits = scores[order], positives[order] > 0
  # The last index of each run of equal scores is a threshold.
  last = np.r_[np.flatnonzero(np.diff(sorted_scores) != 0), len(hits) - 1]
  true_pos = np.cumsum(hits)[last]
  precision = true_pos / (last + 1)
  recall_gain = np.diff(np.r_[0, true_pos]) / max(hits.sum(), 1)
  return float(np.sum(recall_gain * precision))


def mean_average_precision(logits: np.ndarray, labels: np.ndarray) -> float:
  """mAP over the classes that have at least one positive example."""
  classes = [c for c in range(labels.shape[1]) if labels[:, c].max() > 0]
  return float(np.mean([average_precision(logits[:, c], labels[:, c]) for c in classes]))


def confusion_matrix(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """i64[C, C] counts: row = true class, column = predicted class."""
  num_classes = logits.shape[-1]
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (labels.argmax(-1), logits.argmax(-1)), 1)
  return matrix


# Up to this many classes a confusion matrix shows class names and per-cell counts;
# beyond, the cells are too small to read (a 400-class EPIC noun matrix).
_NAMED_CLASSES = 40
_COUNTED_CLASSES = 20


def figure_to_array(fig) -> np.ndarray:
  """u8[H, W, 3]: a matplotlib Figure rendered off-screen (Agg; no display needed)."""
  canvas = FigureCanvasAgg(fig)
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def confusion_image(
  matrix: np.ndarray, names: Sequence[str] | None = None, title: str | None = None
) -> np.ndarray:
  """The confusion matrix as a f32[1, H, W, 3] image in [0, 1], for TensorBoard.

  Rows are true classes, columns predicted ones; the color is the row-normalised
  rate (the share of each true class given each prediction, on one scale from 0 to
  1 with a color bar), and each cell prints its count while there are at most 20
  classes. Class names label both axes while there are at most 40 (indices else).

  Args:
    matrix: i64[C, C] counts from `confusion_matrix`.
    names: C class names, or None for indices.
    title: drawn above the matrix, e.g. 'validation, step 768'.
  """
  num = matrix.shape[0]
  rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
  named = names is not None and len(names) == num and num <= _NAMED_CLASSES
  labels = [str(n) for n in names] if named else [str(i) for i in range(num)]
  side = min(3.0 + 0.35 * num, 12.0)
  longest = max(len(label) for label in labels) if named else 0
  # Room for the rotated names under the matrix and the names on its left.
  fig = Figure(figsize=(side + 1.2 + 0.06 * longest, side + 0.06 * longest), dpi=100)
  ax = fig.add_subplot()
  shown = ax.imshow(rates, cmap='Blues', vmin=0.0, vmax=1.0, interpolation='nearest')
  colorbar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
  colorbar.set_label('share of the true class')
  if num <= _NAMED_CLASSES:
    ax.set_xticks(range(num), labels, rotation=45, ha='right', rotation_mode='anchor')
    ax.set_yticks(range(num), labels)
  ax.set_xlabel('predicted class')
  ax.set_ylabel('true class')
  if num <= _COUNTED_CLASSES:
    for (i, j), count in np.ndenumerate(matrix):
      if count:
        color = 'white' if rates[i, j] > 0.5 else 'black'
        ax.text(j, i, str(count), ha='center', va='center', color=color, fontsize=8)
  correct = np.trace(matrix) / max(matrix.sum(), 1)
  heading = f'{int(matrix.sum())} clips, {100 * correct:.1f}% on the diagonal'
  ax.set_title(f'{title}\n{heading}' if title else heading, fontsize=10)
  fig.tight_layout()
  return (figure_to_array(fig)[None] / 255.0).astype(np.float32)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _mean_loss_and_hits(logits, labels, task: Task, label_smoothing: float | None):
  # One compiled call instead of dozens of eager ops.
  hits = losses.per_example_metrics(logits, labels, task)
  mean_loss = jax.numpy.mean(losses.per_example_loss(logits, labels, task, label_smoothing))
  return {'loss': mean_loss, **{k: jax.numpy.mean(v) for k, v in hits.items()}}


def compute_metrics(
  preds: Predictions, task: Task, label_smoothing: float | None = None
) -> dict[str, float]:
  """Every evaluation metric of a pass.

  Args:
    preds: the pass's predictions.
    task: how logits are read.
    label_smoothing: applied to the reported loss as in training.

  Returns:
    'num_examples', 'loss', 'top1', 'top5'; for single-label tasks
    'mean_per_class_accuracy'; for multi-head tasks '<head>_top1',
    '<head>_top5', '<head>_mean_per_class_accuracy' and 'top1' = the joint
    (action) accuracy; for multi-label tasks 'mAP'.
  """
  logits, labels = preds.logits, preds.labels
  means = _mean_loss_and_hits(logits, labels, task, label_smoothing)
  out = {'num_examples': float(len(labels)), **{k: float(v) for k, v in means.items()}}
  if task.multi_label:
    out['mAP'] = mean_average_precision(logits, labels)
  elif len(task.heads) == 1:
    out['mean_per_class_accuracy'] = mean_per_class_accuracy(logits, labels)
  else:
    for name, (start, stop) in zip(task.head_names, task.heads, strict=True):
      acc = mean_per_class_accuracy(logits[:, start:stop], labels[:, start:stop])
      out[f'{name}_mean_per_class_accuracy'] = acc
  return out


def confusion_images(
  preds: Predictions,
  task: Task,
  label_names: Sequence[Any] | None = None,
  title: str | None = None,
) -> dict[str, np.ndarray]:
  """One confusion-matrix image per head (none for multi-label tasks).

  `label_names` is as for `write_predictions`: a flat list (single head) or one
  list per head; `title` heads every image.
  """
  if task.multi_label:
    return {}
  if len(task.heads) == 1:
    matrix = confusion_matrix(preds.logits, preds.labels)
    names = label_names if label_names and isinstance(label_names[0], str) else None
    return {'confusion_matrix': confusion_image(matrix, names, title)}
  per_head = label_names if label_names and not isinstance(label_names[0], str) else None
  out = {}
  for h, (name, (a, b)) in enumerate(zip(task.head_names, task.heads, strict=True)):
    matrix = confusion_matrix(preds.logits[:, a:b], preds.labels[:, a:b])
    names = per_head[h] if per_head and h < len(per_head) else None
    out[f'{name}_confusion_matrix'] = confusion_image(
      matrix, names, f'{title or ""} {name}'.strip()
    )
  return out


def _softmax(x: np.ndarray) -> np.ndarray:
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def _top5(labels: np.ndarray, probs: np.ndarray, names: Sequence[str] | None):
  order = np.argsort(-probs, kind='stable')[:5]
  record = {
    'labels': [int(c) for c in np.flatnonzero(labels >= labels.max()) if labels[c] > 0],
    'top5_classes': [int(c) for c in order],
    'top5_scores': [round(float(probs[c]), 6) for c in order],
  }
  if names:
    record['top5_names'] = [str(names[c]) for c in order]
  return record


def write_predictions(
  path: str, preds: Predictions, task: Task, label_names: Sequence[Any] | None = None
) -> None:
  """Writes one JSON line per video: key, true labels, top-5 classes and scores.

  Scores are softmax probabilities (sigmoid for multi-label tasks); multi-head
  tasks write one such record per head, under the head's name. `label_names`
  is a flat list (single head) or one list per head.
  """
  heads = task.heads
  head_names = label_names if len(heads) > 1 else [label_names]
  if len(heads) > 1 and label_names and isinstance(label_names[0], str):
    head_names = None  # A flat list cannot be split by head.
  with fileio.atomic_write(path) as f:
    for i, key in enumerate(preds.keys):
      record: dict[str, Any] = {'key': str(key)}
      for h, (name, (a, b)) in enumerate(zip(task.head_names, heads, strict=True)):
        logits, labels = preds.logits[i, a:b], preds.labels[i, a:b]
        probs = 1 / (1 + np.exp(-logits)) if task.multi_label else _softmax(logits)
        names = head_names[h] if head_names and h < len(head_names) else None
        fields = _top5(labels, probs, names)
        if len(heads) == 1:
          record.update(fields)
        else:
          record[name] = fields
      f.write(json.dumps(record) + '\n')

"""Host-side evaluation metrics and prediction files, against hand-computed values."""

import json

import numpy as np

from vivit_jax.task import Task
from vivit_jax.train import evaluation


def _preds(logits, labels):
  logits, labels = np.asarray(logits, np.float32), np.asarray(labels, np.float32)
  return evaluation.Predictions(logits, labels, np.array([f'v{i}' for i in range(len(labels))]))


def test_mean_per_class_accuracy_weights_classes_equally():
  # Class 0: 3 of 3 right; class 1: 0 of 1 right -> top-1 3/4, per-class mean 1/2.
  logits = [[1, 0], [1, 0], [1, 0], [1, 0]]
  labels = [[1, 0], [1, 0], [1, 0], [0, 1]]
  metrics = evaluation.compute_metrics(_preds(logits, labels), Task(2))
  assert metrics['top1'] == 0.75 and metrics['mean_per_class_accuracy'] == 0.5
  assert metrics['num_examples'] == 4
  np.testing.assert_allclose(metrics['loss'], np.log(1 + np.e) - 0.75, rtol=1e-5)
  np.testing.assert_array_equal(
    evaluation.confusion_matrix(np.asarray(logits), np.asarray(labels)), [[3, 0], [1, 0]]
  )


def test_mean_average_precision():
  # Class 0 ranks its positives 1st and 3rd: AP = (1/1 + 2/3) / 2. Class 1: AP 1.
  logits = [[0.9, 0.1], [0.8, 0.9], [0.7, 0.2]]
  labels = [[1, 0], [0, 1], [1, 0]]
  metrics = evaluation.compute_metrics(_preds(logits, labels), Task(2, multi_label=True))
  np.testing.assert_allclose(metrics['mAP'], ((1 + 2 / 3) / 2 + 1) / 2, rtol=1e-6)


def test_multi_head_metrics_and_predictions(tmp_path):
  task = Task(5, class_splits=(2, 3), split_names=('verb', 'noun'))
  logits = [[2, 0, 0, 3, 0], [2, 0, 3, 0, 0]]
  labels = [[1, 0, 0, 1, 0], [1, 0, 0, 1, 0]]
  preds = _preds(logits, labels)
  metrics = evaluation.compute_metrics(preds, task)
  assert metrics['verb_top1'] == 1.0 and metrics['noun_top1'] == 0.5 and metrics['top1'] == 0.5
  assert set(evaluation.confusion_images(preds, task)) == {
    'verb_confusion_matrix',
    'noun_confusion_matrix',
  }
  path = str(tmp_path / 'predictions_test.jsonl')
  evaluation.write_predictions(path, preds, task, [['take', 'put'], ['cup', 'pan', 'lid']])
  with open(path) as f:
    rows = [json.loads(line) for line in f]
  assert rows[1]['key'] == 'v1'
  assert rows[1]['noun']['top5_classes'] == [0, 1, 2] and rows[1]['noun']['labels'] == [1]
  assert rows[1]['noun']['top5_names'][0] == 'cup'
  assert rows[0]['verb']['top5_names'] == ['take', 'put']


def test_confusion_image_is_a_labelled_figure():
  matrix = np.array([[5, 1, 0], [0, 6, 0], [2, 0, 4]])
  names = ['left', 'right', 'up']
  image = evaluation.confusion_image(matrix, names, 'validation, step 4')
  assert image.dtype == np.float32 and image.shape[0] == 1 and image.shape[-1] == 3
  assert 0.0 <= image.min() and image.max() <= 1.0
  # A readable figure, not one pixel block per cell, and the names are drawn:
  # the same matrix with index labels renders differently.
  assert min(image.shape[1:3]) >= 300
  unnamed = evaluation.confusion_image(matrix)
  assert image.shape != unnamed.shape or np.abs(image - unnamed).max() > 0.5
  # Dark blue (rate 1 on 'Blues') is where the diagonal is; a white matrix would fail.
  assert (image[0].sum(-1) < 1.0).mean() > 0.01


def test_confusion_images_name_each_head():
  task = Task(5, class_splits=(2, 3), split_names=('verb', 'noun'))
  preds = _preds([[2, 0, 0, 3, 0], [2, 0, 3, 0, 0]], [[1, 0, 0, 1, 0], [1, 0, 0, 1, 0]])
  named = evaluation.confusion_images(preds, task, [['take', 'put'], ['cup', 'pan', 'lid']])
  plain = evaluation.confusion_images(preds, task)
  for key in ('verb_confusion_matrix', 'noun_confusion_matrix'):
    a, b = named[key], plain[key]
    assert a.shape != b.shape or np.abs(a - b).max() > 0.5


def test_average_precision_gives_tied_scores_one_threshold():
  # scikit-learn's definition: AP = sum_n (R_n - R_n-1) P_n over the distinct
  # scores. Scores [.9, .5, .5, .1], positives at the first two: threshold .9
  # gives P 1, R 1/2; threshold .5 takes both tied clips (P 2/3, R 1).
  scores = np.array([0.9, 0.5, 0.5, 0.1])
  np.testing.assert_allclose(
    evaluation.average_precision(scores, np.array([1, 1, 0, 0])), 0.5 * 1 + 0.5 * 2 / 3
  )
  # The answer does not depend on where the positive sits among the tied clips.
  np.testing.assert_allclose(
    evaluation.average_precision(scores, np.array([1, 0, 1, 0])), 0.5 * 1 + 0.5 * 2 / 3
  )
  # Every score tied: one threshold, AP = the share of positives.
  np.testing.assert_allclose(evaluation.average_precision(np.zeros(4), np.array([1, 1, 0, 0])), 0.5)

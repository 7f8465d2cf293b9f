"""Losses and per-example metrics for the three kinds of video classification.

A `Task` says how logits are read: one softmax over all classes (Kinetics),
independent sigmoids (multi-label), or several softmax heads whose logits are
concatenated along the class axis (EPIC-Kitchens verb + noun). Every function
here works per example so that callers can mask padding and sum exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vivit_jax.task import Task


def smooth_labels(labels: jax.Array, label_smoothing: float | None) -> jax.Array:
  """Scenic's label smoothing: y * (1 - s) + s / C, over the last axis.

  Args:
    labels: f32[..., C] one-hot, multi-hot or mixed targets.
    label_smoothing: s in [0, 1), or None for no smoothing.

  Returns:
    f32[..., C] smoothed targets.
  """
  if not label_smoothing:
    return labels
  num_classes = labels.shape[-1]
  return labels * (1.0 - label_smoothing) + label_smoothing / num_classes


def per_example_loss(
  logits: jax.Array, labels: jax.Array, task: Task, label_smoothing: float | None = None
) -> jax.Array:
  """Classification loss of each example.

  Softmax cross-entropy for single-label tasks; sigmoid cross-entropy summed
  over classes for multi-label tasks (Scenic's convention); the mean of the
  per-head softmax cross-entropies for multi-head tasks. Label smoothing is
  applied per head.

  Args:
    logits: f32[B, C].
    labels: f32[B, C] targets (rows of each head sum to 1 unless multi-label).
    task: how to read the logits.
    label_smoothing: optional smoothing factor.

  Returns:
    f32[B] losses.
  """
  logits = logits.astype(jnp.float32)
  if task.multi_label:
    targets = smooth_labels(labels, label_smoothing)
    log_p = jax.nn.log_sigmoid(logits)
    log_not_p = jax.nn.log_sigmoid(-logits)
    return -jnp.sum(targets * log_p + (1.0 - targets) * log_not_p, axis=-1)
  losses = []
  for start, stop in task.heads:
    targets = smooth_labels(labels[:, start:stop], label_smoothing)
    log_p = jax.nn.log_softmax(logits[:, start:stop], axis=-1)
    losses.append(-jnp.sum(targets * log_p, axis=-1))
  return jnp.mean(jnp.stack(losses, axis=0), axis=0)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """1.0 where any of the k highest logits is a positive label, per example.

  For one-hot labels this is top-k accuracy; for multi-hot labels it counts a
  hit when a top-k class is any of the true classes. Mixed (soft) labels count
  their largest entry as the class.

  Args:
    logits: f32[B, C].
    labels: f32[B, C].
    k: number of top classes; clipped to C.

  Returns:
    f32[B] of 0.0 / 1.0.
  """
  k = min(k, logits.shape[-1])
  _, top = jax.lax.top_k(logits, k)  # [B, k]
  positive = labels >= jnp.max(labels, axis=-1, keepdims=True)
  positive &= labels > 0
  hit = jnp.take_along_axis(positive, top, axis=-1)
  return jnp.any(hit, axis=-1).astype(jnp.float32)


def joint_topk_correct(logits: jax.Array, labels: jax.Array, task: Task, k: int) -> jax.Array:
  """1.0 where the true combination of head classes is among the k likeliest, per example.

  Scenic's `joint_top_k`: a prediction is one class from every head, scored by
  the product of the heads' softmax probabilities (here the sum of their
  log-probabilities). Only each head's k best classes can be in the joint top
  k, so the k^H candidates built from them are ranked instead of every pair.
  The true class of a head is its label's argmax, as in Scenic.

  Args:
    logits: f32[B, C] concatenated head logits.
    labels: f32[B, C] concatenated head targets.
    task: a multi-head task.
    k: number of top combinations.

  Returns:
    f32[B] of 0.0 / 1.0.
  """
  batch = logits.shape[0]
  scores = jnp.zeros((batch, 1), jnp.float32)
  correct = jnp.ones((batch, 1), bool)
  for start, stop in task.heads:
    log_p = jax.nn.log_softmax(logits[:, start:stop].astype(jnp.float32), axis=-1)
    head_scores, head_classes = jax.lax.top_k(log_p, min(k, stop - start))  # [B, k_h]
    true_class = jnp.argmax(labels[:, start:stop], axis=-1)[:, None]
    # Candidates so far x this head's k_h classes, flattened: [B, n * k_h].
    scores = (scores[:, :, None] + head_scores[:, None, :]).reshape(batch, -1)
    correct = (correct[:, :, None] & (head_classes == true_class)[:, None, :]).reshape(batch, -1)
  _, top = jax.lax.top_k(scores, min(k, scores.shape[-1]))
  return jnp.any(jnp.take_along_axis(correct, top, axis=-1), axis=-1).astype(jnp.float32)


def per_example_metrics(logits: jax.Array, labels: jax.Array, task: Task) -> dict[str, jax.Array]:
  """Top-1 and top-5 hits of each example; per head and joint for multi-head.

  Args:
    logits: f32[B, C].
    labels: f32[B, C].
    task: how to read the logits.

  Returns:
    dict of f32[B]: 'top1', 'top5' (for multi-head tasks the joint 'action'
    hits: top-1 counts only when every head's top-1 is right, top-5 when the
    true combination is among the five likeliest, Scenic's `joint_top_k`), and
    '<head>_top1', '<head>_top5' for each head of a multi-head task.
  """
  if len(task.heads) == 1:
    return {'top1': topk_correct(logits, labels, 1), 'top5': topk_correct(logits, labels, 5)}
  out, joint = {}, None
  for name, (start, stop) in zip(task.head_names, task.heads, strict=True):
    head_logits, head_labels = logits[:, start:stop], labels[:, start:stop]
    out[f'{name}_top1'] = topk_correct(head_logits, head_labels, 1)
    out[f'{name}_top5'] = topk_correct(head_logits, head_labels, 5)
    joint = out[f'{name}_top1'] if joint is None else joint * out[f'{name}_top1']
  out['top1'] = joint
  out['top5'] = joint_topk_correct(logits, labels, task, 5)
  return out


def l2_regularization(params) -> jax.Array:
  """Sum of squares of the parameters with more than one axis (Scenic's `l2_regularization`).

  Biases, LayerNorm scales and other vectors are left out, as in Scenic, so a
  ported config with `l2_decay_factor > 0` does not pull LayerNorm scales to zero.

  Args:
    params: a parameter tree.

  Returns:
    f32[] the sum of w^2 over every leaf with ndim > 1.
  """
  return sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(params) if jnp.ndim(x) > 1)

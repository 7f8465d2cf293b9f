"""A model and its params as a TF SavedModel through jax2tf; see vivit_jax/tools/export.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
from jax.experimental import jax2tf


def export_saved_model(module: Any, params: Any, shape: Sequence[int], output: str) -> None:
  """Writes `module` with `params` as a SavedModel with a polymorphic batch dimension.

  Args:
    module: the Flax model (`build_model(config)`).
    params: its parameters.
    shape: (T, S, S, 3) of one view.
    output: the SavedModel directory.
  """

  def forward(p, video):
    return module.apply({'params': p}, video, train=False)

  converted = jax2tf.convert(forward, polymorphic_shapes=[None, '(b, ...)'], with_gradient=False)
  holder = tf.Module()
  holder.params = tf.nest.map_structure(lambda x: tf.Variable(x, trainable=False), params)
  spec = tf.TensorSpec([None, *shape], tf.float32, name='video')

  @tf.function(autograph=False, input_signature=[spec])
  def predict(video):
    return converted(holder.params, video)

  @tf.function(autograph=False, input_signature=[spec])
  def serving(video):
    return {'logits': predict(video)}

  holder.predict = predict
  tf.saved_model.save(holder, output, signatures={'serving_default': serving})

"""The jax2tf SavedModel export gives the JAX model's outputs for any batch size."""

import jax
import numpy as np
import tensorflow as tf
from test_inference_fakes import random_params, tiny_config

from vivit_jax.inference import export
from vivit_jax.models import build_model, input_shape


def test_saved_model_equals_jax_for_several_batch_sizes(tmp_path):
  config = tiny_config('factorized_encoder')
  params = random_params(config, seed=1)
  module = build_model(config)
  shape = input_shape(config)
  export.export_saved_model(module, params, shape, str(tmp_path / 'saved'))
  loaded = tf.saved_model.load(str(tmp_path / 'saved'))
  serving = loaded.signatures['serving_default']
  rng = np.random.default_rng(0)
  # Compiled, as the SavedModel is: eager op-by-op JAX rounds differently.
  apply = jax.jit(lambda v: module.apply({'params': params}, v, train=False))
  for batch in (1, 3):
    video = rng.uniform(-1, 1, (batch, *shape)).astype(np.float32)
    expected = np.asarray(apply(video))
    assert expected.shape == (batch, 3) and np.ptp(expected) > 0.1
    # Not bit-identical: TF compiles the shape-polymorphic module itself and
    # rounds differently in the last bit or two (measured max |diff| 8e-7).
    got = loaded.predict(video).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    served = serving(video=tf.constant(video))['logits'].numpy()
    np.testing.assert_array_equal(served, got)
    print(f'batch {batch}: max |tf - jax| = {np.abs(got - expected).max():.2e}')

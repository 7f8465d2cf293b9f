"""Test setup: 8 fake CPU devices, so pmap and multi-device code really run.

XLA reads the flag once, when JAX first initialises its backend, so it is set
here, before any test module imports jax.
"""

import os

os.environ['XLA_FLAGS'] = (
  os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
).strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# TensorFlow only feeds data here; keep it off the accelerators JAX uses.
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

"""Test setup: 8 fake CPU devices, so pmap and multi-device code really run.

XLA reads the flag once, when JAX first initialises its backend, so it is set
here, before any test module imports jax.
"""

import atexit
import os
import shutil
import tempfile

import gcs_emulator
import pytest

os.environ['XLA_FLAGS'] = (
  os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
).strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# TensorFlow only feeds data here; keep it off the accelerators JAX uses.
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
# The suite compiles the same tiny programs many times, in this process and in
# the main.py and tool subprocesses it starts (which inherit the environment):
# one persistent JAX compilation cache per test worker compiles each once. Per
# worker, so that no two processes write one entry at once; new each run, so
# that a run's time never depends on an earlier one.
_WORKER = os.environ.get('PYTEST_XDIST_WORKER', 'main')
_CACHE = tempfile.mkdtemp(prefix=f'vivit_jax_tests_{_WORKER}_')
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', _CACHE)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')


@pytest.fixture(scope='module')
def gcs():
  """A Cloud Storage emulator on loopback (tests/gcs_emulator.py) with bucket `vivit-test`.

  Its environment is set in this process for the module's tests (subprocesses
  inherit it) and taken back afterwards, so that nothing else talks to the proxy.
  """
  with gcs_emulator.running() as emulator:
    emulator.make_bucket('vivit-test')
    saved = {k: os.environ.get(k) for k in emulator.environ}
    emulator.apply()
    try:
      yield emulator
    finally:
      for key, value in saved.items():
        if value is None:
          os.environ.pop(key, None)
        else:
          os.environ[key] = value

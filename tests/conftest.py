"""Test setup: 8 fake CPU devices, so pmap and multi-device code really run, compiled
quickly (tests/cpu_env.py).

XLA reads its flags once, when JAX first initialises its backend, so they are set
here, before any test module imports jax.
"""

import atexit
import os
import shutil
import tempfile

import gcs_emulator
import pytest
from cpu_env import xla_flags

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + xla_flags(8)).strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# TensorFlow only feeds data here; keep it off the accelerators JAX uses.
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
# The suite compiles the same tiny programs many times, in this process and in
# the main.py and tool subprocesses it starts (which inherit the environment):
# one persistent JAX compilation cache compiles each once. pytest-xdist's
# controller loads this file first and its workers inherit its environment, so
# the workers and their subprocesses share the controller's cache (2119 entries,
# 31 MB in one run). Two processes may write one entry at once; a torn read is
# an error JAX catches, warns of and compiles through. New each run, so that a
# run's time never depends on an earlier one.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix='vivit_jax_tests_')
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

# The files that take longest (seconds of a 2-core run, `pytest --durations=0`), first. Under
# the Makefile's `--dist worksteal` each worker starts on one half of this order and takes
# from the end of the other's when it runs out: the long tests start early, the short ones
# even out the end, and no long test started last leaves the other worker idle while it runs.
# (`--dist loadfile` would keep each file on one worker but runs the files with the fewest
# tests last, this suite's longest among them: 711 s against 708 with the plain `load`.)
SLOW_FIRST = (
  'test_reliability_preemption.py',  # six main.py runs, two of them killed
  'test_docs.py',  # every documented command
  'test_fit.py',  # TPU and GPU compiles, one at a time
  'test_tools_workdir.py',
  'test_models.py',
  'test_ablation_sweep.py',
  'test_reliability_exits.py',
  'test_reliability_multihost.py',
  'test_accelerator_check.py',
  'test_train_parallel.py',
  'test_data_gcs.py',
  'test_train_main.py',
  'test_perf.py',
)


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOW_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable


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

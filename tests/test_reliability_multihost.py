"""Two processes joined by jax.distributed on localhost train like one process.

Each process runs `main.py` with 2 fake CPU devices (gloo collectives) and
reads its own half of the shards. As on a pod, the shards and the workdir are
in a bucket (the Cloud Storage emulator), not on a disk the processes share.
A single process with 4 devices, fed the same global batches (host 0's half
beside host 1's), must reach the same parameters.
"""

import os
import socket
import subprocess
import sys
import uuid

import jax
import numpy as np
import reliability_fakes as rf

from vivit_jax import fileio

STEPS = 4

# One process, 4 devices, the global batch of the 2-host run: host 0's 2
# devices' slices, then host 1's, exactly as the pmap over all 4 devices saw them.
SINGLE_PROCESS = """
import sys
import uuid
import numpy as np
from vivit_jax.config import load_config_file, resolve
from vivit_jax.data import build_dataset
from vivit_jax.train import trainer

config = resolve(load_config_file(sys.argv[1]))
hosts = [
  build_dataset(config, num_local_devices=2, process_index=i, process_count=2) for i in range(2)
]

class BothHosts:
  meta = hosts[0].meta

  def train_iter(self, start_step=0):
    for a, b in zip(*(h.train_iter(start_step) for h in hosts)):
      yield {k: np.concatenate([a[k], b[k]]) for k in a}

trainer.train_and_evaluate(config, sys.argv[2], dataset=BothHosts())
"""


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_share_a_bucket_train_like_one_and_write_one_checkpoint(tmp_path, gcs):
  local_data = str(tmp_path / 'data')
  rf.write_tfrecords(local_data, shards=4, per_shard=4)
  bucket = f'gs://vivit-test/multihost-{uuid.uuid4().hex[:8]}'
  data_dir = f'{bucket}/data'
  for name in os.listdir(local_data):
    fileio.copy(os.path.join(local_data, name), f'{data_dir}/{name}')
  config = rf.write_config(str(tmp_path / 'config.py'), data_dir, steps=STEPS, checkpoint_steps=2)
  cache = str(tmp_path / 'cache')
  workdir = f'{bucket}/two_hosts'
  address = f'127.0.0.1:{_free_port()}'
  procs = [
    subprocess.Popen(
      rf.main_command(
        config,
        workdir,
        f'--coordinator_address={address}',
        '--num_processes=2',
        f'--process_id={i}',
      ),
      cwd=rf.REPO,
      env=rf.main_env(cache, devices=2),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  logs = []
  try:
    for proc in procs:
      logs.append(proc.communicate(timeout=240)[0])
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  # Both logs on a failure: the process that failed often failed waiting for the other.
  both = '\n'.join(f'--- process {i}:\n{log[-3000:]}' for i, log in enumerate(logs))
  assert [proc.returncode for proc in procs] == [0, 0], both
  assert 'JAX process 1 of 2' in logs[1]
  for log in logs:
    assert '2 processes, 4 devices (2 local)' in log
  # Both processes applied the same updates (the loss each logs is the global one).
  assert rf.losses_from_log(logs[0]) == rf.losses_from_log(logs[1])

  # One checkpoint per saved step, restorable in this single process.
  checkpoints = os.path.join(workdir, 'checkpoints')
  assert fileio.listdir(checkpoints) == ['2', '4']
  two_hosts = rf.restore_raw(checkpoints, STEPS)
  assert int(two_hosts['step']) == STEPS

  single_dir = str(tmp_path / 'one_process')
  single = subprocess.run(
    [sys.executable, '-c', SINGLE_PROCESS, config, single_dir],
    cwd=rf.REPO,
    env=dict(rf.main_env(cache, devices=4), PYTHONPATH=rf.REPO),
    capture_output=True,
    text=True,
    timeout=240,
  )
  assert single.returncode == 0, single.stderr[-4000:]
  one = rf.restore_raw(os.path.join(single_dir, 'checkpoints'), STEPS)
  leaves = jax.tree_util.tree_leaves_with_path(two_hosts)
  for (path, x), y in zip(leaves, jax.tree_util.tree_leaves(one), strict=True):
    if "['key']['bias']" in jax.tree_util.keystr(path):
      # The attention key bias has no gradient (a softmax ignores a shift shared by one
      # query's scores): Adam scales what rounding leaves of it into steps of any sign, which
      # any other order of summation changes. It stays at its zero init, give or take those.
      assert np.abs(x).max() < 1e-5 and np.abs(y).max() < 1e-5, jax.tree_util.keystr(path)
    else:
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
  # Training moved the parameters, so agreeing means something.
  earlier = rf.restore_raw(checkpoints, 2)['params']
  assert any(
    not np.allclose(x, y)
    for x, y in zip(jax.tree_util.tree_leaves(earlier), jax.tree_util.tree_leaves(one['params']))
  )

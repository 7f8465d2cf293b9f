"""Preemption and determinism of `main.py` as a user runs it, in subprocesses.

A run is killed with SIGKILL at random (seeded) moments and restarted; it must
end exactly where an uninterrupted run ends, resuming each time from the
newest complete checkpoint, never from an older one.
"""

import os
import re
import subprocess
import sys
import time
import uuid

import jax
import numpy as np
import reliability_fakes as rf

from vivit_jax import fileio

STEPS = 10
CLOSE = {'rtol': 1e-6, 'atol': 1e-7}


def _assert_same_tree(a, b, **tolerance):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    if tolerance:
      np.testing.assert_allclose(x, y, **tolerance)
    else:
      np.testing.assert_array_equal(x, y)


def _setup(tmp_path, steps):
  data_dir = str(tmp_path / 'data')
  rf.write_tfrecords(data_dir)
  config = rf.write_config(str(tmp_path / 'config.py'), data_dir, steps=steps)
  return config, str(tmp_path / 'cache')


def _start(config, workdir, cache, log_path, cwd=rf.REPO, flags=()):
  log = open(log_path, 'w')
  env = rf.main_env(cache)
  if cwd != rf.REPO:
    env['PYTHONPATH'] = rf.REPO  # the config file imports configs.synthetic
  proc = subprocess.Popen(
    [sys.executable, os.path.join(rf.REPO, 'main.py'), f'--config={config}', f'--workdir={workdir}']
    + list(flags),
    cwd=cwd,
    env=env,
    stdout=log,
    stderr=subprocess.STDOUT,
    text=True,
  )
  return proc, log


def _wait_for(path, pattern, proc, timeout=120):
  deadline = time.time() + timeout
  while time.time() < deadline:
    with open(path) as f:
      if re.search(pattern, f.read()):
        return
    if proc.poll() is not None:
      return
    time.sleep(0.05)
  raise TimeoutError(f'{pattern!r} never appeared in {path}.')


def _kill_until_done(config, workdir, cache, logs, reference_losses, *, kills, seed, **start):
  """Runs main.py on `workdir`, SIGKILLing the first `kills` runs at random moments.

  Checks after every run that the next resumes from the newest complete
  checkpoint, that none goes missing or backwards, and that the steps trained
  after the last resume give the reference losses. Returns the finished log.
  """
  checkpoints = os.path.join(workdir, 'checkpoints')
  rng = np.random.default_rng(seed)
  latest = 0
  killed = 0
  for attempt in range(kills + 3):
    log_path = os.path.join(logs, f'log{attempt}.txt')
    proc, log = _start(config, workdir, cache, log_path, **start)
    try:
      _wait_for(log_path, r'Training steps', proc)
      if killed < kills:
        # A random moment after training starts: during a step, a save or an
        # asynchronous checkpoint write.
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
          proc.kill()
          killed += 1
      proc.wait(timeout=240)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
      log.close()
    with open(log_path) as f:
      text = f.read()
    resumed = re.findall(r'Resumed from step (\d+)', text)
    # Each restart resumes from the newest complete checkpoint the last run left.
    assert [int(s) for s in resumed] == ([latest] if latest else []), text[-3000:]
    steps = rf.saved_steps(checkpoints)
    assert not steps or steps[-1] >= latest  # the last saved step never goes backwards
    for step in steps:  # every checkpoint left behind restores, and is what it says
      assert int(rf.restore_raw(checkpoints, step)['step']) == step
    latest = steps[-1] if steps else 0
    if proc.returncode == 0:
      # The steps trained after the last resume gave the uninterrupted run's losses.
      losses = rf.losses_from_log(text)
      assert losses and all(
        np.isclose(v, reference_losses[s], rtol=1e-5) for s, v in losses.items()
      )
      break
  assert killed == kills
  assert latest == STEPS and proc.returncode == 0, text[-3000:]
  return text


def _upload(local_dir, uri):
  for name in os.listdir(local_dir):
    fileio.copy(os.path.join(local_dir, name), f'{uri}/{name}')


def test_same_seed_is_bit_identical_and_sigkill_at_random_moments_loses_no_work(tmp_path, gcs):
  config, cache = _setup(tmp_path, steps=STEPS)
  # Two uninterrupted runs of one config: identical losses and parameters, bit for bit.
  runs = [rf.run_main(config, str(tmp_path / f'reference{i}'), cache) for i in range(2)]
  for run in runs:
    assert run.returncode == 0, run.stderr[-3000:]
  reference_losses, second = (rf.losses_from_log(r.stderr) for r in runs)
  assert sorted(reference_losses) == list(range(1, STEPS + 1))
  assert reference_losses == second
  assert len(set(reference_losses.values())) > 2  # the losses change: equal means something
  expected, second = (
    rf.restore_raw(str(tmp_path / f'reference{i}' / 'checkpoints'), STEPS) for i in range(2)
  )
  _assert_same_tree(expected, second)

  # The same run killed at a random moment, then again on a bucket: each restart ends where
  # the uninterrupted runs ended.

  workdir = str(tmp_path / 'killed')
  os.makedirs(tmp_path / 'local_logs')
  _kill_until_done(
    config, workdir, cache, str(tmp_path / 'local_logs'), reference_losses, kills=1, seed=8
  )
  _assert_same_tree(rf.restore_raw(os.path.join(workdir, 'checkpoints'), STEPS), expected, **CLOSE)

  # The same on Cloud Storage (the emulator): data and workdir in a bucket, started
  # from an empty directory, which stays empty.
  bucket = f'gs://vivit-test/preempted-{uuid.uuid4().hex[:8]}'
  _upload(str(tmp_path / 'data'), f'{bucket}/data')
  gs_config = rf.write_config(
    str(tmp_path / 'gs_config.py'), f'{bucket}/data', steps=STEPS, checkpoint_steps=1
  )
  here = tmp_path / 'cwd'
  os.makedirs(here)
  os.makedirs(tmp_path / 'gs_logs')
  text = _kill_until_done(
    gs_config,
    f'{bucket}/run',
    cache,
    str(tmp_path / 'gs_logs'),
    reference_losses,
    kills=1,
    seed=3,
    cwd=str(here),
    flags=['--config.write_summary=True'],
  )
  assert f'Written to {bucket}/run' in text
  assert os.listdir(here) == []
  _assert_same_tree(rf.restore_raw(f'{bucket}/run/checkpoints', STEPS), expected, **CLOSE)
  results = fileio.read_json(f'{bucket}/run/results.json')
  assert results['step'] == STEPS
  names = gcs.objects('vivit-test')
  prefix = f'{bucket.removeprefix("gs://vivit-test/")}/run/'
  assert f'{prefix}config.json' in names
  assert any(n.startswith(f'{prefix}train/events.out.tfevents') for n in names)

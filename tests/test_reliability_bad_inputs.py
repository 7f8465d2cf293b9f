"""Bad inputs not covered elsewhere: each fails naming the thing and the fix, losing nothing.

The full catalogue, with the tests of the other rows, is in docs/reliability.md.
"""

import errno
import json
import os

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow as tf
from test_data_bad_input import _dataset
from test_models import tiny_config
from train_fakes import FakeDataset, TinyModel

from vivit_jax.checkpoints import load_pretrained
from vivit_jax.config import get_defaults, resolve
from vivit_jax.data import DataError
from vivit_jax.models import build_model
from vivit_jax.train import optimizers, trainer
from vivit_jax.train.checkpointing import (
  Checkpointer,
  CheckpointMismatchError,
  CheckpointSaveError,
)
from vivit_jax.train.state import TrainState, init_params


def _config(steps):
  c = get_defaults()
  c.batch_size = 16
  c.num_training_steps = steps
  c.checkpoint_steps = 1
  c.log_eval_steps = 100
  c.count_flops = False
  c.write_summary = False
  return c


def _train(workdir, steps, width=16):
  return trainer.train_and_evaluate(
    _config(steps), workdir, dataset=FakeDataset(num_devices=8), module=TinyModel(6, width=width)
  )


def _restore(workdir, width=16):
  model, schedule = TinyModel(6, width=width), lambda s: 0.0
  target = TrainState.create(
    apply_fn=model.apply,
    params=init_params(model, jax.random.key(0), (4, 8, 8, 3)),
    tx=optimizers.build_optimizer(_config(1), schedule),
    schedule=schedule,
    rng=jax.random.key_data(jax.random.key(0)),  # The state holds raw key data.
  )
  return Checkpointer(os.path.join(workdir, 'checkpoints')).restore(target)


def test_workdir_from_a_different_config_is_refused_and_left_as_it_was(tmp_path):
  workdir = str(tmp_path)
  _train(workdir, steps=2)
  with open(os.path.join(workdir, 'config.json')) as f:
    written = f.read()
  before = _restore(workdir)
  with pytest.raises(
    CheckpointMismatchError,
    match=r'step 2 in .*checkpoints does not fit the model of this config: params/Dense_0/bias '
    r'has shape \(16,\) in the checkpoint but \(32,\) in the model.*Rerun with that config, '
    'or use a new --workdir',
  ):
    _train(workdir, steps=4, width=32)
  with open(os.path.join(workdir, 'config.json')) as f:
    assert f.read() == written  # the config that wrote the checkpoints is kept
  after = _restore(workdir)
  assert int(after.step) == 2
  jax.tree_util.tree_map(np.testing.assert_array_equal, after.params, before.params)


def test_disk_full_while_saving_keeps_the_last_checkpoint_and_says_so(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  real_save = ocp.CheckpointManager.save

  def disk_full_from_step_3(self, step, *args, **kwargs):
    if step >= 3:
      # What a full disk leaves: a half-written temporary step directory.
      os.makedirs(os.path.join(str(self.directory), f'{step}.orbax-checkpoint-tmp-0'))
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, 'save', disk_full_from_step_3)
  with pytest.raises(
    CheckpointSaveError,
    match=r'Could not save the checkpoint of step 3 in .*checkpoints: No space left on device\. '
    r'The checkpoint of step 2 is complete and intact .*Free space there',
  ) as error:
    _train(workdir, steps=4)
  assert error.value.errno == errno.ENOSPC
  assert Checkpointer(os.path.join(workdir, 'checkpoints')).latest_step() == 2
  assert int(_restore(workdir).step) == 2

  monkeypatch.undo()  # Space was freed: the same command resumes and finishes.
  data = FakeDataset(num_devices=8)
  result = trainer.train_and_evaluate(_config(4), workdir, dataset=data, module=TinyModel(6))
  assert data.train_starts == [2] and result['step'] == 4
  assert int(_restore(workdir).step) == 4


def test_empty_data_files_are_named_instead_of_waiting_forever(tmp_path):
  path = str(tmp_path / 'train')
  with tf.io.TFRecordWriter(path):
    pass
  with pytest.raises(
    DataError, match=rf"'train' table 'train' has no records: all files are empty \({path}\)"
  ):
    _dataset(path)


def _tiny_params():
  config = resolve(tiny_config())
  d = config.dataset_configs
  shape = (d.num_frames, d.crop_size, d.crop_size, 3)
  return config, init_params(build_model(config), jax.random.key(0), shape)


def test_checkpoints_of_an_unknown_layout_are_named_not_loaded_as_nothing(tmp_path):
  config, params = _tiny_params()
  junk = tmp_path / 'junk.ckpt'
  junk.write_bytes(b'this is not a checkpoint at all')
  np.savez(tmp_path / 'other.npz', alpha=np.zeros(3), beta=np.ones(2))
  (tmp_path / 'other.msgpack').write_bytes(
    flax.serialization.msgpack_serialize({'weights': {'w': np.zeros(2)}})
  )
  cases = {
    junk: r'junk.ckpt.* is not a Scenic/Flax msgpack checkpoint',
    tmp_path / 'other.npz': r"other.npz' \(big_vision format\) holds no parameter of this model: "
    'it has alpha, beta',
    tmp_path / 'other.msgpack': r"other.msgpack' \(scenic format\) holds no parameter of this "
    'model: it has weights/w',
  }
  for path, message in cases.items():
    config.init_from.checkpoint_path = str(path)
    with pytest.raises(ValueError, match=message):
      load_pretrained(config, params)


def test_results_of_a_good_run_are_written_atomically(tmp_path):
  """results.json and config.json are replaced whole, never left half-written."""
  workdir = str(tmp_path)
  _train(workdir, steps=1)
  for name in ('results.json', 'config.json'):
    with open(os.path.join(workdir, name)) as f:
      json.load(f)
  assert not [f for f in os.listdir(workdir) if f.endswith('.tmp')]

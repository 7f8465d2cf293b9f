"""train_and_evaluate end to end on 8 CPU devices with a tiny model and fake data."""

import json
import os
import signal

import jax
import numpy as np
import pytest
from train_fakes import (  # noqa: F401 (fixture)
  FakeDataset,
  SigtermDataset,
  TinyModel,
  compilation_cache,
  trainer_config,
)

from vivit_jax.train import optimizers, trainer
from vivit_jax.train.checkpointing import Checkpointer
from vivit_jax.train.state import TrainState, init_params

pytestmark = pytest.mark.usefixtures('compilation_cache')


class NanDataset(FakeDataset):
  def __init__(self, at: int, **kwargs):
    super().__init__(**kwargs)
    self.at = at

  def train_iter(self, start_step=0):
    for step, batch in enumerate(super().train_iter(start_step), start=start_step + 1):
      if step == self.at:
        batch = dict(batch, inputs=batch['inputs'] * np.nan)
      yield batch


def _model():
  return TinyModel(6, dropout_rate=0.2)


def _final_params(workdir):
  model, schedule = _model(), lambda s: 0.0
  target = TrainState.create(
    apply_fn=model.apply,
    params=init_params(model, jax.random.key(0), (4, 8, 8, 3)),
    tx=optimizers.build_optimizer(trainer_config(), schedule),
    schedule=schedule,
    rng=jax.random.key_data(jax.random.key(0)),  # The state holds raw key data.
  )
  return Checkpointer(os.path.join(workdir, 'checkpoints')).restore(target)


def test_sigterm_checkpoints_and_a_restart_resumes_the_same_run(tmp_path):
  interrupted, straight = str(tmp_path / 'interrupted'), str(tmp_path / 'straight')
  # No device prefetch here, so the signal arrives while step 2's batch is drawn.
  config = trainer_config()
  config.dataset_configs.prefetch_to_device = 0
  result = trainer.train_and_evaluate(
    config, interrupted, dataset=SigtermDataset(2, num_devices=8), module=_model()
  )
  assert result == {'step': 2, 'preempted': True}
  assert Checkpointer(os.path.join(interrupted, 'checkpoints')).latest_step() == 2
  assert not os.path.exists(os.path.join(interrupted, 'results.json'))
  assert signal.getsignal(signal.SIGTERM) is not None  # the handler was restored

  resumed_data = FakeDataset(num_devices=8)
  resumed = trainer.train_and_evaluate(
    trainer_config(), interrupted, dataset=resumed_data, module=_model()
  )
  assert resumed_data.train_starts == [2]  # the data position is restored
  assert resumed['step'] == 4
  trainer.train_and_evaluate(
    trainer_config(), straight, dataset=FakeDataset(num_devices=8), module=_model()
  )
  # Same step, schedule and random stream (dropout, mixup) as an uninterrupted run.
  a, b = _final_params(interrupted), _final_params(straight)
  assert int(a.step) == int(b.step) == 4
  jax.tree_util.tree_map(
    lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a.params, b.params
  )


def test_results_predictions_and_every_example_once(tmp_path):
  workdir = str(tmp_path)
  data = FakeDataset(num_devices=8, num_eval=13, num_test=11)
  results = trainer.train_and_evaluate(
    trainer_config(steps=2, count_flops=True), workdir, dataset=data, module=_model()
  )
  with open(os.path.join(workdir, 'results.json')) as f:
    assert json.load(f) == results
  assert results['validation']['num_examples'] == 13 and results['test']['num_examples'] == 11
  assert results['num_params'] == 4 * 3 * 16 + 16 + 16 * 6 + 6
  assert results['gflops'] > 0
  for split, n in (('validation', 13), ('test', 11)):
    with open(os.path.join(workdir, f'predictions_{split}.jsonl')) as f:
      rows = [json.loads(line) for line in f]
    assert sorted(r['key'] for r in rows) == sorted(f'{split}_{i}' for i in range(n))
    top1 = np.mean([r['top5_classes'][0] in r['labels'] for r in rows])
    np.testing.assert_allclose(top1, results[split]['top1'], rtol=1e-6)
    assert rows[0]['top5_names'][0] == f'class{rows[0]["top5_classes"][0]}'
    assert (
      len(rows[0]['top5_scores']) == 5
      and rows[0]['top5_scores'] == sorted(rows[0]['top5_scores'])[::-1]
    )
  # One TensorBoard run per split, the metric names shared so their curves overlay.
  tags = _event_tags(workdir)
  assert set(tags) == {'train', 'validation', 'test'}
  assert {'loss', 'top1', 'learning_rate', 'steps_per_sec'} <= tags['train']
  for split in ('validation', 'test'):
    assert {'loss', 'top1', 'mean_per_class_accuracy', 'confusion_matrix'} <= tags[split]
  assert not any(
    tag.startswith(('train/', 'validation/', 'test/')) for t in tags.values() for tag in t
  )


def _event_tags(workdir: str) -> dict[str, set[str]]:
  """{run: the tags of its event files}, runs named by their path under `workdir`."""
  import tensorflow as tf

  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      if name.startswith('events.out.tfevents'):
        run = os.path.relpath(root, workdir)
        for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
          out.setdefault(run, set()).update(v.tag for v in event.summary.value)
  return out


def test_a_finished_workdir_says_so_instead_of_training(tmp_path, capsys):
  workdir = str(tmp_path)
  first = trainer.train_and_evaluate(
    trainer_config(steps=2), workdir, dataset=FakeDataset(num_devices=8), module=_model()
  )
  data = FakeDataset(num_devices=8)
  again = trainer.train_and_evaluate(
    trainer_config(steps=2), workdir, dataset=data, module=_model()
  )
  assert data.train_starts == [] and again == first
  assert 'nothing to train' in capsys.readouterr().out


def test_a_non_finite_loss_stops_with_the_step_and_no_nan_checkpoint(tmp_path):
  workdir = str(tmp_path)
  with pytest.raises(trainer.NonFiniteLossError, match='step 3'):
    trainer.train_and_evaluate(
      trainer_config(steps=6, checkpoint_steps=1),
      workdir,
      dataset=NanDataset(3, num_devices=8),
      module=_model(),
    )
  state = _final_params(workdir)
  assert int(state.step) == 2
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(state.params))


def test_training_length_from_epochs():
  c = trainer_config(steps=None)
  c.num_training_epochs = 2.5
  assert trainer.training_length(c, 100) == (15, 6)
  assert [s for s in range(1, 11) if trainer.due(s, 4, 10)] == [4, 8, 10]


def test_init_from_applies_only_when_nothing_is_resumed(tmp_path, monkeypatch):
  import vivit_jax.checkpoints

  calls = []

  def fake_load_pretrained(config, params):
    calls.append(config.init_from.checkpoint_path)
    return jax.tree_util.tree_map(lambda p: p + 1.0, params)

  monkeypatch.setattr(vivit_jax.checkpoints, 'load_pretrained', fake_load_pretrained)
  config = trainer_config(steps=2)
  config.init_from.checkpoint_path = '/pretrained/vit.npz'
  trainer.train_and_evaluate(
    config, str(tmp_path), dataset=FakeDataset(num_devices=8), module=_model()
  )
  assert calls == ['/pretrained/vit.npz']
  config.num_training_steps = 4
  trainer.train_and_evaluate(
    config, str(tmp_path), dataset=FakeDataset(num_devices=8), module=_model()
  )
  assert calls == ['/pretrained/vit.npz']  # resumed: the checkpoint wins

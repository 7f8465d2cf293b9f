"""config.parallelism: the pmapped step and the jit step over a mesh agree, on 8 CPU devices.

Both modes run the same per-device function on the same rows, so every random
draw (dropout, mixup partners and lambda, CutMix boxes) is equal; what differs
is the order of floating-point sums (a pmean against a mean over the rows, the
sharded gathers), hence tolerances rather than equality.
"""

import os

import flax
import jax
import numpy as np
import optax
import pytest
from train_fakes import (  # noqa: F401 (fixture)
  FakeDataset,
  SigtermDataset,
  TinyModel,
  compilation_cache,
  trainer_config,
)

from vivit_jax import config as config_lib
from vivit_jax.models import attention, build_model
from vivit_jax.task import Task
from vivit_jax.train import optimizers, parallel, steps, trainer
from vivit_jax.train.checkpointing import Checkpointer
from vivit_jax.train.state import TrainState, init_params

pytestmark = pytest.mark.usefixtures('compilation_cache')

NUM_CLASSES = 6
TASK = Task(NUM_CLASSES)
STEP_OPTIONS = {
  'label_smoothing': 0.1,
  'l2_decay_factor': 1e-3,
  'max_grad_norm': 0.5,
  'mixup_alpha': 0.4,
}


def _mesh(fsdp):
  """The tiny model's arrays are all under the size the mesh leaves whole: split them too."""
  return parallel.Sharded(fsdp=fsdp, min_sharded_size=0)


def _state(model, tx, schedule):
  return TrainState.create(
    apply_fn=model.apply,
    params=init_params(model, jax.random.key(0), (4, 8, 8, 3)),
    tx=tx,
    schedule=schedule,
    rng=jax.random.key_data(jax.random.key(1)),
  )


def _train(placement, num_steps=4, tx=None, model=None, **options):
  model = model or TinyModel(NUM_CLASSES, width=16, dropout_rate=0.2)
  host = _state(model, tx or optax.sgd(0.3, momentum=0.9), lambda s: 0.3)
  options = steps.StepOptions(**{**STEP_OPTIONS, **options})
  update = steps.make_update_fn(TASK, options, placement=placement)
  state = placement.place_state(host)
  batches = FakeDataset(num_devices=8, batch_size=32).train_iter()
  history = []
  for _ in range(num_steps):
    batch = {k: placement.put_batch(v) for k, v in next(batches).items() if k != 'key'}
    state, metrics = update(state, batch)
    history.append(placement.to_host(metrics))
  return state, placement.to_host(state), history


def _assert_close(a, b, rtol=1e-5, atol=1e-6):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def _arrays(state):
  """What a checkpoint holds: two runs' states carry different optimiser objects."""
  return flax.serialization.to_state_dict(state)


@pytest.mark.parametrize('fsdp', [1, 2])  # 8: test_vivit_blocks_gathering_their_own_weights_*
def test_mesh_steps_match_pmap_steps(fsdp):
  _, reference, reference_history = _train(parallel.Replicated())
  state, host, history = _train(_mesh(fsdp))
  for mine, theirs in zip(history, reference_history, strict=True):
    for key in ('loss', 'total_loss', 'top1', 'grad_norm', 'learning_rate'):
      np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-5, err_msg=key)
    assert mine['finite']
  _assert_close(_arrays(host), _arrays(reference))
  # The state really is split: each device holds 1/fsdp of the hidden layer's kernel.
  kernel = state.params['Dense_0']['kernel']
  assert kernel.addressable_shards[0].data.size == kernel.size // fsdp
  momentum = jax.tree.leaves(state.opt_state)[0]
  assert momentum.addressable_shards[0].data.size == momentum.size // fsdp


class _CountingModel(TinyModel):
  """TinyModel that counts how often it is traced: once per compile of the step."""

  traces = []  # noqa: RUF012 (shared on purpose: the count outlives each clone flax makes)

  def __call__(self, video, train: bool = False):
    type(self).traces.append(1)
    return super().__call__(video, train)


@pytest.mark.parametrize('placement', [parallel.Replicated, lambda: _mesh(8)], ids=['pmap', 'mesh'])
def test_the_step_is_traced_and_compiled_once(placement):
  # The first step's state is placed as the step returns it. Placed with another mesh axis
  # name (flax's default), the pmapped step met new input shardings at step 2 and was
  # traced and compiled a second time: on a TPU, a second compile of ViViT's step.
  counts = []
  for num_steps in (1, 3):
    _CountingModel.traces.clear()
    _train(placement(), num_steps=num_steps, model=_CountingModel(NUM_CLASSES, width=16))
    counts.append(len(_CountingModel.traces))
  assert counts[0] == counts[1] > 0  # init and step 1 trace it; steps 2 and 3 do not


def _vivit(remat):
  """A ViViT-FE of 1 + 1 layers on FakeDataset's 4x8x8 clips, with dropout and stochastic depth."""
  size = {'num_heads': 2, 'mlp_dim': 32, 'num_layers': 1}
  return build_model(
    {
      'model': {
        'hidden_size': 16,
        'spatial_transformer': size,
        'temporal_transformer': dict(size, num_layers=1),
        'patches': {'size': (4, 4, 2)},
        'attention_config': {'type': 'factorized_encoder'},
        'dropout_rate': 0.1,
        'stochastic_droplayer_rate': 0.2,
        'remat': remat,
      },
      'dataset_configs': {'num_classes': NUM_CLASSES, 'num_frames': 4, 'crop_size': 8},
    }
  )


def test_vivit_blocks_gathering_their_own_weights_match_pmap():
  # Over the mesh each encoder block gathers its split weights as it runs (Flax's
  # map_variables, here inside remat's recomputation); the rest of the parameters
  # are gathered for the step. The same steps as pmap's.
  model = _vivit(remat=True)
  _, reference, reference_history = _train(parallel.Replicated(), num_steps=2, model=model)
  state, host, history = _train(_mesh(8), num_steps=2, model=model)
  for mine, theirs in zip(history, reference_history, strict=True):
    np.testing.assert_allclose(mine['loss'], theirs['loss'], rtol=1e-5)
  _assert_close(_arrays(host), _arrays(reference))
  block = state.params['SpatialTransformer']['encoderblock_0']['MlpBlock_0']['Dense_0']['kernel']
  assert block.addressable_shards[0].data.size == block.size // 8


def test_only_the_mesh_step_is_a_program_xla_partitions():
  # The blocks gather their weights, and splash runs per device, only there: pmap's
  # devices each run their own program (its internal mesh is manual), as does plain jit.
  seen = []

  def record(x):
    seen.append(attention.partitioned_mesh())
    return x

  jax.pmap(record)(np.zeros((8, 1)))
  jax.jit(record)(np.zeros(1))
  placement = _mesh(8)
  with jax.set_mesh(placement.mesh):
    jax.jit(jax.vmap(record, spmd_axis_name=parallel.MESH_AXES))(np.zeros((8, 1)))
  assert seen[:2] == [None, None]
  assert seen[2] is not None and seen[2].shape == {'data': 1, 'fsdp': 8}


def test_the_step_gathers_only_the_weights_outside_the_blocks():
  placement = _mesh(8)
  params = placement.place_state(init_params(_vivit(False), jax.random.key(0), (4, 8, 8, 3)))
  with jax.set_mesh(placement.mesh):
    gathered = jax.jit(placement.gather_params)(params)
  whole = lambda x: x.addressable_shards[0].data.size == x.size
  assert whole(gathered['embedding']['kernel']) and whole(gathered['output_projection']['kernel'])
  spatial = gathered['SpatialTransformer']
  assert whole(spatial['encoder_norm']['scale'])
  assert not whole(spatial['encoderblock_0']['MultiHeadDotProductAttention_0']['query']['kernel'])


def test_per_device_clipping_and_cutmix_match_too():
  options = {'clip_grads_per_device': True, 'cutmix_alpha': 1.0, 'mixup_alpha': None}
  _, reference, reference_history = _train(parallel.Replicated(), num_steps=2, **options)
  _, host, history = _train(_mesh(4), num_steps=2, **options)
  for mine, theirs in zip(history, reference_history, strict=True):
    np.testing.assert_allclose(mine['loss'], theirs['loss'], rtol=1e-5)
  _assert_close(_arrays(host), _arrays(reference))


def test_a_non_finite_step_leaves_the_sharded_state_unchanged():
  placement = _mesh(8)
  host = _state(TinyModel(NUM_CLASSES), optax.sgd(0.1), lambda s: 0.1)
  update = steps.make_update_fn(TASK, steps.StepOptions(), placement=placement)
  batch = next(FakeDataset(num_devices=8, batch_size=16).train_iter())
  batch['inputs'][3, 0, 0, 0, 0, 0] = np.nan
  state, metrics = update(
    placement.place_state(host),
    {k: placement.put_batch(v) for k, v in batch.items() if k != 'key'},
  )
  assert not placement.to_host(metrics)['finite']
  _assert_close(placement.to_host(state).params, host.params, rtol=0, atol=0)
  assert int(placement.to_host(state).step) == 0


def test_mesh_eval_step_gives_each_row_its_logits():
  model = TinyModel(NUM_CLASSES)
  params = init_params(model, jax.random.key(0), (4, 8, 8, 3))
  batch = next(FakeDataset(num_devices=8, eval_batch_size=16, num_views=2).test_iter())
  logits = {}
  for placement in (parallel.Replicated(), _mesh(2)):
    predict = steps.make_eval_fn(
      apply_fn=model.apply, task=TASK, multiview=True, placement=placement
    )
    logits[placement.mode] = np.asarray(predict(placement.place_state(params), batch['inputs']))
  assert logits['mesh'].shape == (8, 2, NUM_CLASSES)
  np.testing.assert_allclose(logits['mesh'], logits['pmap'], rtol=1e-5, atol=1e-6)


def test_large_arrays_split_along_their_largest_dividing_axis():
  placement = parallel.Sharded(fsdp=4)
  assert placement.spec((768, 3072)) == jax.sharding.PartitionSpec(None, 'fsdp')
  assert placement.spec((3072, 768)) == jax.sharding.PartitionSpec('fsdp')
  assert placement.spec((2, 16, 16, 3, 768)) == jax.sharding.PartitionSpec(
    None, None, None, None, 'fsdp'
  )
  assert placement.spec((768,)) == jax.sharding.PartitionSpec()  # a bias: whole
  assert placement.spec((401, 403)) == jax.sharding.PartitionSpec()  # nothing divides


def test_a_mesh_the_devices_cannot_form_is_refused_with_the_choices():
  with pytest.raises(config_lib.ConfigError, match=r'fsdp=3 .*one of \[1, 2, 4, 8\]'):
    parallel.Sharded(fsdp=3)


def test_the_config_checks_its_parallelism_keys():
  with pytest.raises(config_lib.ConfigError, match='parallelism'):
    config_lib.resolve({'parallelism': 'fsdp'})
  with pytest.raises(config_lib.ConfigError, match='--config.parallelism=mesh'):
    config_lib.resolve({'mesh': {'fsdp': 4}})
  resolved = config_lib.resolve({'parallelism': 'mesh', 'mesh': {'fsdp': -1}})
  assert isinstance(parallel.from_config(resolved), parallel.Sharded)
  assert parallel.from_config(resolved).fsdp == jax.device_count()


def _final_state(workdir):
  # Only the target's structure matters: the restore replaces every array.
  schedule = lambda s: 0.0
  target = _state(TinyModel(6), optimizers.build_optimizer(trainer_config(), schedule), schedule)
  return Checkpointer(os.path.join(workdir, 'checkpoints')).restore(target)


def test_a_pmap_run_resumed_under_the_mesh_finishes_as_if_uninterrupted(tmp_path):
  interrupted, straight = str(tmp_path / 'interrupted'), str(tmp_path / 'straight')
  model = TinyModel(6, dropout_rate=0.2)
  first = trainer_config()
  first.dataset_configs.prefetch_to_device = 0  # so SIGTERM comes while step 2's batch is drawn
  stopped = trainer.train_and_evaluate(
    first, interrupted, dataset=SigtermDataset(2, num_devices=8), module=model
  )
  assert stopped == {'step': 2, 'preempted': True}
  mesh = trainer_config(parallelism='mesh')
  mesh.mesh.update({'fsdp': 8, 'min_sharded_size': 0})
  resumed = trainer.train_and_evaluate(
    mesh, interrupted, dataset=FakeDataset(num_devices=8), module=model
  )
  reference = trainer.train_and_evaluate(
    trainer_config(), straight, dataset=FakeDataset(num_devices=8), module=model
  )
  # The mesh's training, checkpoint and evaluations (validation, multi-view test).
  assert resumed['step'] == reference['step'] == 4
  for split in ('validation', 'test'):
    for key, value in reference[split].items():
      np.testing.assert_allclose(resumed[split][key], value, rtol=1e-5, err_msg=f'{split} {key}')
  a, b = _final_state(interrupted), _final_state(straight)
  assert int(a.step) == int(b.step) == 4
  _assert_close(a.params, b.params)
  _assert_close(a.opt_state, b.opt_state)

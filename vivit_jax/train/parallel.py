"""How the steps are spread over devices: `config.parallelism`, 'pmap' or 'mesh'.

Both modes run the same per-device functions (`vivit_jax.train.steps`) on the
same batches, f32[D, B, ...] with one row per device:

- 'pmap' (the default): `jax.pmap` over the devices; parameters and optimiser
  state are replicated on every device.
- 'mesh': `jax.jit` over a `Mesh` of the devices with axes ('data', 'fsdp').
  The per-device function is mapped with `jax.vmap` over the batch's rows under
  the same axis name, so `lax.pmean` is a mean over the rows and
  `lax.axis_index` a row's index: each row draws the random numbers its device
  draws under pmap (mixup partners, dropout, stochastic depth, device
  augmentation), and the optimiser runs once on the mean gradient. The rows are
  split over all devices; parameters and optimiser state are split over the
  'fsdp' axis (each array along its largest dimension that `mesh.fsdp` divides;
  arrays under `mesh.min_sharded_size` elements stay whole) and replicated over
  'data'. Each encoder block gathers its weights whole as it runs (one block's
  at a time; the rest are gathered for the step by `Sharded.gather_params`), each
  row's gradient stays whole on its device until the mean (`keep_on_device`), and
  the optimiser updates the shards.

The two give the same step up to the order of floating-point sums (tested on 8
CPU devices), and write the same checkpoints: whole arrays, which either mode
restores on any number of devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax
import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils, multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vivit_jax import config as config_lib

AXIS = 'batch'
MESH_AXES = ('data', 'fsdp')


def unreplicate_to_host(tree: Any) -> Any:
  """The first local device's copy of a pmap-replicated pytree, as numpy arrays.

  Reads that device's buffer directly: no compiled slice, no copy of the other
  replicas to the host.
  """

  def first(x):
    if isinstance(x, jax.Array):
      return np.asarray(x.addressable_shards[0].data)[0]
    return np.asarray(x)[0]

  return jax.tree_util.tree_map(first, tree)


class Replicated:
  """'pmap': every device holds the whole state; the step is `jax.pmap`ped.

  Args:
    devices: the devices to map over (pmap's default, all devices, when None).
  """

  mode = 'pmap'

  def __init__(self, devices: Sequence[jax.Device] | None = None):
    self.devices = list(devices) if devices is not None else None
    local = [d for d in self.devices if d.process_index == jax.process_index()] if devices else None
    self._local = local or jax.local_devices()
    # Axis 0 split over the local devices, on a mesh named as pmap names its own: the
    # placement and the sharding pmap gives its inputs and outputs (see `place_state`).
    self._rows = NamedSharding(Mesh(np.array(self._local), (AXIS,)), P(AXIS))

  def describe(self, state: Any) -> str:
    """One line for the log: the mode and what one device holds of `state`."""
    count = len(self.devices or jax.devices())
    mib = self.state_bytes_per_device(state) / 2**20
    return f'pmap over {count} devices; each holds the whole state ({mib:.1f} MiB).'

  def gather_params(self, params: Any) -> Any:
    """The parameters as the forward pass uses them: here, as they are (whole already)."""
    return params

  def keep_on_device(self, grads: Any) -> Any:
    """One device's own gradient, before the mean: here, as it is."""
    return grads

  def train_step(self, update: Callable) -> Callable:
    """`update(state, batch) -> (state, metrics)` over the devices; the state is donated."""
    return jax.pmap(update, axis_name=AXIS, donate_argnums=(0,), devices=self.devices)

  def eval_step(self, predict: Callable) -> Callable:
    """`predict(params, inputs) -> logits` over the devices; numpy in, per-row logits out."""
    return jax.pmap(predict, axis_name=AXIS, devices=self.devices)

  def place_state(self, state: Any) -> Any:
    """A host state, copied whole onto each local device.

    With the sharding of the step's own output (a mesh axis named as the pmap's): the
    first step takes the same input shardings as every later one. flax's default axis
    name gave a sharding that differs from it by that name only, and the step was
    traced and compiled twice, for step 1 and again for step 2.
    """
    return flax.jax_utils.replicate(state, self._local, axis_name=AXIS)

  def to_host(self, tree: Any) -> Any:
    """One device's copy of a state or the step's metrics, as numpy."""
    return unreplicate_to_host(tree)

  def put_batch(self, value: np.ndarray) -> jax.Array:
    """A host batch array with leading axis D, row i onto local device i."""
    return jax.device_put(value, self._rows)

  def abstract_state(self, state: Any) -> Any:
    """The step's state argument, as shapes: one copy per device."""
    count = len(self.devices or jax.devices())
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct((count, *x.shape), x.dtype), state)

  def state_bytes_per_device(self, state: Any) -> float:
    return float(sum(_size(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(state)))


def _size(shape: Sequence[int]) -> int:
  return int(math.prod(shape))


class Sharded:
  """'mesh': `jax.jit` over a ('data', 'fsdp') mesh; the state is split over 'fsdp'.

  Args:
    devices: the mesh's devices (default: all).
    fsdp: devices the parameters and optimiser state are split over (a divisor
      of the device count; -1: all of them). 1 is data parallelism under jit:
      every device holds the whole state, as with pmap.
    min_sharded_size: arrays of fewer elements stay whole on every device
      (biases, LayerNorm scales: splitting them saves little and adds a gather
      each); `config.mesh.min_sharded_size`.
  """

  mode = 'mesh'

  def __init__(
    self,
    devices: Sequence[jax.Device] | None = None,
    fsdp: int = 1,
    min_sharded_size: int = 2**14,
  ):
    devices = list(devices) if devices is not None else jax.devices()
    count = len(devices)
    fsdp = count if fsdp == -1 else fsdp
    if fsdp < 1 or count % fsdp:
      divisors = [n for n in range(1, count + 1) if count % n == 0]
      raise config_lib.ConfigError(
        f'config.mesh.fsdp={fsdp} does not divide the {count} devices into a mesh: use one of '
        f'{divisors}, or -1 for all of them.'
      )
    self.fsdp = fsdp
    self.min_sharded_size = min_sharded_size
    grid = mesh_utils.create_device_mesh((count // fsdp, fsdp), devices)
    self.mesh = Mesh(grid, MESH_AXES)
    self.batch_sharding = NamedSharding(self.mesh, P(MESH_AXES))
    self.replicated = NamedSharding(self.mesh, P())
    self._local_devices = {d for d in devices if d.process_index == jax.process_index()}

  def spec(self, shape: Sequence[int]) -> P:
    """Where one state array goes: its largest dimension that 'fsdp' divides, or whole."""
    if self.fsdp == 1 or _size(shape) < self.min_sharded_size:
      return P()
    candidates = [i for i, n in enumerate(shape) if n % self.fsdp == 0]
    if not candidates:
      return P()
    axis = max(candidates, key=lambda i: (shape[i], -i))
    return P(*(None,) * axis, 'fsdp')

  def state_shardings(self, state: Any) -> Any:
    """A `NamedSharding` per array of `state` (arrays or `jax.ShapeDtypeStruct`s)."""
    return jax.tree.map(lambda x: NamedSharding(self.mesh, self.spec(np.shape(x))), state)

  def describe(self, state: Any) -> str:
    """One line for the log: the mesh and what one device holds of `state`."""
    leaves = jax.tree.leaves(state)
    split = sum(1 for x in leaves if self.spec(np.shape(x)) != P())
    data, fsdp = self.mesh.devices.shape
    total = sum(_size(np.shape(x)) * np.dtype(x.dtype).itemsize for x in leaves) / 2**20
    mine = self.state_bytes_per_device(state) / 2**20
    return (
      f'jit over a mesh of {data} (data) x {fsdp} (fsdp) devices; {split} of {len(leaves)} state '
      f'arrays split over fsdp: each device holds {mine:.1f} of {total:.1f} MiB.'
    )

  def gather_params(self, params: Any) -> Any:
    """The parameters outside the encoder blocks whole on every device, for the step.

    Left to itself, XLA's partitioner meets a weight split over 'fsdp' and a batch split
    over the same axis by gathering the batch instead (every device then computes on
    all rows: for ViViT-B FE on a v5litepod-16, 16.75 GiB of temporaries against pmap's
    6.32, compiled). So each weight is gathered whole where it is used: the embedding,
    class token, norms and head here, for the whole step; each encoder block's
    (Scenic's `encoderblock_N`) by the block itself as it runs (`layers.Encoder`,
    under the mesh this step sets), one block at a time. The stored parameters and
    the optimiser state stay split.
    """

    def gather(path, x):
      in_block = any(str(getattr(k, 'key', '')).startswith('encoderblock_') for k in path)
      return x if in_block else jax.lax.with_sharding_constraint(x, self.replicated)

    return jax.tree_util.tree_map_with_path(gather, params)

  def keep_on_device(self, grads: Any) -> Any:
    """One row's gradient whole on that row's device, before the mean over rows.

    Without it the partitioner may compute each row's gradient split like the
    parameters, which needs every row's activations on every device (for ViViT-H
    FE on a v5litepod-16: 33.6 GB of temporaries against 16.9 GB with it).
    """
    return jax.lax.with_sharding_constraint(grads, jax.tree.map(lambda _: self.replicated, grads))

  def train_step(self, update: Callable) -> Callable:
    """`update(state, batch) -> (state, metrics)` under jit; the state is donated."""
    # spmd_axis_name: a sharding constraint inside `update` keeps its row axis on the mesh.
    mapped = jax.vmap(
      update, in_axes=(None, 0), out_axes=(None, None), axis_name=AXIS, spmd_axis_name=MESH_AXES
    )
    return _ShardedStep(self, mapped)

  def eval_step(self, predict: Callable) -> Callable:
    """`predict(params, inputs) -> logits`; numpy inputs of this process's rows in, its rows out."""
    mapped = jax.jit(
      jax.vmap(predict, in_axes=(None, 0), axis_name=AXIS, spmd_axis_name=MESH_AXES),
      out_shardings=self.batch_sharding,
    )

    def run(params: Any, inputs: Any) -> np.ndarray:
      with jax.set_mesh(self.mesh):  # The blocks gather their weights; splash runs per device.
        logits = mapped(params, self.put_batch(inputs))
      if jax.process_count() == 1:
        return np.asarray(logits)
      local = multihost_utils.global_array_to_host_local_array(logits, self.mesh, P(MESH_AXES))
      return np.asarray(local)

    return run

  def place_state(self, state: Any) -> Any:
    """A host state (the same on every process), split onto the mesh."""

    def put(x, sharding):
      x = np.asarray(x)
      return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, state, self.state_shardings(state))

  def to_host(self, tree: Any) -> Any:
    """Whole arrays as numpy, on every process (gathered across hosts when split)."""
    leaves = jax.tree.leaves(tree)
    if all(not isinstance(x, jax.Array) or x.is_fully_addressable for x in leaves):
      return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)

  def put_batch(self, value: np.ndarray) -> jax.Array:
    """This process's rows of a batch, as the global batch split over the mesh."""
    return jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(value))

  def abstract_state(self, state: Any) -> Any:
    """The step's state argument, as shapes with their shardings."""
    shardings = self.state_shardings(state)
    return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
    )

  def state_bytes_per_device(self, state: Any) -> float:
    """Bytes of state one device holds: its shard of each array."""
    total = 0.0
    for x in jax.tree.leaves(state):
      shard = NamedSharding(self.mesh, self.spec(x.shape)).shard_shape(x.shape)
      total += _size(shard) * np.dtype(x.dtype).itemsize
    return total


class _ShardedStep:
  """The jitted step of `Sharded`, made for the shardings of the state it is given.

  The state's shardings come from its shapes (`Sharded.spec`), so they are known
  only once a state is given; `lower` takes abstract shapes (`vivit_jax.harness.fit`).
  """

  def __init__(self, parallel: Sharded, mapped: Callable):
    self._parallel = parallel
    self._mapped = mapped
    self._key: Any = None
    self._jitted: Callable | None = None

  def _for(self, state: Any) -> Callable:
    key = (jax.tree.structure(state), tuple(np.shape(x) for x in jax.tree.leaves(state)))
    if key != self._key:
      p = self._parallel
      shardings = p.state_shardings(state)
      self._jitted = jax.jit(
        self._mapped,
        in_shardings=(shardings, p.batch_sharding),
        out_shardings=(shardings, p.replicated),
        donate_argnums=(0,),
      )
      self._key = key
    return self._jitted

  def __call__(self, state: Any, batch: Any) -> tuple[Any, Any]:
    # Under the mesh the model's blocks gather their own weights, and splash runs per device.
    with jax.set_mesh(self._parallel.mesh):
      return self._for(state)(state, batch)

  def lower(self, state: Any, batch: Any) -> Any:
    with jax.set_mesh(self._parallel.mesh):
      return self._for(state).lower(state, batch)


def from_config(
  config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None
) -> Replicated | Sharded:
  """The placement `config.parallelism` asks for, over `devices` (default: all)."""
  if config.parallelism == 'mesh':
    return Sharded(devices, config.mesh.fsdp, config.mesh.min_sharded_size)
  return Replicated(devices)

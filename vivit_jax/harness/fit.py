"""Does a config's train step fit a TPU slice (or NVIDIA GPUs)? Compiled for it, without one.

With libtpu installed, JAX describes a TPU slice's devices from its topology
name alone (`jax.experimental.topologies`), and XLA compiles for them on a
machine with no TPU: the executable's `memory_analysis()` is the chip's own
buffer assignment, and an out-of-memory is XLA's RESOURCE_EXHAUSTED, as on the
hardware. This module compiles the trainer's own step (`trainer.make_update`:
the config's dtype, remat, attention implementation, device augmentation,
optimiser, mixup, NaN guard, and its parallelism: pmap, or jit over a mesh with
the state split over `mesh.fsdp` chips) for such devices and reads what it
needs per chip. Nothing is run, and nothing but abstract shapes is
allocated. Step times are only bounds: compiled FLOPs over the chip's peak.

JAX's CUDA plugin does the same for H100s (`8xh100`), for memory only: XLA's
GPU compiler counts no FLOPs, and without a GPU to time them it cannot choose
among its own matmul kernels (Triton's are left out, cuBLAS's are compiled).

Used by `vivit_jax.tools.fit`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from vivit_jax import config as config_lib
from vivit_jax.data import augment
from vivit_jax.data.clip_spec import ClipSpec
from vivit_jax.data.device_augment import DeviceAugment
from vivit_jax.data.meta import DatasetMeta
from vivit_jax.errors import UserError
from vivit_jax.models import attention, build_module, describe_model
from vivit_jax.models import stats as stats_lib
from vivit_jax.task import task_from_config
from vivit_jax.train import optimizers, parallel, schedules, trainer
from vivit_jax.train.state import TrainState

GIB = 1024**3
LIBTPU_ENV = 'TPU_LIBRARY_PATH'
# The repository's .venv (this file is vivit_jax/harness/fit.py), beside which `make libtpu`
# and `make cuda-plugin` put libtpu and JAX's CUDA 12 plugin without making them importable
# from it (so JAX in the main environment never probes for a TPU or a GPU).
_VENV = os.path.join(
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), '.venv'
)
_LOCAL_LIBTPU = os.path.join(_VENV, 'libtpu', 'libtpu', 'libtpu.so')
_LOCAL_CUDA_PLUGIN = os.path.join(_VENV, 'cuda12')
# What JAX's allocator takes of a GPU's memory unless XLA_PYTHON_CLIENT_MEM_FRACTION says otherwise.
GPU_MEMORY_FRACTION = 0.75


class FitError(UserError, ValueError):
  """A slice name, or libtpu, that the fit check cannot use."""


@dataclasses.dataclass(frozen=True)
class Chip:
  """A TPU generation from Google's published specifications, or an NVIDIA GPU from NVIDIA's.

  Attributes:
    name: as in slice names (v4, v5e, v5p, v6e, h100).
    hbm_bytes: high-bandwidth memory per chip.
    peak_flops: bf16 matrix FLOP/s per chip, dense (the bound for step times).
    megacore: two TensorCores act as one device (v4, v5p); slice names count cores.
    topology_prefix: the generation in libtpu's topology names ('' for a GPU).
    gpu_target: for a GPU, XLA's description of it (a GpuTargetConfigProto in text
      form): what the compiler would read from the device.
  """

  name: str
  hbm_bytes: int
  peak_flops: float
  megacore: bool
  topology_prefix: str
  gpu_target: str | None = dataclasses.field(default=None, repr=False)

  @property
  def platform(self) -> str:
    return 'tpu' if self.gpu_target is None else 'cuda'

  @property
  def limit_bytes(self) -> float:
    """What one step may use: the HBM on a TPU; on a GPU, the share JAX's allocator takes."""
    if self.gpu_target is None:
      return float(self.hbm_bytes)
    fraction = os.environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION', GPU_MEMORY_FRACTION)
    return float(fraction) * self.hbm_bytes


# An H100 SXM 80GB as XLA's GPU compiler sees one (NVIDIA's figures: 132 SMs of up to
# 2048 threads and 64K registers, 228 KiB shared memory per SM, 227 KiB of it for one block,
# 50 MiB L2, 3.35 TB/s HBM3, 1.98 GHz boost clock, compute capability 9.0), with the CUDA and
# cuDNN versions of the cuda12 extra (constraints-accel.txt). device_memory_size (79.1 GiB) is
# what XLA reads from a real one: the 80 GB less what the driver keeps.
_H100_TARGET = """
platform_name: "CUDA"
device_description_str: "NVIDIA H100 80GB HBM3"
runtime_version { major: 12 minor: 9 }
dnn_version_info { major: 9 minor: 28 }
gpu_device_info {
  cuda_compute_capability { major: 9 minor: 0 }
  core_count: 132
  fpus_per_core: 128
  threads_per_warp: 32
  threads_per_block_limit: 1024
  threads_per_core_limit: 2048
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
  shared_memory_per_block: 49152
  shared_memory_per_block_optin: 232448
  shared_memory_per_core: 233472
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  l2_cache_size: 52428800
  memory_bandwidth: 3352320000000
  clock_rate_ghz: 1.98
  device_memory_size: 84929347584
}
"""

CHIPS = {
  'v4': Chip('v4', 32 * GIB, 275e12, True, 'v4'),
  'v5e': Chip('v5e', 16 * GIB, 197e12, False, 'v5e'),
  'v5p': Chip('v5p', 95 * GIB, 459e12, True, 'v5'),
  'v6e': Chip('v6e', 32 * GIB, 918e12, False, 'v6e'),
  'h100': Chip('h100', 84929347584, 989e12, False, '', _H100_TARGET),
}
# The GPU counts of an `NxH100` name: up to 8 on one host, then hosts of 8.
_GPU_COUNTS = (1, 2, 4, 8, 16, 32, 64)
# Chips of a slice -> its torus (2D generations, then 3D ones), as libtpu names them.
_GRID_2D = {
  1: (1, 1),
  4: (2, 2),
  8: (2, 4),
  16: (4, 4),
  32: (4, 8),
  64: (8, 8),
  128: (8, 16),
  256: (16, 16),
}
_GRID_3D = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4), 128: (4, 4, 8)}


@dataclasses.dataclass(frozen=True)
class Slice:
  """A TPU slice by the name users type (`v5litepod-16`, `v4-32`), or GPUs (`8xh100`)."""

  name: str
  chip: Chip
  num_chips: int

  @property
  def compiler_options(self) -> dict[str, Any]:
    """XLA options for compiling without the device: a GPU's Triton matmuls need autotuning on
    one (without it XLA fails to tile them), so its cuBLAS matmuls are compiled instead."""
    return {'xla_gpu_enable_triton_gemm': False} if self.chip.platform == 'cuda' else {}

  @property
  def topology_kwargs(self) -> dict[str, Any]:
    """The arguments of `jax.experimental.topologies.get_topology_desc` for this slice."""
    if self.chip.platform == 'cuda':  # slices x hosts x GPUs per host
      per_host = min(self.num_chips, 8)
      return {
        'platform': 'cuda',
        'topology': f'1x{self.num_chips // per_host}x{per_host}',
        'target_config': self.chip.gpu_target,
      }
    if self.chip.megacore:
      grid = _GRID_3D[self.num_chips]
      wrap = (self.num_chips >= 64,) * 3
    else:
      grid = _GRID_2D[self.num_chips]
      wrap = (grid[0] == 16, grid[1] >= 16, False)
    # One host drives up to 8 chips of a v5e/v6e slice, 4 of a v4/v5p one; larger
    # slices are hosts of 2x2 chips.
    single_host = self.num_chips <= (4 if self.chip.megacore else 8)
    per_host = (*grid, 1)[:3] if single_host else (2, 2, 1)
    return {
      'platform': 'tpu',
      'topology_name': f'{self.chip.topology_prefix}:{"x".join(map(str, grid))}',
      'chip_config_name': 'megacore' if self.chip.megacore else 'default',
      'chips_per_host_bounds': per_host,
      'num_slices': 1,
      'wrap': wrap,
    }


def parse_slice(name: str) -> Slice:
  """'v5litepod-16' -> Slice(v5e, 16 chips); 'v4-32' -> Slice(v4, 16 chips: v4 counts cores);
  '8xH100' -> Slice(h100, 8 GPUs)."""
  known = ', '.join(sorted(known_slices()))
  gpus = re.fullmatch(r'(\d+)x(h100)', name.strip().lower())
  if gpus:
    if int(gpus.group(1)) not in _GPU_COUNTS:
      raise FitError(f'--topology={name}: no such GPU count here; use one of {known}.')
    return Slice(name, CHIPS[gpus.group(2)], int(gpus.group(1)))
  match = re.fullmatch(r'(v4|v5p|v5e|v5litepod|v6e)-(\d+)', name.strip().lower())
  if not match:
    raise FitError(f'--topology={name} is no slice name this check knows: use one of {known}.')
  family, count = match.group(1), int(match.group(2))
  chip = CHIPS['v5e' if family == 'v5litepod' else family]
  chips = count // 2 if chip.megacore else count
  grids = _GRID_3D if chip.megacore else _GRID_2D
  if chips not in grids or (chip.megacore and count % 2):
    raise FitError(f'--topology={name}: no {family} slice of {count} here; use one of {known}.')
  return Slice(name, chip, chips)


def known_slices() -> list[str]:
  names = []
  for family, chip in (('v4', 'v4'), ('v5litepod', 'v5e'), ('v5p', 'v5p'), ('v6e', 'v6e')):
    grids = _GRID_3D if CHIPS[chip].megacore else _GRID_2D
    names += [f'{family}-{n * 2 if CHIPS[chip].megacore else n}' for n in grids]
  return names + [f'{n}xh100' for n in _GPU_COUNTS]


def libtpu_path() -> str | None:
  """libtpu.so: $TPU_LIBRARY_PATH, the `libtpu` package (the `tpu` extra), or .venv/libtpu."""
  if os.environ.get(LIBTPU_ENV):
    return os.environ[LIBTPU_ENV]
  try:
    import libtpu  # optional: only a TPU install has it

    return libtpu.get_library_path()
  except ImportError:
    pass
  return _LOCAL_LIBTPU if os.path.isfile(_LOCAL_LIBTPU) else None


def slice_devices(slice_: Slice) -> list[jax.Device]:
  """One compile-only device per chip of `slice_` (no TPU or GPU needed)."""
  return gpu_devices(slice_) if slice_.chip.platform == 'cuda' else tpu_devices(slice_)


def _describe(slice_: Slice) -> list[jax.Device]:
  from jax.experimental import topologies  # loads the TPU plugin; only this check needs it

  return list(topologies.get_topology_desc(**slice_.topology_kwargs).devices)


def has_cuda_plugin() -> bool:
  """Whether JAX's CUDA 12 plugin is here: the cuda12 extra's, or `make cuda-plugin`'s."""
  if os.path.isdir(os.path.join(_LOCAL_CUDA_PLUGIN, 'jax_plugins')):
    return True
  try:
    return importlib.util.find_spec('jax_plugins.xla_cuda12') is not None
  except ModuleNotFoundError:  # no jax_plugins at all
    return False


@functools.cache
def gpu_devices(slice_: Slice) -> list[jax.Device]:
  """The GPUs of `slice_`, described by JAX's CUDA plugin from the chip's target description."""
  if not has_cuda_plugin():
    raise FitError(
      f"Compiling for {slice_.name} needs JAX's CUDA 12 plugin, which is not installed here: "
      'run `make cuda-plugin` (beside .venv, for compiling only) or install the cuda12 extra '
      '(make install ACCEL=cuda12).'
    )
  if _LOCAL_CUDA_PLUGIN not in sys.path and os.path.isdir(_LOCAL_CUDA_PLUGIN):
    sys.path.append(_LOCAL_CUDA_PLUGIN)
  from jax_plugins import xla_cuda12  # optional, as libtpu is

  # Compiling needs none of the CUDA libraries whose versions the plugin checks first.
  os.environ.setdefault('JAX_SKIP_CUDA_CONSTRAINTS_CHECK', '1')
  try:
    return _describe(slice_)
  except NotImplementedError:  # JAX looked for plugins before this one was on the path
    xla_cuda12.initialize()
    return _describe(slice_)


@functools.cache
def tpu_devices(slice_: Slice) -> list[jax.Device]:
  """The devices of `slice_`, described by libtpu (no TPU needed); one per chip."""
  path = libtpu_path()
  if path is None:
    raise FitError(
      'Compiling for a TPU slice needs libtpu, which is not installed here: run `make libtpu` '
      '(libtpu beside .venv, for compiling only) or install the TPU extra (make install '
      'ACCEL=tpu), or set TPU_LIBRARY_PATH to a libtpu.so.'
    )
  os.environ[LIBTPU_ENV] = path
  # No TPU here: keep libtpu from asking the metadata server which one it is on.
  os.environ.setdefault('TPU_SKIP_MDS_QUERY', '1')
  os.environ.setdefault('TPU_WORKER_HOSTNAMES', 'localhost')
  # libtpu takes a machine-wide lock for the chips it drives; here it drives none,
  # so a second check (or the test suite) may compile beside this one.
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  return _describe(slice_)


@dataclasses.dataclass(frozen=True)
class StepFit:
  """What one chip needs for one compiled train step (bytes, FLOPs per chip).

  Attributes:
    per_chip_batch: clips per chip.
    state_bytes: parameters + optimiser state (+ step, key) one chip holds: all
      of it with pmap, its shard of each array over the mesh.
    batch_bytes: one chip's share of the batch as the host sends it.
    argument_bytes: what XLA allocates for the step's inputs (state and batch, in
      the chip's layouts, which may pad).
    temp_bytes: XLA's temporaries (activations, gradients, workspaces).
    peak_bytes: arguments + outputs - donated + temporaries + code.
    flops: the compiled step's FLOPs per chip.
    paper_flops: 3 x the paper's forward count (2 x multiply-adds) x clips: a
      step without recomputation.
    error: None, or the compiler's refusal (out of memory) in one line.
    kernel_flops_uncounted: the step runs the splash attention kernel, whose
      FLOPs XLA does not count: `flops` is the rest of the step's.
  """

  per_chip_batch: int
  state_bytes: float
  batch_bytes: float
  argument_bytes: float
  temp_bytes: float
  peak_bytes: float
  flops: float
  paper_flops: float
  error: str | None = None
  kernel_flops_uncounted: bool = False

  @property
  def fits(self) -> bool:
    return self.error is None

  @property
  def recompute(self) -> float:
    """Compiled FLOPs over a step without recomputation, minus 1 (remat's or XLA's own)."""
    if not self.paper_flops or self.kernel_flops_uncounted:
      return float('nan')
    return self.flops / self.paper_flops - 1


def _bytes(tree: Any) -> float:
  return float(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _batch_spec(config: ml_collections.ConfigDict, num_classes: int, batch: int) -> dict:
  """One device's train batch, as the pipeline sends it (u8 windows with augment_on_device)."""
  spec = ClipSpec.from_config(config.dataset_configs, num_classes)
  t, s = spec.num_frames, spec.crop_size
  out = {
    'label': jax.ShapeDtypeStruct((batch, num_classes), jnp.float32),
    'batch_mask': jax.ShapeDtypeStruct((batch,), jnp.float32),
  }
  if not spec.augment_on_device:
    out['inputs'] = jax.ShapeDtypeStruct((batch, t, s, s, 3), jnp.float32)
    return out
  side = spec.device_window if spec.device_resize else s
  out['inputs'] = jax.ShapeDtypeStruct((batch, t, side, side, 3), jnp.uint8)
  out['color'] = jax.ShapeDtypeStruct((batch, len(augment.ColorDraw._fields)), jnp.float32)
  out['erase'] = jax.ShapeDtypeStruct((batch, len(augment.EraseBox._fields)), jnp.int32)
  if spec.device_resize:
    out['window'] = jax.ShapeDtypeStruct((batch, 2), jnp.int32)
  return out


def _abstract_state(config, module, input_shape) -> TrainState:
  """The trainer's state as shapes (nothing allocated), with its schedule and optimiser."""
  # The step's program does not depend on the schedule's length (as in perf.measure).
  schedule = schedules.build_schedule(config.lr_configs, 1000)
  tx = optimizers.build_optimizer(config, schedule)

  def init(key):
    video = jnp.zeros((1, *input_shape), jnp.float32)
    params = module.init({'params': key, 'dropout': key}, video, train=False)['params']
    return TrainState.create(
      apply_fn=module.apply, params=params, tx=tx, schedule=schedule, rng=jax.random.key_data(key)
    )

  return jax.eval_shape(init, jax.random.key(0))


def _one_line(error: Exception) -> str:
  text = str(error).strip().splitlines()
  return next((line for line in text if 'RESOURCE_EXHAUSTED' in line), text[0] if text else '')


def lower_step(
  config: ml_collections.ConfigDict, devices: Sequence[jax.Device], per_chip_batch: int
) -> tuple[jax.stages.Lowered, dict[str, Any]]:
  """The trainer's step lowered for `devices` at `per_chip_batch` clips per device.

  Returns:
    The lowered step (abstract state and batch: nothing allocated) and the
    figures known before compiling: `StepFit`'s per_chip_batch, state_bytes,
    batch_bytes, paper_flops and kernel_flops_uncounted.
  """
  config = config_lib.resolve(config)
  description = describe_model(config)
  module = build_module(description)
  shape = description.input_shape
  num_classes = description.head.num_classes
  task = task_from_config(config.dataset_configs, num_classes)
  spec = ClipSpec.from_config(config.dataset_configs, num_classes)
  meta = DatasetMeta(task, shape, 0, 0, 0, 1, None, DeviceAugment.from_spec(spec))
  state = _abstract_state(config, module, shape)
  placement = parallel.from_config(config, list(devices))
  update = trainer.make_update(config, meta, placement)
  batch = _batch_spec(config, num_classes, per_chip_batch)
  figures = {
    'per_chip_batch': per_chip_batch,
    'state_bytes': placement.state_bytes_per_device(state),
    'batch_bytes': _bytes(batch),
    'paper_flops': 3 * 2e9 * _forward_gflops(description) * per_chip_batch,
    'kernel_flops_uncounted': (
      config.model.attention_implementation == 'splash' and devices[0].platform == 'tpu'
    ),
  }
  rows = jax.tree.map(lambda x: jax.ShapeDtypeStruct((len(devices), *x.shape), x.dtype), batch)
  return update.lower(placement.abstract_state(state), rows), figures


def compile_step(
  config: ml_collections.ConfigDict,
  devices: Sequence[jax.Device],
  per_chip_batch: int,
  compiler_options: dict[str, Any] | None = None,
) -> StepFit:
  """Compiles the trainer's step for `devices` at `per_chip_batch` clips per device.

  Args:
    config: an experiment config (resolved here).
    devices: one per chip, e.g. `slice_devices(parse_slice('v5litepod-16'))`, or local devices.
    per_chip_batch: clips per device.
    compiler_options: XLA options for the compile (`Slice.compiler_options`).

  Returns:
    The per-chip figures; `error` holds the compiler's out-of-memory line instead
    of raising.
  """
  lowered, figures = lower_step(config, devices, per_chip_batch)
  try:
    compiled = lowered.compile(compiler_options or None)
  except Exception as e:  # XLA's out-of-memory is a finding, not a crash
    if 'RESOURCE_EXHAUSTED' not in str(e):
      raise
    nan = float('nan')
    return StepFit(
      argument_bytes=nan, temp_bytes=nan, peak_bytes=nan, flops=nan, error=_one_line(e), **figures
    )
  memory = compiled.memory_analysis()
  peak = (
    memory.argument_size_in_bytes
    + memory.output_size_in_bytes
    - memory.alias_size_in_bytes
    + memory.temp_size_in_bytes
    + memory.generated_code_size_in_bytes
  )
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return StepFit(
    argument_bytes=float(memory.argument_size_in_bytes),
    temp_bytes=float(memory.temp_size_in_bytes),
    peak_bytes=float(peak),
    flops=float((cost or {}).get('flops', float('nan'))),
    **figures,
  )


_FORWARD_GFLOPS: dict[str, float] = {}


def _forward_gflops(description) -> float:
  """The paper's GFLOPs (multiply-adds) of one clip's forward pass, compiled on the CPU once."""
  key = repr(description)
  if key not in _FORWARD_GFLOPS:
    module = build_module(description)
    shape = description.input_shape
    params = stats_lib.abstract_params(module, shape)
    _FORWARD_GFLOPS[key] = stats_lib.forward_gflops(module, params, shape)
  return _FORWARD_GFLOPS[key]


def splash_would_run(config: ml_collections.ConfigDict) -> bool:
  """Whether `model.attention_implementation='splash'` would run the kernel for this model.

  It does for the attention over the most tokens where the kernel holds less than
  XLA's attention (`attention.splash_pays`): joint space-time attention over a
  clip's t*h*w tokens, or the others' spatial attention over h*w (+1 class token).
  """
  description = describe_model(config_lib.resolve(config))
  t, h, w = description.token_grid
  longest = t * h * w if description.attention.type == 'spacetime' else h * w
  heads = max(size.num_heads for size in description.encoders.values())
  return attention.splash_pays(longest + 1, description.tokens.hidden_size // heads)


def largest_batch(
  config: ml_collections.ConfigDict,
  devices: Sequence[jax.Device],
  hbm_bytes: float,
  start: int,
  limit: int = 512,
  known: dict[int, StepFit] | None = None,
  compiler_options: dict[str, Any] | None = None,
) -> tuple[int, StepFit | None]:
  """The most clips per chip, up to `limit`, whose step fits in `hbm_bytes`.

  Doubles from `start` until a batch does not fit (or `limit` does), then bisects.

  `known` holds sizes compiled already ({clips: fit}), which are not compiled again.

  Returns:
    (clips, the fit at that size); (0, None) when even one clip does not fit.
  """
  cache: dict[int, StepFit] = dict(known or {})

  def fits(n: int) -> bool:
    if n not in cache:
      logging.info('Compiling the step at %d clips per chip.', n)
      cache[n] = compile_step(config, devices, n, compiler_options)
    return cache[n].fits and cache[n].peak_bytes <= hbm_bytes

  low, high = 0, max(1, min(start, limit))
  while fits(high):
    if high >= limit:
      return high, cache[high]
    low, high = high, min(high * 2, limit)
  while high - low > 1:
    middle = (low + high) // 2
    low, high = (middle, high) if fits(middle) else (low, middle)
  return low, cache.get(low)


def roofline_seconds(flops: float, chip: Chip) -> float:
  """A lower bound on the step time: FLOPs at the chip's peak (not a measurement)."""
  return flops / chip.peak_flops

"""Performance measurement: timings, the matmul bound, compiled-step costs.

Used by `vivit_jax.tools.benchmark`; kept apart from the tool so that it can be
imported (by tests, by the ablation runner) without defining command-line flags.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from vivit_jax.config import resolve
from vivit_jax.data import build_dataset
from vivit_jax.data.prefetch import prefetch_to_device
from vivit_jax.models import build_model, build_module, describe_model
from vivit_jax.models import stats as stats_lib
from vivit_jax.models.embedding import PatchEmbedding
from vivit_jax.task import Task
from vivit_jax.train import parallel, steps
from vivit_jax.train import state as state_lib


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
  """Median wall time of `fn()` (blocked until ready) after two warm-up calls.

  Two, because a step that feeds its output state back in compiles once for
  the placement of its first input and once more for that of its own output.
  """
  for _ in range(2):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_peak(dtype: str, repeats: int, n: int | None = None) -> float:
  """FLOP/s of a square matmul on the default device: the bound to compare with."""
  n = n or (8192 if jax.default_backend() == 'gpu' else 2048)
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  matmul = jax.jit(lambda a, b: a @ b)
  return 2 * n**3 / median_seconds(lambda: matmul(a, b), repeats)


def _flops_and_bytes(compiled) -> tuple[float, float]:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  memory = compiled.memory_analysis()
  peak = 0.0
  if memory is not None:
    peak = (
      memory.temp_size_in_bytes
      + memory.argument_size_in_bytes
      + memory.output_size_in_bytes
      - memory.alias_size_in_bytes
    )
  return float(cost.get('flops', 0.0)), float(peak)


@dataclasses.dataclass
class Result:
  name: str
  params_m: float
  gflops: float  # One clip's forward pass, multiply-adds.
  train_s: float
  infer_s: float
  train_flops: float  # XLA's count for the whole step (flops, not MACs).
  infer_flops: float
  train_bytes: float
  infer_bytes: float
  device_peak_bytes: float | None = None


def measure(
  config, batch_size: int, repeats: int, run: bool = True, inference: bool = True
) -> Result:
  """Compiles (and unless `run` is False, times) one variant's train and eval steps.

  With `inference` False only the train step is compiled and timed (the
  inference fields and `gflops` are then NaN): half the compile time.
  """
  config = resolve(config)
  model = describe_model(config)
  module = build_module(model)
  shape = model.input_shape
  num_classes = model.head.num_classes
  abstract = stats_lib.abstract_params(module, shape)

  # The step's cost does not depend on the schedule's length or the initial values.
  host_state = state_lib.build_train_state(config, module, shape, 1000, jax.random.key(0))
  # No regularisers or mixing: the model's step, not the recipe's.
  update = steps.make_update_fn(Task(num_classes), steps.StepOptions())
  video = jnp.zeros((1, batch_size, *shape), jnp.float32)
  batch = {
    'inputs': video,
    'label': jax.nn.one_hot(jnp.zeros((1, batch_size), jnp.int32), num_classes),
    'batch_mask': jnp.ones((1, batch_size), jnp.float32),
  }
  infer = jax.jit(lambda p, x: module.apply({'params': p}, x, train=False))
  devices = jax.local_devices()[:1]

  params = host_state.params
  # Placed as the trainer places it: as the step returns it, so no call recompiles.
  state = parallel.Replicated(devices).place_state(host_state)
  batch = next(prefetch_to_device(iter([batch]), 1, devices))
  train_compiled = update.lower(state, batch).compile()
  train_flops, train_bytes = _flops_and_bytes(train_compiled)
  infer_flops = infer_bytes = float('nan')
  if inference:
    infer_compiled = infer.lower(params, video[0]).compile()
    infer_flops, infer_bytes = _flops_and_bytes(infer_compiled)
  train_s = infer_s = float('nan')
  if run:
    holder = {'state': state}

    def train_step():
      # The executables compiled above (for their cost analysis): calling `update` or
      # `infer` would compile each again.
      holder['state'], metrics = train_compiled(holder['state'], batch)
      return metrics

    train_s = median_seconds(train_step, repeats)
    if inference:
      infer_s = median_seconds(lambda: infer_compiled(params, video[0]), repeats)
  stats = devices[0].memory_stats() if jax.default_backend() == 'gpu' else None
  return Result(
    name='',
    params_m=stats_lib.count_params(abstract) / 1e6,
    gflops=infer_flops / 2 / batch_size / 1e9,
    train_s=train_s,
    infer_s=infer_s,
    train_flops=train_flops,
    infer_flops=infer_flops,
    train_bytes=train_bytes,
    infer_bytes=infer_bytes,
    device_peak_bytes=(stats or {}).get('peak_bytes_in_use'),
  )


def embedding_comparison(config, batch_size: int, repeats: int) -> tuple[float, float]:
  """Seconds of the tubelet embedding as reshape+matmul (ours) and as nn.Conv."""
  model = describe_model(config)
  width = model.tokens.hidden_size
  fh, fw, ft = model.tokens.patch_size
  video = jnp.zeros((batch_size, *model.input_shape))
  # nn.Conv's default initialiser, so both layers take the same params.
  ours = PatchEmbedding(
    width, (ft, fh, fw), kernel_init=nn.initializers.lecun_normal(), dtype=jnp.float32
  )
  conv = nn.Conv(width, (ft, fh, fw), strides=(ft, fh, fw), padding='VALID')
  params = ours.init(jax.random.key(0), video)
  times = []
  for layer in (ours, conv):
    fn = jax.jit(jax.grad(lambda p, x, layer=layer: layer.apply(p, x).sum()))
    times.append(median_seconds(lambda fn=fn: fn(params, video), repeats))
  return times[0], times[1]


def input_pipeline_comparison(config, num_steps: int = 20) -> dict[str, float]:
  """Train steps/s fed by the real input pipeline and on a batch already on the device.

  Runs on the first local device with the config's own dataset and batch size,
  so an input-bound configuration shows as a gap between the two rates.

  Returns:
    {'pipeline_steps_per_s', 'device_steps_per_s', 'clips_per_step'}.
  """
  config = resolve(config)
  device = jax.local_devices()[:1]
  dataset = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  meta = dataset.meta
  module = build_model(config, meta.num_classes)
  host_state = state_lib.build_train_state(
    config, module, meta.input_shape, 1000, jax.random.key(0)
  )
  update = steps.make_update_fn(meta.task, steps.StepOptions(), device_augment=meta.device_augment)
  state = parallel.Replicated(device).place_state(host_state)
  batches = prefetch_to_device(dataset.train_iter(), 2, device)
  fixed = next(batches)
  # Called compiled, as in `measure`: `update` would compile the step again.
  step = update.lower(state, fixed).compile()
  state, _ = step(state, fixed)

  def rate(next_batch) -> float:
    nonlocal state
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(num_steps):
      state, metrics = step(state, next_batch())
    jax.block_until_ready(metrics)
    return num_steps / (time.perf_counter() - start)

  return {
    'pipeline_steps_per_s': rate(lambda: next(batches)),
    'device_steps_per_s': rate(lambda: fixed),
    'clips_per_step': float(fixed['inputs'].shape[1]),
  }


def pipeline_clips_per_second(config, num_batches: int, warmup: int = 2) -> float:
  """Clips/s of the config's train input pipeline alone, on one host and one device.

  The host's batches as the trainer receives them, before any device work:
  with `dataset_configs.augment_on_device` these are uint8 crop windows whose
  resize, color and normalisation the train step does.
  """
  config = resolve(config)
  dataset = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  batches = dataset.train_iter()
  for _ in range(warmup):
    next(batches)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(batches)
  return num_batches * dataset.host_batch / (time.perf_counter() - start)

r"""Does a config's train step fit a TPU slice or 8 H100s? Compiled for them, none needed.

Compiles the trainer's own step (the one main.py runs) for the slice's chips
with libtpu and prints, per chip: parameters + optimiser state, batch,
temporaries and peak memory against the chip's HBM; the compiled FLOPs against
3x the paper's forward count (the excess is recomputation, asked for with
remat or chosen by the compiler to fit); a lower bound on the step time (FLOPs
at the chip's peak: a bound, not a measurement); the largest batch per chip
that fits; and, when the config does not fit, which of bf16, the splash
attention kernel (TPU), remat and the state split over the chips (FSDP) makes
it fit. An out-of-memory is a finding, printed as one line. For H100s
(`--topology=8xh100`, or 1, 2, 4, 16, 32, 64 of them) it answers for memory only,
against the share of each GPU's memory that JAX's allocator takes (75%, or
XLA_PYTHON_CLIENT_MEM_FRACTION): XLA's GPU compiler counts no FLOPs, so the step
time bound there is from 3x the paper's forward count. The config's
`parallelism` is compiled as it is: with `--config.parallelism=mesh
--config.mesh.fsdp=N` each chip holds 1/N of the state.

  python -m vivit_jax.tools.fit --config=configs/k400_fe.py --topology=v5litepod-16
  python -m vivit_jax.tools.fit --config=configs/k400_fe.py --topology=v4-32 \
      --per_chip_batch=8 --config.model_dtype_str=bfloat16
  python -m vivit_jax.tools.fit --config=configs/k400_fe_large.py --topology=v5litepod-16 \
      --config.parallelism=mesh --config.mesh.fsdp=-1
  python -m vivit_jax.tools.fit --config=configs/k400_fe_large.py --topology=8xh100
  python -m vivit_jax.tools.fit --config=configs/synthetic.py --topology=local

`--topology=local` compiles for this machine's devices instead (a GPU's
memory, where one is present). libtpu comes with `make libtpu` (beside .venv,
so that JAX elsewhere never looks for a TPU) or the `tpu` extra; JAX's CUDA
plugin with `make cuda-plugin` (beside .venv too) or the `cuda12` extra.
"""

from __future__ import annotations

import os
import time

import jax
from absl import flags, logging
from ml_collections import config_flags

from vivit_jax import config as config_lib
from vivit_jax.harness import fit
from vivit_jax.tools import cli

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_TOPOLOGY = flags.DEFINE_string(
  'topology',
  None,
  "A TPU slice as users name it ('v5litepod-16', 'v4-32'), H100s ('8xh100'), or 'local'.",
)
_PER_CHIP_BATCH = flags.DEFINE_integer(
  'per_chip_batch', None, "Clips per chip; default: the config's batch_size over the chips."
)
_SEARCH = flags.DEFINE_bool('search', True, 'Search the largest batch per chip that fits.')
_SEARCH_LIMIT = flags.DEFINE_integer(
  'search_limit', 256, 'The search stops at this many clips per chip.', lower_bound=1
)
_SUGGEST = flags.DEFINE_bool(
  'suggest',
  True,
  'When the step does not fit, try bf16, the splash attention kernel (TPU), remat, bf16 + '
  'remat (+ splash), and bf16 + remat with the state split over all chips (parallelism=mesh, '
  'mesh.fsdp=-1).',
)
flags.mark_flags_as_required(['config', 'topology'])

_GIB = 1024**3


def _gib(value: float) -> str:
  return 'n/a' if value != value else f'{value / _GIB:.2f}'


def _target(topology: str) -> tuple[str, list, float, fit.Chip | None, dict]:
  """(what, devices, memory per device, chip or None, compiler options) for a name or 'local'."""
  if topology == 'local':
    devices = jax.local_devices()
    stats = devices[0].memory_stats() or {}
    limit = float(stats.get('bytes_limit', float('nan')))
    return f'{len(devices)} local {devices[0].device_kind} devices', devices, limit, None, {}
  slice_ = fit.parse_slice(topology)
  devices = fit.slice_devices(slice_)
  chip = slice_.chip
  what = f'{slice_.name}: {slice_.num_chips} {chip.name} chips'
  if chip.platform == 'cuda':
    what = (
      f'{slice_.name}: {slice_.num_chips} {devices[0].device_kind} GPUs, '
      f"{_gib(chip.limit_bytes)} of each one's {_gib(chip.hbm_bytes)} GiB for JAX "
      '(XLA_PYTHON_CLIENT_MEM_FRACTION)'
    )
  return what, devices, chip.limit_bytes, chip, slice_.compiler_options


def _row(label: str, result: fit.StepFit, hbm: float, chip: fit.Chip | None) -> str:
  if not result.fits:
    return f'{label}: does not fit: {result.error}'
  verdict = 'fits' if not result.peak_bytes > hbm else 'over the HBM'
  memory = (
    f'{label}: {verdict}: peak {_gib(result.peak_bytes)} GiB of {_gib(hbm)} '
    f'(state {_gib(result.state_bytes)}, batch {_gib(result.batch_bytes)}, '
    f'temporaries {_gib(result.temp_bytes)})'
  )
  if result.flops != result.flops:  # XLA's GPU compiler counts none
    bound = (
      f'; step >= {fit.roofline_seconds(result.paper_flops, chip):.3f} s at peak from 3x the '
      "paper's forward count (a bound; the compiler counts no FLOPs here)"
      if chip
      else ''
    )
    return memory + bound
  bound = (
    f', step >= {fit.roofline_seconds(result.flops, chip):.3f} s at peak (a bound)' if chip else ''
  )
  if result.kernel_flops_uncounted:
    flops = 'outside the splash attention kernel (XLA counts none inside it)'
  else:
    flops = f'{result.recompute:+.0%} over 3x forward'
  return f'{memory}; {result.flops / 1e12:.2f} TFLOP per chip-step {flops}{bound}'


def _per_chip_batch(config, num_devices: int) -> int:
  if _PER_CHIP_BATCH.value:
    return _PER_CHIP_BATCH.value
  problem = config_lib.batch_split_problem('batch_size', config.batch_size, 1, num_devices)
  if problem:
    raise config_lib.ConfigError(f'{problem} Or give --per_chip_batch.')
  return config.batch_size // num_devices


def _suggestions(config, num_devices: int, on_tpu: bool) -> list[tuple[str, dict]]:
  """What may make a step fit, cheapest first: (label, config changes)."""
  bf16, remat = {'model_dtype_str': 'bfloat16'}, {'model.remat': True}
  options = [('bf16', bf16)]
  splash = {}
  if on_tpu and config.model.attention_implementation != 'splash' and fit.splash_would_run(config):
    splash = {'model.attention_implementation': 'splash'}
    options.append(('splash attention', splash))
  options += [('remat', remat), ('bf16 + remat', {**bf16, **remat})]
  if splash:
    options.append(('bf16 + remat + splash attention', {**bf16, **remat, **splash}))
  if num_devices > 1:
    fsdp = {'parallelism': 'mesh', 'mesh.fsdp': -1}
    options.append(('bf16 + remat + FSDP over all chips', {**bf16, **remat, **fsdp}))
  return options


def main(argv) -> None:
  del argv
  config = config_lib.resolve(_CONFIG.value)
  what, devices, hbm, chip, options = _target(_TOPOLOGY.value)
  if chip and chip.platform == 'cuda' and config.model.attention_implementation == 'cudnn':
    raise fit.FitError(
      "--config.model.attention_implementation=cudnn: cuDNN's fused attention is compiled by "
      "cuDNN on the GPU itself, so it cannot be compiled here. Check with xla (XLA's attention "
      'keeps the scores in memory, which the kernel does not), or run --topology=local on the '
      'GPU machine.'
    )
  per_chip = _per_chip_batch(config, len(devices))
  parallelism = config.parallelism
  if parallelism == 'mesh':
    parallelism += f', fsdp {config.mesh.fsdp}'
  settings = (
    f'{config.model_dtype_str}, remat {config.model.remat}, attention '
    f'{config.model.attention_implementation}, augment_on_device '
    f'{config.dataset_configs.augment_on_device}, {parallelism}'
  )
  print(f'{os.path.basename(flags.FLAGS["config"].config_filename)} on {what} ({settings})')
  start = time.time()
  result = fit.compile_step(config, devices, per_chip, options)
  print(_row(f'{per_chip} clips per chip', result, hbm, chip), flush=True)
  logging.info('Compiled in %.0f s.', time.time() - start)
  fits = result.fits and not result.peak_bytes > hbm
  if _SEARCH.value:
    start = per_chip if fits else 1
    largest, best = fit.largest_batch(
      config, devices, hbm, start, _SEARCH_LIMIT.value, {per_chip: result}, options
    )
    if best is None:
      print('largest batch per chip that fits: none (not even 1 clip)')
    else:
      at_least = '>= ' if largest == _SEARCH_LIMIT.value else ''
      print(_row(f'largest batch per chip that fits: {at_least}{largest}', best, hbm, chip))
  if not fits and _SUGGEST.value:
    on_tpu = chip is not None and chip.platform == 'tpu'
    for label, changes in _suggestions(config, len(devices), on_tpu):
      changed = config_lib.with_overrides(config, changes)
      option = fit.compile_step(changed, devices, per_chip, options)
      print(_row(f'with {label}', option, hbm, chip), flush=True)


if __name__ == '__main__':
  cli.run(main)

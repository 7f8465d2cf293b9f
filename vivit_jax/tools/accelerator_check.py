r"""One command that checks a real accelerator end to end and writes a Markdown report.

  python -m vivit_jax.tools.accelerator_check --out=accelerator_report.md
  python -m vivit_jax.tools.accelerator_check --size=small --steps=3   # CPU: the default there

The report has one section per check, each saying how long it took:

1. Host and devices: date, load average and cores; `jax.devices()` with
   platform, kind and `memory_stats()` where the backend gives them; versions.
2. The measured matmul peak in float32 and bfloat16 (`perf.matmul_peak`).
3. The trainer's train step (`perf.measure`, one device) of every variant at
   ViViT-B size (`--size=base`, the default on a GPU or TPU; ViViT-S on a CPU)
   in the training dtype (bfloat16; float32 on a CPU), remat and the attention
   implementations ('xla' and 'cudnn', on a GPU) for one variant, then every
   variant in the other dtype: step time, clips/s, achieved FLOP/s from XLA's
   cost analysis against the measured matmul peak, XLA's memory estimate and
   the device's `peak_bytes_in_use`. A row that fails (out of memory, a kernel
   the backend lacks) shows its error's first line. A row that would end after
   `--step_budget_s` is listed as skipped: the budget is what keeps the whole
   check under 10 minutes on one device, so the least needed rows come last.
4. The input pipeline on synthetic videos written at the size's resolution,
   `augment_on_device` off and on: clips/s of the pipeline alone against the
   clips/s the step consumes (`perf.input_pipeline_comparison`).
5. A `--train_steps`-step (10) run of `train_and_evaluate` with `--config`
   (configs/synthetic.py; its synthetic data is written into the workdir):
   wall time and final metrics.

The report is rewritten after every section, so a run cut short still leaves
the sections it finished.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

import jax
import jaxlib
import ml_collections
from absl import flags, logging
from ml_collections import config_flags

from vivit_jax import fileio
from vivit_jax.config import load_config_file, resolve
from vivit_jax.data import synthetic
from vivit_jax.errors import MissingFileError, UserError
from vivit_jax.harness import perf
from vivit_jax.harness.variants import VARIANTS, small_config, variant_config
from vivit_jax.tools import cli
from vivit_jax.train.checkpointing import quiet_orbax_logging
from vivit_jax.train.trainer import train_and_evaluate


@dataclasses.dataclass(frozen=True)
class Size:
  """A model size with its clip, and the batch and timed steps the check uses for it."""

  label: str
  encoder: tuple[int, int, int, int]  # width, heads, MLP width, layers (as ViT's sizes)
  tubelet: tuple[int, int, int]
  num_frames: int
  crop_size: int
  batch_size: int  # Per device: ViViT-B's joint space-time attention needs ~50 GB at 4 in f32.
  steps: int
  training_clips: int = 128  # Per split of the end-to-end run's synthetic data.


SIZES = {
  'base': Size('ViViT-B/16x2', (768, 12, 3072, 12), (16, 16, 2), 32, 224, 4, 10),
  'small': Size('ViViT-S/16x2', (384, 6, 1536, 12), (16, 16, 2), 8, 112, 2, 3),
  'tiny': Size('tiny (a smoke test of the tool; its numbers mean nothing)',
               (16, 2, 32, 1), (8, 8, 2), 4, 16, 2, 1, training_clips=16),
}  # fmt: skip
_DTYPES = ('float32', 'bfloat16')
# Clips per split of the synthetic data the pipeline reads.
_PIPELINE_CLIPS = 32
# Frames of the pipeline's synthetic videos at most; longer clips' indices wrap.
_MAX_VIDEO_FRAMES = 32

_OUT = flags.DEFINE_string('out', 'accelerator_report.md', 'Markdown report to write.')
_SIZE = flags.DEFINE_enum(
  'size', None, list(SIZES), "Model size; default 'base' on a GPU or TPU, 'small' on a CPU."
)
_STEPS = flags.DEFINE_integer(
  'steps',
  None,
  "Timed steps per step measurement (median, after 2 warm-up steps); default: the size's.",
)
_BATCH = flags.DEFINE_integer(
  'batch_size', None, "Clips per step on one device; default: the size's."
)
_VARIANTS = flags.DEFINE_string('variants', 'all', "'all' or a comma list of VARIANTS names.")
_STEP_BUDGET = flags.DEFINE_float(
  'step_budget_s',
  None,
  'Seconds the train-step table may take, later rows being skipped; default 300 on a GPU or '
  'TPU, 120 on a CPU (where each ViViT-S row compiles for ~15 s on 2 cores).',
)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Folder for the synthetic data and the training run; default: a temporary one.'
)
_TRAIN_STEPS = flags.DEFINE_integer('train_steps', 10, 'Steps of the end-to-end training run.')
_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Config of the training run; default: configs/synthetic.py.', lock_config=False
)


@dataclasses.dataclass(frozen=True)
class StepRow:
  """One train-step measurement: a variant at a dtype, attention implementation and remat."""

  variant: str
  dtype: str
  attention: str = 'default'
  remat: bool = False


def size_config(size: Size) -> ml_collections.ConfigDict:
  """ViViT-S's config (`variants.small_config`) at `size`'s encoder, tubelet and clip."""
  config = small_config()
  width, heads, mlp, layers = size.encoder
  model = config.model
  model.hidden_size = width
  model.update(num_heads=heads, mlp_dim=mlp, num_layers=layers)
  model.spatial_transformer.update(num_heads=heads, mlp_dim=mlp, num_layers=layers)
  model.temporal_transformer.update(num_heads=heads, mlp_dim=mlp, num_layers=min(4, layers))
  model.patches.size = size.tubelet
  config.dataset_configs.update(num_frames=size.num_frames, crop_size=size.crop_size)
  return config


def training_dtype(backend: str) -> str:
  """The activations one would train with: bfloat16 on an accelerator, float32 on a CPU."""
  return 'float32' if backend == 'cpu' else 'bfloat16'


def step_rows(names: list[str], backend: str) -> list[StepRow]:
  """The rows in the order measured, so that a spent time budget skips the least needed.

  Every variant in the training dtype; remat, then the 'xla' attention and the
  fused kernel ('cudnn' on a GPU, 'splash' on a TPU) for one variant; every variant in the
  other dtype. The extra rows use joint space-time attention where it is among
  `names`: its 3136-token sequences at ViViT-B size are where remat and a
  fused kernel matter.
  """
  first = training_dtype(backend)
  one = 'spacetime' if 'spacetime' in names else names[0]
  rows = [StepRow(name, first) for name in names]
  rows.append(StepRow(one, first, remat=True))
  fused = {'gpu': 'cudnn', 'tpu': 'splash'}.get(backend)
  if fused:  # On a CPU 'default' is 'xla', and neither kernel exists.
    rows += [StepRow(one, 'bfloat16', 'xla'), StepRow(one, 'bfloat16', fused)]
  return rows + [StepRow(name, dtype) for dtype in _DTYPES if dtype != first for name in names]


def first_line(error: BaseException) -> str:
  """`Type: first line of the message`, with table pipes escaped, at most 200 characters."""
  lines = str(error).strip().splitlines()
  text = f'{type(error).__name__}: {lines[0] if lines else ""}'.replace('|', '\\|')
  return text[:200]


def _num(x: float | None) -> str:
  return 'n/a' if x is None or not math.isfinite(x) else f'{x:.4g}'


def _mib(n: float | None) -> str:
  return 'n/a' if n is None else f'{n / 2**20:.4g}'


def _peak_bytes_in_use() -> float | None:
  stats = jax.local_devices()[0].memory_stats() or {}
  return stats.get('peak_bytes_in_use')


def host_facts() -> str:
  """Date, load average and cores: what says how busy the host was (no host name)."""
  usable = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  return (
    f'{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}; load '
    f'average (1, 5, 15 min) {_load()}; {os.cpu_count()} host cores ({usable} usable), '
    f'{platform.machine()}'
  )


def _load() -> str:
  return ', '.join(f'{x:.2f}' for x in os.getloadavg())


def host_section() -> list[str]:
  """Versions and every device with its memory statistics."""
  lines = [
    f'- python {platform.python_version()}, jax {jax.__version__}, jaxlib {jaxlib.__version__}',
    f'- backend: {jax.default_backend()}; {jax.device_count()} device(s), '
    f'{jax.local_device_count()} local, {jax.process_count()} process(es)',
    '',
    '| device | platform | kind | memory limit (MiB) | in use (MiB) | peak in use (MiB) |',
    '|---|---|---|---|---|---|',
  ]
  for device in jax.devices():
    stats = device.memory_stats() or {}
    cells = [_mib(stats.get(k)) for k in ('bytes_limit', 'bytes_in_use', 'peak_bytes_in_use')]
    lines.append(
      f'| {device} | {device.platform} | {device.device_kind} | ' + ' | '.join(cells) + ' |'
    )
  lines += ['', 'n/a: `device.memory_stats()` does not report it on this backend.']
  return lines


def matmul_section(peaks: dict[str, float], steps: int) -> list[str]:
  """Fills `peaks` with each dtype's measured matmul FLOP/s; returns the table."""
  lines = ['| dtype | measured matmul peak (TFLOP/s) |', '|---|---|']
  for dtype in _DTYPES:
    peaks[dtype] = perf.matmul_peak(dtype, max(steps, 3))
    lines.append(f'| {dtype} | {_num(peaks[dtype] / 1e12)} |')
  n = 8192 if jax.default_backend() == 'gpu' else 2048
  lines += ['', f'A jitted {n}x{n} matmul at default precision, median of {max(steps, 3)}.']
  return lines


def step_section(
  base, rows: list[StepRow], batch: int, steps: int, peaks: dict[str, float], budget_s: float
) -> list[str]:
  """One table line per row; a row that would end after `budget_s` (judged by the
  longest row so far) is listed as skipped."""
  lines = [
    '| variant | dtype | attention | remat | step (ms) | clips/s | achieved TFLOP/s | '
    'of measured matmul peak | memory, XLA (MiB) | device peak in use (MiB) | row (s) |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  start, longest = time.monotonic(), 0.0
  for row in rows:
    head = f'| {row.variant} | {row.dtype} | {row.attention} | {"on" if row.remat else "off"} |'
    if time.monotonic() - start + longest > budget_s:
      lines.append(f'{head} skipped: --step_budget_s={budget_s:g} would be exceeded | | | | | | |')
      continue
    logging.info('Train step: %s', row)
    row_start = time.monotonic()
    cells = _step_cells(base, row, batch, steps, peaks.get(row.dtype))
    longest = max(longest, time.monotonic() - row_start)
    lines.append(f'{head} {cells} | {time.monotonic() - row_start:.1f} |')
  lines += [
    '',
    f"{batch} clips per step on one device, the trainer's own pmapped update, median of "
    f'{steps} timed steps after 2 warm-up steps; "row" includes compilation. Achieved FLOP/s '
    "is XLA's flop count of the compiled step over its time; it misses work inside custom "
    "calls, so a cuDNN attention row under-reports. The device peak is the process's "
    "high-water mark so far (a row's own peak only where it rose), n/a where the backend has "
    "no memory statistics. Attention 'default' lets JAX choose (cuDNN where it can on a GPU, "
    'else XLA). Rows are in the order measured, the least needed last.',
  ]
  return lines


def _step_cells(base, row: StepRow, batch: int, steps: int, peak: float | None) -> str:
  """The measured cells of one row (six), or its error's first line and five empty cells."""
  try:
    config = variant_config(
      base, row.variant, attention_implementation=row.attention, remat=row.remat
    )
    config.model_dtype_str = row.dtype
    r = perf.measure(config, batch, steps, inference=False)
  except Exception as e:  # Out of memory or a kernel this backend lacks: a row, not a crash.
    return f'{first_line(e)} | | | | |'
  finally:
    gc.collect()  # Frees the row's device buffers (all of them after an out-of-memory error).
  achieved = r.train_flops / r.train_s
  return (
    f'{_num(1e3 * r.train_s)} | {_num(batch / r.train_s)} | {_num(achieved / 1e12)} | '
    f'{_num(achieved / peak) if peak else "n/a"} | {_mib(r.train_bytes)} | '
    f'{_mib(_peak_bytes_in_use())}'
  )


def write_pipeline_data(directory: str, size: Size, stride: int) -> tuple[str, int]:
  """Synthetic videos with the size's short side and frames, unless present: (dir, side)."""
  side = round(size.crop_size * 8 / 7)  # 256 for a 224 crop, as Kinetics is resized.
  frames = min(size.num_frames * stride, _MAX_VIDEO_FRAMES)
  path = os.path.join(directory, f'pipeline_{side}px_{frames}f_{_PIPELINE_CLIPS}')
  synthetic.generate_unless_complete(path, num_frames=frames, size=side, limit=_PIPELINE_CLIPS)
  return path, side


def pipeline_config(base, data_dir: str, side: int, batch: int, on_device: bool):
  """The factorised encoder trained on the synthetic videos with Kinetics' augmentation.

  In bfloat16 on an accelerator, as one would train there; in float32 on a CPU.
  """
  config = variant_config(base, 'factorized_encoder')
  config.model_dtype_str = training_dtype(jax.default_backend())
  config.batch_size = batch
  d = config.dataset_configs
  d.update(base_dir=data_dir, min_resize=side, num_classes=len(synthetic.CLASS_NAMES))
  d.tables = {'train': synthetic.table('train')}
  d.examples_per_subset = {'train': _PIPELINE_CLIPS}
  d.shuffle_buffer_size = _PIPELINE_CLIPS
  d.augment_on_device = on_device
  # configs/k400_fe.py's augmentation: flip, scale jitter, color.
  d.augmentation_params.update(do_jitter_scale=True, do_color_augment=True)
  return config


def pipeline_section(base, size: Size, workdir: str, batch: int, steps: int) -> list[str]:
  """Clips/s of the pipeline alone and of the step it feeds, augment_on_device off and on."""
  start = time.perf_counter()
  data_dir, side = write_pipeline_data(workdir, size, base.dataset_configs.stride)
  written = time.perf_counter() - start
  lines = [
    '| augment_on_device | pipeline alone (clips/s) | step on a resident batch (clips/s) | '
    'step fed by the pipeline (clips/s) | pipeline / step |',
    '|---|---|---|---|---|',
  ]
  num = max(2 * steps, 4)
  for on_device in (False, True):
    config = pipeline_config(base, data_dir, side, batch, on_device)
    dtype = config.model_dtype_str
    try:
      alone = perf.pipeline_clips_per_second(config, num)
      rates = perf.input_pipeline_comparison(config, num)
    except Exception as e:  # One setting failing still reports the other.
      lines.append(f'| {"on" if on_device else "off"} | {first_line(e)} | | | |')
      continue
    step = rates['device_steps_per_s'] * rates['clips_per_step']
    fed = rates['pipeline_steps_per_s'] * rates['clips_per_step']
    lines.append(
      f'| {"on" if on_device else "off"} | {_num(alone)} | {_num(step)} | {_num(fed)} | '
      f'{_num(alone / step)} |'
    )
  frames = base.dataset_configs.num_frames
  lines += [
    '',
    f'The factorised encoder in {dtype} at batch {batch} on one device; synthetic JPEG '
    f'videos of short side {side} '
    f'({_PIPELINE_CLIPS} clips, written in {written:.1f} s), {frames} frames of '
    f'{base.dataset_configs.crop_size}² with flips, scale jitter and color augmentation; {num} '
    "batches per figure. The pipeline alone is the host's batches (uint8 windows with "
    'augment_on_device, whose resize, color and normalisation the step then does). A '
    'pipeline / step ratio under 1 means the input pipeline would hold the step back. On a '
    'CPU-only host the step and tf.data share the same cores.',
  ]
  return lines


def _default_config() -> ml_collections.ConfigDict:
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  path = os.path.join(root, 'configs', 'synthetic.py')
  if not os.path.isfile(path):
    raise MissingFileError(f'{path} is missing: give the training run a --config.')
  return load_config_file(path)


def training_config(config, data_dir: str, steps: int, clips: int) -> ml_collections.ConfigDict:
  """`config` cut to `steps` steps, evaluated and checkpointed at the end.

  A config that reads the synthetic dataset (configs/synthetic.py) gets its
  first `clips` clips of each split, written into `data_dir`.
  """
  config = resolve(config.to_dict())
  config.num_training_steps = steps
  config.num_training_epochs = None
  lr = config.lr_configs
  lr.steps_per_cycle = steps
  lr.warmup_steps = min(lr.warmup_steps, steps // 2)
  config.log_eval_steps = config.checkpoint_steps = steps
  config.log_summary_steps = min(config.log_summary_steps or steps, steps)
  d = config.dataset_configs
  if d.generate_synthetic_if_missing and str(d.tables.train).startswith(synthetic.PREFIX):
    synthetic.generate_unless_complete(data_dir, limit=clips, variant=d.synthetic_variant)
    d.base_dir = data_dir
    d.generate_synthetic_if_missing = False
    d.examples_per_subset = {split: clips for split in d.tables}
  return config


def _flatten(results: dict, prefix: str = '') -> list[tuple[str, object]]:
  items = []
  for key, value in results.items():
    if isinstance(value, dict):
      items += _flatten(value, f'{prefix}{key}/')
    else:
      items.append((f'{prefix}{key}', value))
  return items


def training_section(config, workdir: str, steps: int, clips: int) -> list[str]:
  """A short `train_and_evaluate` run in a new folder of `workdir`: wall time and results."""
  # The clip count names the folder: a workdir reused with another --size writes its own.
  config = training_config(config, os.path.join(workdir, f'training_data_{clips}'), steps, clips)
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%d-%H%M%S')
  run_dir = os.path.join(workdir, f'train-{stamp}')
  start = time.perf_counter()
  results = train_and_evaluate(config, run_dir)
  wall = time.perf_counter() - start
  m = config.model
  lines = [
    f'{config.experiment_name or "the config"}: {m.attention_config.type}, width '
    f'{m.hidden_size}, {m.num_layers} layers, batch {config.batch_size} over '
    f'{jax.local_device_count()} device(s), {steps} steps, evaluated and checkpointed at the '
    'end.',
    '',
    f'- wall time of train_and_evaluate: {wall:.1f} s (compilation, evaluation and checkpoint '
    'included)',
    '',
    '| result | value |',
    '|---|---|',
  ]
  for key, value in _flatten(results):
    shown = _num(float(value)) if isinstance(value, (int, float)) else str(value)
    lines.append(f'| {key} | {shown} |')
  return lines


def run_section(title: str, body: Callable[[], list[str]]) -> list[str]:
  """`## title`, how long it took, and `body()`'s lines, or its error's first line."""
  start = time.perf_counter()
  try:
    lines = body()
  except Exception as e:  # The other sections still run and are reported.
    logging.exception('Section %r failed', title)
    lines = [f'This section failed: {first_line(e)}']
  return [f'## {title}', '', f'Took {time.perf_counter() - start:.1f} s.', '', *lines, '']


def _command() -> str:
  return ' '.join(['python -m vivit_jax.tools.accelerator_check', *sys.argv[1:]])


def main(argv):
  del argv
  quiet_orbax_logging()  # The training run's log reads as main.py's does.
  started = time.perf_counter()
  backend = jax.default_backend()
  size_name = _SIZE.value or ('small' if backend == 'cpu' else 'base')
  size = SIZES[size_name]
  steps, batch = _STEPS.value or size.steps, _BATCH.value or size.batch_size
  names = list(VARIANTS) if _VARIANTS.value == 'all' else _VARIANTS.value.split(',')
  unknown = sorted(set(names) - set(VARIANTS))
  if unknown:
    raise UserError(f'--variants: unknown {unknown}; known: {", ".join(VARIANTS)}.')
  base = size_config(size)
  train_config = _CONFIG.value if _CONFIG.value is not None else _default_config()
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix='accelerator_check_')
  header = [
    '# Accelerator check',
    '',
    f'Started {host_facts()}.',
    '',
    f'Size {size_name}: {size.label}, {size.num_frames} frames of {size.crop_size}², batch '
    f'{batch}; {steps} timed step(s) per measurement. Command: `{_command()}`.',
    '',
  ]
  sections = []

  def add(title: str, body: Callable[[], list[str]]) -> None:
    sections.extend(run_section(title, body))
    with fileio.atomic_write(_OUT.value) as f:
      f.write('\n'.join(header + sections))

  peaks = {}
  try:
    add('Host and devices', host_section)
    add('Measured matmul peak', lambda: matmul_section(peaks, steps))
    rows = step_rows(names, backend)
    budget = _STEP_BUDGET.value
    if budget is None:
      budget = 120.0 if backend == 'cpu' else 300.0
    add('Train step', lambda: step_section(base, rows, batch, steps, peaks, budget))
    add('Input pipeline', lambda: pipeline_section(base, size, workdir, batch, steps))
    add(
      'End-to-end training',
      lambda: training_section(train_config, workdir, _TRAIN_STEPS.value, size.training_clips),
    )
    sections.append(
      f'Whole check: {time.perf_counter() - started:.1f} s; load average at the end {_load()}.'
    )
    with fileio.atomic_write(_OUT.value) as f:
      f.write('\n'.join(header + sections) + '\n')
  finally:
    if not _WORKDIR.value:
      shutil.rmtree(workdir, ignore_errors=True)
  print(f'Wrote {_OUT.value} in {time.perf_counter() - started:.1f} s.')


if __name__ == '__main__':
  cli.run(main)

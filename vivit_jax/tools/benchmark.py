r"""Benchmarks every ViViT variant against the hardware's measured matmul peak.

For each variant: parameters, GFLOPs (paper convention), the compiled train
step (the trainer's real pmapped step on one device) and inference times
(median after warm-up), achieved FLOP/s as a fraction of a dense matmul
measured in the same run on the same device, peak memory from XLA's memory
analysis (and the device's statistics on a GPU), then the fast paths (bf16,
rematerialisation, attention implementations, the tubelet embedding as a
convolution or a matmul) and scaling curves against the number of frames.

  python -m vivit_jax.tools.benchmark --out=BENCHMARKS.md          # ViViT-S, CPU sized
  python -m vivit_jax.tools.benchmark --config=configs/k400_fe.py \
      --batch_size=8 --dtype=bfloat16 --frames=8,16,32,64           # on a GPU

Timings on shared machines are noisy; the matmul bound is measured in the same
run so that the ratio, not the absolute time, is the figure to compare.
"""

from __future__ import annotations

import os
import platform

import jax
from absl import flags, logging
from matplotlib.figure import Figure

from vivit_jax import fileio
from vivit_jax.config import load_config_file, resolve
from vivit_jax.harness.perf import (
  Result,
  embedding_comparison,
  input_pipeline_comparison,
  matmul_peak,
  measure,
)
from vivit_jax.harness.variants import VARIANTS, small_config, variant_config
from vivit_jax.tools import cli

_CONFIG = flags.DEFINE_string('config', None, 'Config file; default: ViViT-S (see small_config).')
_VARIANTS = flags.DEFINE_string('variants', 'all', "'all' or a comma list of VARIANTS names.")
_BATCH = flags.DEFINE_integer('batch_size', 2, 'Clips per step.')
_FRAMES = flags.DEFINE_integer('num_frames', None, 'Frames per clip (default: the config).')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Activation dtype.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats after one warm-up.')
_SWEEP = flags.DEFINE_string('frames', '4,8,16', 'Frame counts of the scaling curves; empty: off.')
_FAST_PATHS = flags.DEFINE_bool('fast_paths', True, 'Compare bf16, remat, attention, embedding.')
_PIPELINE = flags.DEFINE_bool(
  'input_pipeline', False, "Also time the step fed by the config's own input pipeline."
)
_OUT = flags.DEFINE_string('out', 'BENCHMARKS.md', 'Markdown report (plot beside it).')


def _fmt_bytes(n: float | None) -> str:
  return '' if n is None else f'{n / 2**20:.0f} MiB'


def main(argv):
  del argv
  base = resolve(load_config_file(_CONFIG.value)) if _CONFIG.value else small_config()
  if _FRAMES.value:
    base.dataset_configs.num_frames = _FRAMES.value
  base.model_dtype_str = _DTYPE.value
  names = list(VARIANTS) if _VARIANTS.value == 'all' else _VARIANTS.value.split(',')
  repeats, batch = _REPEATS.value, _BATCH.value
  device = jax.devices()[0]
  logging.info('Measuring the matmul bound on %s', device.device_kind)
  peak = matmul_peak(_DTYPE.value, repeats)
  lines = [
    '# Benchmarks',
    '',
    f'Device: {device.device_kind} ({jax.default_backend()}, {jax.device_count()} device(s), '
    f'{os.cpu_count()} host cores, {platform.processor() or platform.machine()}); '
    f'jax {jax.__version__}. Batch {batch}, {_DTYPE.value} activations, '
    f'{base.dataset_configs.num_frames} frames of {base.dataset_configs.crop_size}², '
    f'width {base.model.hidden_size}. Dense matmul bound measured in this run: '
    f'{peak / 1e9:.1f} GFLOP/s.',
    '',
    '| variant | params (M) | GFLOPs/clip | train step (ms) | clips/s | train FLOP/s vs matmul | '
    'inference (ms) | inference vs matmul | train memory (XLA) | device peak |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  results = {}
  for name in names:
    logging.info('Variant %s', name)
    r = measure(variant_config(base, name), batch, repeats)
    results[name] = r
    lines.append(
      f'| {name} | {r.params_m:.3g} | {r.gflops:.3g} | {1e3 * r.train_s:.1f} | '
      f'{batch / r.train_s:.2f} | {r.train_flops / r.train_s / peak:.2f} | '
      f'{1e3 * r.infer_s:.1f} | {r.infer_flops / r.infer_s / peak:.2f} | '
      f'{_fmt_bytes(r.train_bytes)} | {_fmt_bytes(r.device_peak_bytes)} |'
    )
  lines += ['', "FLOP/s ratios use XLA's flop count of the compiled step.", '']

  if _FAST_PATHS.value:
    lines += _fast_path_section(base, names[0], batch, repeats, results.get(names[0]))
  if _PIPELINE.value:
    rates = input_pipeline_comparison(base)
    clips = rates['clips_per_step']
    lines += [
      '## Input pipeline',
      '',
      '| fed by | steps/s | clips/s |',
      '|---|---|---|',
      f'| the input pipeline | {rates["pipeline_steps_per_s"]:.2f} | '
      f'{clips * rates["pipeline_steps_per_s"]:.1f} |',
      f'| a batch already on the device | {rates["device_steps_per_s"]:.2f} | '
      f'{clips * rates["device_steps_per_s"]:.1f} |',
      '',
    ]
  sweep = [int(f) for f in _SWEEP.value.split(',') if f]
  if sweep:
    lines += _scaling_section(base, names, sweep, batch, max(1, repeats // 2))
  lines += ['', 'Reproduce: `python -m vivit_jax.tools.benchmark ' + _command_flags() + '`', '']
  with fileio.atomic_write(_OUT.value) as f:
    f.write('\n'.join(lines))
  print('\n'.join(lines))


def _command_flags() -> str:
  flags_used = [
    f'--{f.name}={f.value}'
    for f in (_CONFIG, _VARIANTS, _BATCH, _FRAMES, _DTYPE, _REPEATS, _SWEEP, _PIPELINE, _OUT)
    if f.present
  ]
  return ' '.join(flags_used)


def _fast_path_section(base, name, batch, repeats, plain: Result | None) -> list[str]:
  plain = plain or measure(variant_config(base, name), batch, repeats)
  lines = [
    f'## Fast paths ({name})',
    '',
    '| path | train step (ms) | vs plain | train memory (XLA) |',
    '|---|---|---|---|',
    f'| plain ({base.model_dtype_str}) | {1e3 * plain.train_s:.1f} | 1.00 | '
    f'{_fmt_bytes(plain.train_bytes)} |',
  ]
  variants = [
    ('remat', {'remat': True}, None),
    ('xla attention', {'attention_implementation': 'xla'}, None),
  ]
  if base.model_dtype_str == 'float32':
    variants.append(('bfloat16 activations', {}, 'bfloat16'))
  if jax.default_backend() == 'gpu':
    variants.append(
      ('cudnn fused attention (bf16)', {'attention_implementation': 'cudnn'}, 'bfloat16')
    )
  for label, overrides, dtype in variants:
    config = variant_config(base, name, **overrides)
    if dtype:
      config.model_dtype_str = dtype
    try:
      r = measure(config, batch, repeats)
    except Exception as e:  # A path this backend lacks (e.g. cuDNN) is reported, not fatal.
      lines.append(f'| {label} | unavailable: {type(e).__name__} | | |')
      continue
    lines.append(
      f'| {label} | {1e3 * r.train_s:.1f} | {plain.train_s / r.train_s:.2f} | '
      f'{_fmt_bytes(r.train_bytes)} |'
    )
  ours, conv = embedding_comparison(base, batch, repeats)
  lines += [
    '',
    f'Tubelet embedding forward+backward: reshape+matmul {1e3 * ours:.2f} ms, '
    f'convolution {1e3 * conv:.2f} ms (the model uses reshape+matmul).',
    '',
  ]
  return lines


def _scaling_section(base, names, frames, batch, repeats) -> list[str]:
  tubelet_t = base.model.patches.size[2]
  frames = [f for f in frames if f % tubelet_t == 0]
  table = {name: [] for name in names}
  for name in names:
    for f in frames:
      config = variant_config(base, name)
      config.dataset_configs.num_frames = f
      logging.info('Scaling: %s at %d frames', name, f)
      table[name].append(measure(config, batch, repeats))
  fig = Figure(figsize=(11, 4))
  ax_t, ax_m = fig.subplots(1, 2)
  for name in names:
    ax_t.plot(frames, [1e3 * r.train_s for r in table[name]], marker='o', label=name)
    ax_m.plot(frames, [r.train_bytes / 2**20 for r in table[name]], marker='o', label=name)
  for ax, label in ((ax_t, 'train step (ms)'), (ax_m, 'train memory, XLA (MiB)')):
    ax.set_xlabel('frames per clip')
    ax.set_ylabel(label)
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.grid(True, which='both', alpha=0.3)
  ax_t.legend(fontsize=7)
  fig.tight_layout()
  plot = os.path.splitext(_OUT.value)[0] + '_scaling.png'
  with fileio.atomic_write(plot, 'wb') as f:
    fig.savefig(f, format='png', dpi=120)
  header = '| variant | ' + ' | '.join(f'{f} frames: ms / MiB' for f in frames) + ' |'
  lines = ['## Scaling with the number of frames', '', f'![scaling]({os.path.basename(plot)})', '']
  lines += [header, '|---|' + '---|' * len(frames)]
  for name in names:
    cells = [f'{1e3 * r.train_s:.0f} / {r.train_bytes / 2**20:.0f}' for r in table[name]]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return lines


if __name__ == '__main__':
  cli.run(main)

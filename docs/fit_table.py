"""The table to read before renting a slice: docs/fitting.md, compiled with `vivit_jax.harness.fit`.

  PYTHONPATH=. python docs/fit_table.py            # fills in what is missing, then writes the page
  PYTHONPATH=. python docs/fit_table.py --render   # only writes the page from docs/fit_table.json

For every model of the paper's configs (and ViViT-L/16x2 FE at 128 frames,
ViViT-H/14x2 FE) on every slice of `SLICES`, it compiles the trainer's own step
for the slice (libtpu, no TPU): at the paper's global batch of 64 clips in the
config's settings; when that does not fit, with remat, bf16 + remat, and bf16 +
remat with the state split over all chips (`parallelism='mesh'`, `mesh.fsdp=-1`),
until one fits; then the largest batch per chip on a ladder of usual sizes.
Each finished compile is saved in docs/fit_table.json at once, so a run that is
stopped goes on where it stopped, and runs over different `--rows` can go side by side (each
takes what the others saved). One compile of a ViViT-B step takes 1-4
minutes on a 2-core CPU, a ViViT-L one longer: the whole table is hours of CPU.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import sys
import time

from absl import app, flags, logging

from vivit_jax import config as config_lib
from vivit_jax.harness import fit

_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fit_table.json')
_PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fitting.md')
_RENDER = flags.DEFINE_bool('render', False, 'Only write the page from the saved results.')
_ROWS = flags.DEFINE_list('rows', None, 'Only these rows (names as in ROWS).')
_SLICE_NAMES = flags.DEFINE_list('slices', None, 'Only these slices.')
_PHASE = flags.DEFINE_enum(
  'phase',
  'all',
  ['all', 'batch64', 'largest', 'mesh', 'splash', 'gpu'],
  'batch64: only the paper-batch compiles; mesh, splash: only the FSDP or the attention-kernel '
  'comparison; gpu: only the paper-batch compiles for GPU_SLICES.',
)

PAPER_BATCH = 64
SLICES = ('v5litepod-16', 'v5litepod-8', 'v4-8', 'v6e-8', 'v5p-8')
# GPUs, for memory only (XLA's GPU compiler counts no FLOPs): the paper's batch, no search.
GPU_SLICES = ('8xh100',)
# Clips per chip the largest-batch search tries: the sizes people pick.
LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def _h14(config):
  """ViViT-H/14x2 FE on k400_fe_large's recipe: ViT-H, 14x14x2 tubelets, 4 temporal layers."""
  model = config.model
  model.hidden_size = 1280
  model.spatial_transformer.update(num_heads=16, mlp_dim=5120, num_layers=32)
  model.temporal_transformer.update(num_heads=16, mlp_dim=5120, num_layers=4)
  model.patches.size = (14, 14, 2)


# (row name, config file, change to the loaded config or None, what the row is).
ROWS = (
  ('B-FE', 'k400_fe', None, 'ViViT-B/16x2 Model 2 (factorised encoder), 32 frames'),
  ('B-ST', 'k400_spacetime', None, 'ViViT-B/16x2 Model 1 (spatio-temporal), 32 frames'),
  ('B-FSA', 'k400_fsa', None, 'ViViT-B/16x2 Model 3 (factorised self-attention), 32 frames'),
  ('B-FDP', 'k400_fdp', None, 'ViViT-B/16x2 Model 4 (factorised dot-product), 32 frames'),
  ('L-FE-32', 'k400_fe_large', None, 'ViViT-L/16x2 FE (24 temporal layers), 32 frames'),
  (
    'L-FE-128',
    'k400_fe_large',
    lambda c: c.dataset_configs.update(num_frames=128),
    'ViViT-L/16x2 FE (24 temporal layers), 128 frames',
  ),
  ('H-FE-32', 'k400_fe_large', _h14, 'ViViT-H/14x2 FE (4 temporal layers), 32 frames'),
  ('L-ST', 'k400_spacetime_large', None, 'ViViT-L/16x2 Model 1, 32 frames'),
  ('B-FE-pool', 'k400_fe_baseline', None, 'ViViT-B/16x2 average-pool baseline, 32 frames'),
  ('L-FE-SSv2', 'ssv2_fe_large', None, 'ViViT-L/16x2 FE (4 temporal layers), SSv2'),
  ('L-FE-K600', 'k600_fe_large', None, 'ViViT-L/16x2 FE (24 temporal layers), Kinetics-600'),
  (
    'L-FE-EK',
    'epic_kitchens_fe_large',
    None,
    'ViViT-L/16x2 FE (4 temporal layers), Epic Kitchens (3 heads)',
  ),
)
# Tried in order when the config's own settings do not fit: (label, changes).
SETTINGS = (
  ('remat', {'model.remat': True}),
  ('bf16 + remat', {'model.remat': True, 'model_dtype_str': 'bfloat16'}),
  (
    'bf16 + remat + FSDP',
    {
      'model.remat': True,
      'model_dtype_str': 'bfloat16',
      'parallelism': 'mesh',
      'mesh.fsdp': -1,
    },
  ),
)

# The fused TPU attention kernel against XLA's attention, at the paper's batch, for the models
# whose attention it runs (`attention.splash_pays`): Model 1's 3137 tokens. The others attend
# over at most 197 tokens, where XLA's attention keeps it (and the config's figures hold).
SPLASH = ('splash attention', {'model.attention_implementation': 'splash'})
SPLASH_ROWS = ('B-ST', 'L-ST')
SPLASH_SLICES = ('v5litepod-16', 'v5litepod-8')


# What splitting the state over the chips saves (`parallelism='mesh'`, `mesh.fsdp=-1`), against
# pmap in the same settings, for the models whose state is largest.
FSDP = {'parallelism': 'mesh', 'mesh.fsdp': -1}
MESH_SETTINGS = (
  ('FSDP', FSDP),
  ('remat + FSDP', {'model.remat': True, **FSDP}),
)
MESH_ROWS = ('H-FE-32', 'L-FE-32', 'B-FE')
MESH_SLICES = ('v5litepod-16', 'v5litepod-8')


def _config(row: str, changes: dict | None = None):
  _, name, change, _ = next(r for r in ROWS if r[0] == row)
  config = config_lib.resolve(config_lib.load_config_file(f'configs/{name}.py'))
  if change is not None:
    change(config)
  return config_lib.with_overrides(config, changes or {})


def _load() -> dict:
  if os.path.exists(_JSON):
    with open(_JSON) as f:
      return json.load(f)
  return {}


def _merge(into: dict, other: dict) -> None:
  for key, value in other.items():
    if isinstance(value, dict) and isinstance(into.get(key), dict):
      _merge(into[key], value)
    else:
      into.setdefault(key, value)


def _save(results: dict) -> None:
  """Writes `results` merged with what other runs of this script saved meanwhile (and takes theirs
  in), so that runs over different rows can go side by side."""
  with open(_JSON + '.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    _merge(results, _load())
    with open(_JSON + '.tmp', 'w') as f:
      json.dump(results, f, indent=1, sort_keys=True)
    os.replace(_JSON + '.tmp', _JSON)


def _compile(results, row, slice_name, per_chip, label, changes) -> dict:
  """One compile, saved under results[row][slice]['compiles'][f'{label}@{per_chip}']."""
  cell = results.setdefault(row, {}).setdefault(slice_name, {'compiles': {}})
  key = f'{label}@{per_chip}'
  if key not in cell['compiles']:
    slice_ = fit.parse_slice(slice_name)
    start = time.time()
    logging.info('%s on %s: %s at %d clips per chip', row, slice_name, label, per_chip)
    devices = fit.slice_devices(slice_)
    step = fit.compile_step(_config(row, changes), devices, per_chip, slice_.compiler_options)
    entry = dataclasses.asdict(step)
    entry['fits'] = step.fits and step.peak_bytes <= slice_.chip.limit_bytes
    entry['compile_s'] = round(time.time() - start, 1)
    cell['compiles'][key] = entry
    _save(results)
  return cell['compiles'][key]


def _batch64(results, row, slice_name) -> None:
  per_chip = PAPER_BATCH // fit.parse_slice(slice_name).num_chips
  if _compile(results, row, slice_name, per_chip, 'config', {})['fits']:
    return
  for label, changes in SETTINGS:
    if _compile(results, row, slice_name, per_chip, label, changes)['fits']:
      return


def _paper_batch_fit(cell: dict, per_chip: int) -> tuple[str | None, dict | str]:
  """The first setting (config, then SETTINGS) that fits at the paper's batch: (label, its
  compile); or (None, what was tried, e.g. 'config: out of memory; remat: not compiled yet')."""
  outcomes, untried = [], []
  for label in ('config', *(s[0] for s in SETTINGS)):
    entry = cell['compiles'].get(f'{label}@{per_chip}')
    if entry is None:
      untried.append(label)
    elif entry['fits']:
      return label, entry
    else:
      over = f'peak {_gib(entry["peak_bytes"])}' if entry['error'] is None else 'out of memory'
      outcomes.append(f'{label}: {over}')
  rest = f'; {untried[0]}: not compiled yet' if untried else ''
  return None, '; '.join(outcomes) + rest


def _largest(results, row, slice_name) -> None:
  """The largest ladder size that fits in the config's settings (or the first that fit at 64)."""
  cell = results[row][slice_name]
  if 'largest' in cell:
    return
  per_chip = PAPER_BATCH // fit.parse_slice(slice_name).num_chips
  label = _paper_batch_fit(cell, per_chip)[0] or 'config'
  changes = dict(SETTINGS).get(label, {})

  def fits(n: int) -> bool:
    return _compile(results, row, slice_name, n, label, changes)['fits']

  # Bisection over the whole ladder from the paper's batch up: a size that does not fit fails
  # in seconds to a minute, one that fits compiles for minutes, so trying the large rungs first
  # costs fewer compiles than climbing (4 where the climb took 7, for ViViT-B FE on v5e-16).
  low, high = -1, len(LADDER)  # LADDER[low] fits, LADDER[high] does not (sentinels).
  start = LADDER.index(per_chip) if per_chip in LADDER else 0
  low, high = (start, high) if fits(LADDER[start]) else (low, start)
  while high - low > 1:
    middle = (low + high) // 2
    low, high = (middle, high) if fits(LADDER[middle]) else (low, middle)
  cell['largest'] = {'settings': label, 'per_chip': LADDER[low] if low >= 0 else 0}
  _save(results)


def _splash(results, row, slice_name) -> None:
  per_chip = PAPER_BATCH // fit.parse_slice(slice_name).num_chips
  _compile(results, row, slice_name, per_chip, 'config', {})
  _compile(results, row, slice_name, per_chip, *SPLASH)


def _mesh(results, row, slice_name) -> None:
  per_chip = PAPER_BATCH // fit.parse_slice(slice_name).num_chips
  for label, changes in (('config', {}), ('remat', {'model.remat': True}), *MESH_SETTINGS):
    _compile(results, row, slice_name, per_chip, label, changes)


def _comparison(results, rows, slices, labels, cell, blank) -> list[str]:
  """Table lines, one per row and slice at the paper's batch: `cell(entry)` for each of `labels`
  that compiled (`blank` pads the cells of one that did not)."""
  lines = []
  for row in rows:
    for slice_name in slices:
      per_chip = PAPER_BATCH // fit.parse_slice(slice_name).num_chips
      compiles = results.get(row, {}).get(slice_name, {}).get('compiles', {})
      cells = []
      for label in labels:
        entry = compiles.get(f'{label}@{per_chip}')
        if entry is None:
          cells += ['not compiled yet', *blank]
        elif entry['error'] is not None:
          cells += ['out of memory', *blank]
        else:
          cells += cell(entry)
      lines.append(f'| `{row}` | {slice_name} | {per_chip} | ' + ' | '.join(cells) + ' |')
  return lines


def _render_mesh(results: dict) -> list[str]:
  lines = [
    '## pmap, or the state split over the chips (FSDP)',
    '',
    '`--config.parallelism=mesh --config.mesh.fsdp=-1`: parameters and optimiser state split',
    'over all chips, each encoder block gathering its weights as it runs (docs/training.md).',
    "Peak GiB per chip at the paper's batch, f32, against pmap in the same settings.",
    '',
    '| model | slice | clips/chip | pmap | FSDP | pmap + remat | FSDP + remat |',
    '|---|---|---|---|---|---|---|',
  ]

  def cell(entry: dict) -> list[str]:
    over = '' if entry['fits'] else ', over the HBM'
    return [f'{_gib(entry["peak_bytes"])} ({_recompute(entry)}{over})']

  labels = ('config', 'FSDP', 'remat', 'remat + FSDP')
  lines += _comparison(results, MESH_ROWS, MESH_SLICES, labels, cell, blank=[])
  return lines + [
    '',
    'In parentheses: compiled FLOPs over 3x the forward count (recomputation: remat, or the',
    "compiler's own to fit).",
    '',
  ]


def _render_gpus(results: dict) -> list[str]:
  lines = [
    '## 8 H100s (memory only)',
    '',
    "The same step compiled for 8 H100 SXM 80GB GPUs by JAX's CUDA plugin, without a GPU",
    "(`--topology=8xh100`, docs/training.md): peak GiB per GPU at the paper's batch (8 clips",
    "per GPU) against the 59.3 GiB that JAX's allocator takes of each GPU's 79.1 by default.",
    "XLA's GPU compiler counts no FLOPs, so there is no recompute figure; the step bound is 3x",
    "the paper's forward count at the H100's dense bf16 peak (989 TFLOP/s), a bound, not a",
    'measurement. Settings are tried in the order of the TPU tables.',
    '',
    '**On the GPU, remat pays only with the state split over the GPUs (FSDP).** Under pmap it',
    'barely helps the factorised-encoder models: ViViT-L FE at 32 frames 61.7 -> 56.6 GiB, at',
    '128 frames 135.5 -> 121.6 (bf16 + remat 118.6), where the TPU compiles above cut them',
    "several-fold and the GPU's own compile of Model 1 halves it (60.6 -> 27.2). With FSDP it",
    'does: ViViT-L FE at 128 frames in bf16 + remat, 118.6 GiB under pmap, 14.4 with FSDP.',
    'ViViT-H FE in bf16 (8 clips per GPU) shows that it takes both: pmap + remat 63.6 GiB, a',
    'mesh without the split + remat 62.6, FSDP without remat 66.5, FSDP + remat 8.3 (the',
    '`H-FE-32` row with those changes, one `fit.compile_step` each; 5.3 GiB of state split',
    "8 ways is not the difference). The likely cause is the schedule: jax.checkpoint's barrier",
    'keeps the recomputed blocks apart from the forward pass but does not order them after the',
    "later blocks' backward; with FSDP each block's recomputation waits for that block's",
    'gathered weights, which orders it. Not proven. Small models do not show the size of it:',
    'an FE of 2 spatial + 2 temporal layers for 2 H100s at 2 clips has 1.130 GiB of',
    'temporaries, 1.127 with remat, 1.145 with FSDP and 1.070 with both. On a GPU, take remat with',
    "`--config.parallelism=mesh --config.mesh.fsdp=-1` (the fit check's last suggestion has both).",
    '',
    '| model | batch 64: settings | peak GiB/GPU | state GiB/GPU | temporaries GiB | '
    'step >= (bound) |',
    '|---|---|---|---|---|---|',
  ]
  for row, *_ in ROWS:
    for slice_name in GPU_SLICES:
      cell = results.get(row, {}).get(slice_name)
      slice_ = fit.parse_slice(slice_name)
      per_chip = PAPER_BATCH // slice_.num_chips
      if not cell:
        lines.append(f'| `{row}` | not compiled yet | | | | |')
        continue
      label, e = _paper_batch_fit(cell, per_chip)
      if label is None:
        lines.append(f'| `{row}` | none fits: {e} | | | | |')
        continue
      bound = e['paper_flops'] / slice_.chip.peak_flops
      lines.append(
        f'| `{row}` | {label} | {_gib(e["peak_bytes"])} | {_gib(e["state_bytes"])} | '
        f'{_gib(e["temp_bytes"])} | {bound:.3f} s |'
      )
  return lines + ['']


def _render_splash(results: dict) -> list[str]:
  lines = [
    "## The splash attention kernel against XLA's attention",
    '',
    "`--config.model.attention_implementation=splash`: Pallas's splash attention kernel computes",
    "softmax(QK^T)V block by block in the chip's vector memory, so the scores of a layer never",
    'sit in HBM, and its backward pass recomputes them. It runs only where it holds less than',
    "XLA's attention (docs/training.md): Model 1's 3137 tokens. The same configs as above at the",
    "paper's batch, the config's settings otherwise.",
    "XLA does not count the FLOPs inside the kernel, so the kernel's TFLOP column is the step",
    'without its attention (softmax(QK^T)V): it is not comparable with the XLA column.',
    '',
    '| model | slice | clips/chip | XLA attention: peak GiB/chip | TFLOP/chip-step | '
    'splash: peak GiB/chip | TFLOP/chip-step outside the kernel |',
    '|---|---|---|---|---|---|---|',
  ]

  def cell(entry: dict) -> list[str]:
    over = '' if entry['fits'] else ' (over the HBM)'
    return [f'{_gib(entry["peak_bytes"])}{over}', f'{entry["flops"] / 1e12:.1f}']

  lines += _comparison(results, SPLASH_ROWS, SPLASH_SLICES, ('config', SPLASH[0]), cell, [''])
  return lines + ['']


def _recompute(entry: dict) -> str:
  """Compiled FLOPs over 3x the forward count, as +N% (a rounding below 0 reads +0%, not -0%)."""
  excess = entry['flops'] / entry['paper_flops'] - 1
  return f'{max(excess, 0.0) if excess > -0.005 else excess:+.0%}'


def _gib(x: float) -> str:
  return f'{x / fit.GIB:.1f}'


def render(results: dict) -> str:
  lines = [
    '# Before renting a slice: what fits, compiled for the slice',
    '',
    '<!-- Written by `PYTHONPATH=. python docs/fit_table.py` from docs/fit_table.json. -->',
    '',
    "Every cell is the trainer's own train step compiled for the slice by XLA's TPU compiler",
    '(libtpu, on a machine without a TPU; `vivit_jax.harness.fit`): the per-chip peak is the',
    "compiler's buffer assignment, and a step that does not fit is its RESOURCE_EXHAUSTED. The",
    "paper's global batch is 64 clips; *settings* says what the step needed to fit: *config*",
    '(the config as it is: f32, no remat), then in this order remat, bf16 + remat, and bf16 +',
    'remat with parameters and optimiser state split over all chips (`--config.parallelism=mesh',
    '--config.mesh.fsdp=-1`). *Recompute* is compiled FLOPs over 3x the forward count (remat,',
    "or the compiler's own rematerialisation to fit). *Step >=* is the compiled FLOPs at the",
    "chip's peak bf16 FLOP/s: **a lower bound on the step time, not a measurement** (real steps",
    'are slower: memory traffic, collectives, input). *Largest* is the largest batch per chip',
    f'that fits, among {", ".join(map(str, LADDER))}, in the settings of the batch-64 column.',
    '*Not compiled yet* and *not searched yet* are work left: `python docs/fit_table.py` fills',
    'them in (each compile of a ViViT-B step took 2-6 minutes on the 2-core CPU that wrote this',
    'page, a ViViT-L one 5-15). Until then, `python -m vivit_jax.tools.fit` answers for one',
    'config and slice, with an exact search: for `configs/k400_fe.py` it found at most 44 clips',
    'per chip on a v5litepod-16 (the compiler then recomputing 22%) and at least 64 on a v4-32.',
    'After the per-model tables: what splitting the state over the chips saves against pmap,',
    "what the splash attention kernel saves against XLA's attention, and 8 H100s (memory only).",
    '',
  ]
  for row, _, _, what in ROWS:
    if row not in results:
      lines += [f'## {what} (`{row}`)', '', 'Not compiled yet.', '']
      continue
    lines += [
      f'## {what} (`{row}`)',
      '',
      '| slice | chips | HBM/chip GiB | batch 64: settings | peak GiB/chip | state GiB/chip | '
      'TFLOP/chip-step | recompute | step >= (bound) | largest clips/chip |',
      '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for slice_name in SLICES:
      cell = results[row].get(slice_name)
      slice_ = fit.parse_slice(slice_name)
      head = f'| {slice_name} | {slice_.num_chips} | {_gib(slice_.chip.hbm_bytes)} |'
      if not cell:
        lines.append(head + ' not compiled yet | | | | | | |')
        continue
      per_chip = PAPER_BATCH // slice_.num_chips
      label, e = _paper_batch_fit(cell, per_chip)
      largest = cell.get('largest')
      at_least = '>= ' if largest and largest['per_chip'] == LADDER[-1] else ''
      largest_text = (
        f'{at_least}{largest["per_chip"]} ({largest["settings"]})'
        if largest
        else 'not searched yet'
      )
      if label is None:
        lines.append(head + f' at {per_chip}/chip {e} | | | | | | {largest_text} |')
        continue
      bound = e['flops'] / slice_.chip.peak_flops
      lines.append(
        head + f' {label} ({per_chip}/chip) | {_gib(e["peak_bytes"])} | '
        f'{_gib(e["state_bytes"])} | {e["flops"] / 1e12:.1f} | '
        f'{_recompute(e)} | {bound:.2f} s | {largest_text} |'
      )
    lines.append('')
  return '\n'.join(lines + _render_mesh(results) + _render_splash(results) + _render_gpus(results))


def main(argv) -> None:
  del argv
  results = _load()
  if not _RENDER.value:
    rows = _ROWS.value or [r[0] for r in ROWS]
    slices = _SLICE_NAMES.value or list(SLICES)
    if _PHASE.value in ('all', 'batch64'):
      for row in rows:
        for slice_name in slices:
          _batch64(results, row, slice_name)
          _write_page(results)
    if _PHASE.value in ('all', 'largest'):
      for row in rows:
        for slice_name in slices:
          _largest(results, row, slice_name)
          _write_page(results)
    if _PHASE.value in ('all', 'mesh'):
      for row in [r for r in MESH_ROWS if r in rows]:
        for slice_name in [s for s in MESH_SLICES if s in slices]:
          _mesh(results, row, slice_name)
          _write_page(results)
    if _PHASE.value in ('all', 'gpu'):
      for row in rows:
        for slice_name in GPU_SLICES:
          _batch64(results, row, slice_name)
          _write_page(results)
    if _PHASE.value in ('all', 'splash'):
      for row in [r for r in SPLASH_ROWS if r in rows]:
        for slice_name in [s for s in SPLASH_SLICES if s in slices]:
          _splash(results, row, slice_name)
          _write_page(results)
  _write_page(results)


def _write_page(results: dict) -> None:
  with open(_PAGE, 'w') as f:
    f.write(render(results))


if __name__ == '__main__':
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  app.run(main)

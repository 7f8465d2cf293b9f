"""Writes a sweep's results as `<sweep>.md` (a table) and `<sweep>.png` (a plot)."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence

from matplotlib.figure import Figure

from vivit_jax import fileio
from vivit_jax.harness.ablation.runner import RowResult
from vivit_jax.harness.ablation.sweeps import Sweep


def _fmt(value: float | None, spec: str) -> str:
  return '' if value is None or math.isnan(value) else format(value, spec)


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
  """(mean, sample standard deviation) of per-seed top-1; spread is NaN for one seed."""
  if not values:
    return math.nan, math.nan
  spread = statistics.stdev(values) if len(values) > 1 else math.nan
  return statistics.fmean(values), spread


def table(sweep: Sweep, results: Sequence[RowResult]) -> str:
  """The markdown table: one line per row, the paper's numbers beside ours."""
  lines = [
    '| row | top-1 (%) | ± std | seeds | GFLOPs | params (M) | train step (ms) | wall (min) '
    f'| paper top-1 ({sweep.paper_source}) | paper GFLOPs |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for r in results:
    mean, spread = mean_spread(r.top1)
    lines.append(
      f'| {r.row.label} | {_fmt(mean, ".1f")} | {_fmt(spread, ".1f")} | {len(r.top1)} '
      f'| {_fmt(r.gflops, ".4f")} | {_fmt(r.params_m, ".3f")} '
      f'| {_fmt(r.train_step_s * 1e3, ".0f")} '
      f'| {_fmt(r.wall_s / 60, ".1f")} | {_fmt(r.row.paper_top1, ".1f")} '
      f'| {_fmt(r.row.paper_gflops, ".1f")} |'
    )
  return '\n'.join(lines)


def markdown(sweep: Sweep, results: Sequence[RowResult], header: str = '') -> str:
  """The whole `<sweep>.md`: title, how it was run, the table and the plot."""
  splits = sorted({r.split for r in results if r.split})
  parts = [f'# {sweep.title}', '']
  if header:
    parts += [header, '']
  parts += [
    f'Top-1 on the {" / ".join(splits) or "(no finished row)"} split, mean over seeds '
    '(± sample standard deviation when there are several). GFLOPs are multiply-adds of one '
    "clip's forward pass, as the paper counts; the train step is one optimiser step at the "
    'config batch size on one device (vivit_jax.harness.perf.measure); wall time includes '
    'compilation and evaluation.',
    '',
  ]
  if sweep.note:
    parts += [sweep.note, '']
  parts += [table(sweep, results), '', f'![{sweep.name}]({sweep.name}.png)', '']
  return '\n'.join(parts)


def _x(sweep: Sweep, results: Sequence[RowResult], paper: bool) -> list[float]:
  if sweep.x_axis == 'gflops':
    return [r.row.paper_gflops if paper else r.gflops for r in results]
  if sweep.x_axis == 'value':
    return [r.row.value for r in results]
  return list(range(len(results)))


def plot(sweep: Sweep, results: Sequence[RowResult], path: str) -> None:
  """Accuracy against GFLOPs or the swept value: ours left, the paper's right (if any)."""
  has_paper = any(r.row.paper_top1 is not None for r in results)
  # A bare Figure renders with Agg and touches no global pyplot state (no display needed).
  fig = Figure(figsize=(11 if has_paper else 6, 4.2))
  axes = fig.subplots(1, 2 if has_paper else 1)
  axes = list(axes) if has_paper else [axes]
  panels = [(axes[0], False, 'this run')]
  if has_paper:
    panels.append((axes[1], True, f'paper ({sweep.paper_source})'))
  for ax, paper, title in panels:
    xs = _x(sweep, results, paper)
    for i, (x, r) in enumerate(zip(xs, results)):
      mean, spread = (r.row.paper_top1, math.nan) if paper else mean_spread(r.top1)
      if x is None or mean is None or math.isnan(mean) or math.isnan(x):
        continue
      err = None if math.isnan(spread) else spread
      ax.errorbar([x], [mean], yerr=err, fmt='o', capsize=3, color=f'C{i}', label=r.row.label)
      if sweep.x_axis == 'value':
        ax.annotate(r.row.label, (x, mean), fontsize=7, xytext=(4, 4), textcoords='offset points')
    if sweep.x_axis == 'value':
      line = [
        (x, (r.row.paper_top1 if paper else mean_spread(r.top1)[0])) for x, r in zip(xs, results)
      ]
      line = [(x, y) for x, y in line if y is not None and not math.isnan(y)]
      if line:
        ax.plot(*zip(*line), '-', color='0.6', zorder=0)
    if sweep.x_axis == 'row':
      ax.set_xticks(range(len(results)), [r.row.label for r in results], rotation=20, ha='right')
    ax.set_xlabel(
      sweep.x_label + (' (ViViT-B, 32x224x224)' if paper and sweep.x_axis == 'gflops' else '')
    )
    ax.set_ylabel('top-1 (%)')
    ax.margins(x=0.15, y=0.12)
    if sweep.x_axis == 'gflops':
      ax.legend(fontsize=7, loc='best')
    ax.set_title(title)
    ax.grid(alpha=0.3)
  fig.suptitle(sweep.title)
  fig.tight_layout()
  with fileio.atomic_write(path, 'wb') as f:
    fig.savefig(f, format='png', dpi=110)


def write_report(
  sweep: Sweep, results: Sequence[RowResult], directory: str, header: str = ''
) -> tuple[str, str]:
  """Writes `directory/<sweep>.md` and `directory/<sweep>.png`; returns both paths."""
  fileio.makedirs(directory)
  md_path = os.path.join(directory, f'{sweep.name}.md')
  png_path = os.path.join(directory, f'{sweep.name}.png')
  plot(sweep, results, png_path)
  with fileio.atomic_write(md_path) as f:
    f.write(markdown(sweep, results, header))
  return md_path, png_path

"""Runs a sweep's rows x seeds through the trainer, one workdir each, resumable.

Layout: `WORKDIR/<sweep>/<row>/seed_<i>/` is the trainer's workdir for one row
and seed (checkpoints, events, results.json); `WORKDIR/<sweep>/<row>/costs.json`
holds the row's parameters, GFLOPs and measured train-step time. A seed whose
`results.json` exists is finished and never re-run; an interrupted one resumes
from its own checkpoint, because rerunning `train_and_evaluate` on the same
workdir does exactly that.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
from absl import logging

from vivit_jax import config as config_lib
from vivit_jax import fileio
from vivit_jax.harness import perf
from vivit_jax.harness.ablation.sweeps import Row, Sweep
from vivit_jax.train.trainer import train_and_evaluate

RESULTS = 'results.json'
WALL_TIME = 'wall_time.json'
COSTS = 'costs.json'


class Preempted(Exception):
  """A run stopped on SIGTERM before its end; rerunning the same command continues it."""


def slug(label: str) -> str:
  """A directory name for a row label: '2 factorised encoder' -> '2_factorised_encoder'."""
  return re.sub(r'[^a-z0-9]+', '_', label.lower()).strip('_')


def row_dir(workdir: str, sweep: Sweep, row: Row) -> str:
  return os.path.join(workdir, sweep.name, slug(row.label))


def seed_name(seed: int) -> str:
  """The directory of one seed inside a row's: 'seed_<i>'."""
  return f'seed_{seed}'


def seed_dir(workdir: str, sweep: Sweep, row: Row, seed: int) -> str:
  return os.path.join(row_dir(workdir, sweep, row), seed_name(seed))


def row_config(base: ml_collections.ConfigDict, row: Row, seed: int) -> ml_collections.ConfigDict:
  """The config one row and seed trains with: base + row overrides, rng_seed offset by seed."""
  config = config_lib.with_overrides(base, row.overrides_for(seed))
  config.rng_seed = int(base.rng_seed) + seed
  return config


def is_finished(directory: str) -> bool:
  return fileio.exists(os.path.join(directory, RESULTS))


def _read_json(path: str, default: Any = None) -> Any:
  if not fileio.exists(path):
    return default
  return fileio.read_json(path)


def _train_timed(train_fn: Callable, config, directory: str) -> dict[str, Any]:
  """Trains in `directory`, adding this attempt's wall time to the stored total."""
  fileio.makedirs(directory)
  path = os.path.join(directory, WALL_TIME)
  start = time.time()
  try:
    return train_fn(config, directory)
  finally:
    spent = _read_json(path, {'seconds': 0.0})['seconds'] + time.time() - start
    fileio.write_json(path, {'seconds': spent})


def measure_costs(config: ml_collections.ConfigDict, repeats: int = 5) -> dict[str, float]:
  """Params (M), GFLOPs per clip and the median train-step time (s) at the config's batch."""
  result = perf.measure(config, batch_size=int(config.batch_size), repeats=repeats)
  return {'params_m': result.params_m, 'gflops': result.gflops, 'train_step_s': result.train_s}


def run_sweep(
  sweep: Sweep,
  base: ml_collections.ConfigDict,
  workdir: str,
  seeds: int = 1,
  *,
  train_fn: Callable | None = None,
  costs: bool = True,
) -> bool:
  """Trains every unfinished row x seed, then measures each row's costs once.

  Args:
    sweep: the rows to run.
    base: the base config (with the user's command-line overrides).
    workdir: the sweep's root directory.
    seeds: seeds per row (0 .. seeds-1 added to `base.rng_seed`).
    train_fn: `train_and_evaluate` (the default; tests may pass their own).
    costs: measure params, GFLOPs and train-step time (compiles each row once).

  Returns:
    True when every row and seed is finished; False when a run was preempted
    (SIGTERM): rerun the same command to continue.
  """
  if train_fn is None:
    train_fn = train_and_evaluate
  for row in sweep.rows:
    for seed in range(seeds):
      directory = seed_dir(workdir, sweep, row, seed)
      if is_finished(directory):
        logging.info('%s / %s seed %d: finished, skipped.', sweep.name, row.label, seed)
        continue
      logging.info('%s / %s seed %d: training in %s.', sweep.name, row.label, seed, directory)
      print(f'[ablate] {sweep.name}: {row.label}, seed {seed} -> {directory}', flush=True)
      results = _train_timed(train_fn, row_config(base, row, seed), directory)
      if results.get('preempted'):
        return False
      if not is_finished(directory):
        # Killed between the final checkpoint and results.json: the trainer
        # will not retrain a finished checkpoint, so say how to recover.
        raise RuntimeError(
          f'{directory} holds a final checkpoint but no {RESULTS}; delete the directory '
          'to retrain this row.'
        )
    cost_path = os.path.join(row_dir(workdir, sweep, row), COSTS)
    if costs and not fileio.exists(cost_path):
      fileio.write_json(cost_path, measure_costs(row_config(base, row, 0)))
  return True


@dataclasses.dataclass
class RowResult:
  """What the report shows for one row; top1 in %, one entry per finished seed."""

  row: Row
  top1: list[float]
  split: str
  params_m: float = math.nan
  gflops: float = math.nan
  train_step_s: float = math.nan
  wall_s: float = math.nan


def _top1(results: Mapping[str, Any]) -> tuple[float, str]:
  for split in ('test', 'validation'):
    if 'top1' in results.get(split, {}):
      return 100.0 * float(results[split]['top1']), split
  return math.nan, ''


def collect(sweep: Sweep, workdir: str, seeds: int) -> list[RowResult]:
  """Reads every finished seed's results and each row's costs (NaN where missing)."""
  out = []
  for row in sweep.rows:
    top1, splits, walls, gflops, params = [], set(), [], [], []
    for seed in range(seeds):
      directory = seed_dir(workdir, sweep, row, seed)
      results = _read_json(os.path.join(directory, RESULTS))
      if results is None:
        continue
      value, split = _top1(results)
      top1.append(value)
      splits.add(split)
      walls.append(_read_json(os.path.join(directory, WALL_TIME), {'seconds': math.nan})['seconds'])
      gflops.append(results.get('gflops', math.nan))
      params.append(results.get('num_params', math.nan) / 1e6)
    costs = _read_json(os.path.join(row_dir(workdir, sweep, row), COSTS), {})
    out.append(
      RowResult(
        row=row,
        top1=top1,
        split='/'.join(sorted(splits)),
        params_m=costs.get('params_m', params[0] if params else math.nan),
        gflops=costs.get('gflops', gflops[0] if gflops else math.nan),
        train_step_s=costs.get('train_step_s', math.nan),
        wall_s=sum(walls) / len(walls) if walls else math.nan,
      )
    )
  return out

"""The paper's ablations at small scale: sweeps as data, a resumable runner, a report.

`ablate(name, config, workdir)` runs one sweep through the trainer (the code
path of main.py) and writes `workdir/<name>.md` and `workdir/<name>.png`;
`python -m vivit_jax.tools.ablate` is its command line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import ml_collections

from vivit_jax import config as config_lib
from vivit_jax import errors, fileio
from vivit_jax.harness.ablation import pretrain, report, runner, sweeps
from vivit_jax.harness.ablation.sweeps import SWEEPS, Row, Sweep, get_sweep


def build_sweep(
  name: str,
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  values: Sequence[int] | None = None,
  checkpoint: str | None = None,
  pretrain_steps: int | None = None,
  train_fn: Callable | None = None,
  seeds: int = 1,
  pretrain_config: ml_collections.ConfigDict | None = None,
  report_only: bool = False,
) -> Sweep:
  """The sweep `name` on the resolved `config`.

  `values` picks the swept values of `frames` and `temporal_layers`. For
  `tubelet_init`, `checkpoint` is the image model (a ViT .npz or Scenic
  msgpack); without one, a single-frame image model is first pre-trained in
  `workdir/tubelet_init/image_pretrain` (vivit_jax.harness.ablation.pretrain).

  For `variants_pretrained`, `checkpoint` is a directory of `seed_<i>` training
  workdirs of the average-pool baseline (such as the `variants` sweep's
  `2_average_pool_baseline` row), seed i starting from `seed_<i>`, or one
  checkpoint for every seed; without one, the baseline is first trained on
  `pretrain_config` for each seed (`pretrain.pretrain_baselines`).

  Raises:
    runner.Preempted: a pre-training run was preempted.
  """
  kwargs = {}
  if values and name in ('frames', 'temporal_layers'):
    kwargs['values'] = tuple(values)
  if name == 'tubelet_init':
    if checkpoint is None and not report_only:
      checkpoint = pretrain.pretrain_image_model(
        config, workdir, num_steps=pretrain_steps, train_fn=train_fn
      )
    kwargs['checkpoint'] = checkpoint
  if name == 'variants_pretrained' and not report_only:
    kwargs['checkpoints'] = _baseline_checkpoints(
      checkpoint, pretrain_config, workdir, seeds, pretrain_steps, train_fn
    )
  return get_sweep(name, config, **kwargs)


def _baseline_checkpoints(
  checkpoint, pretrain_config, workdir, seeds, pretrain_steps, train_fn
) -> Callable[[int], str]:
  """seed -> the checkpoint `variants_pretrained` starts that seed from."""
  if checkpoint is not None:
    if not fileio.exists(checkpoint):
      raise errors.MissingFileError(
        f'variants_pretrained: --checkpoint {checkpoint} does not exist. Give a directory of '
        "seed_<i> training workdirs (e.g. the variants sweep's 2_average_pool_baseline) or "
        'one checkpoint.'
      )

    def per_seed(seed: int) -> str:
      return os.path.join(checkpoint, runner.seed_name(seed))

    if not fileio.isdir(per_seed(0)):
      return lambda seed: checkpoint
    missing = [s for s in range(seeds) if not fileio.isdir(per_seed(s))]
    if missing:
      raise errors.MissingFileError(
        f'variants_pretrained: {checkpoint} has no {runner.seed_name(missing[0])} for seed '
        f'{missing[0]} of {seeds}: train that many seeds of the baseline there, or pass '
        f'--seeds={missing[0]}.'
      )
    return per_seed
  if pretrain_config is None:
    raise config_lib.ConfigError(
      'variants_pretrained starts each row from a pre-trained average-pool baseline: pass '
      '--pretrain_config=CONFIG (the data to pre-train it on, e.g. '
      'configs/synthetic.py:factorised) or --checkpoint=DIR (seed_<i> workdirs of one).'
    )
  return pretrain.pretrain_baselines(
    config_lib.resolve(pretrain_config),
    workdir,
    seeds,
    num_steps=pretrain_steps,
    train_fn=train_fn,
  )


def ablate(
  name: str,
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  seeds: int = 1,
  values: Sequence[int] | None = None,
  checkpoint: str | None = None,
  pretrain_steps: int | None = None,
  costs: bool = True,
  header: str = '',
  train_fn: Callable | None = None,
  report_only: bool = False,
  pretrain_config: ml_collections.ConfigDict | None = None,
) -> tuple[str, str] | None:
  """Runs sweep `name` (resumable) and writes its report.

  With `report_only`, nothing is trained: the report shows the seeds finished so
  far (a running sweep can be looked at this way).

  Returns:
    (markdown path, png path), or None when a run was preempted before the end
    (rerun the same command to continue).
  """
  config = config_lib.resolve(config)
  try:
    sweep = build_sweep(
      name,
      config,
      workdir,
      values=values,
      checkpoint=checkpoint,
      pretrain_steps=pretrain_steps,
      train_fn=train_fn,
      seeds=seeds,
      pretrain_config=pretrain_config,
      report_only=report_only,
    )
  except runner.Preempted:
    return None
  if not report_only and not runner.run_sweep(
    sweep, config, workdir, seeds, train_fn=train_fn, costs=costs
  ):
    return None
  results = runner.collect(sweep, workdir, seeds)
  return report.write_report(sweep, results, workdir, header)


__all__ = [
  'SWEEPS',
  'Row',
  'Sweep',
  'ablate',
  'build_sweep',
  'get_sweep',
  'report',
  'runner',
  'sweeps',
]

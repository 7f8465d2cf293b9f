"""The paper's ablations at small scale: sweeps as data, a resumable runner, a report.

`ablate(name, config, workdir)` runs one sweep through the trainer (the code
path of main.py) and writes `workdir/<name>.md` and `workdir/<name>.png`;
`python -m vivit_jax.tools.ablate` is its command line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ml_collections

from vivit_jax import config as config_lib
from vivit_jax.ablation import pretrain, report, runner, sweeps
from vivit_jax.ablation.sweeps import SWEEPS, Row, Sweep, get_sweep


def build_sweep(
  name: str,
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  values: Sequence[int] | None = None,
  checkpoint: str | None = None,
  pretrain_steps: int | None = None,
  train_fn: Callable | None = None,
) -> Sweep:
  """The sweep `name` on the resolved `config`.

  `values` picks the swept values of `frames` and `temporal_layers`. For
  `tubelet_init`, `checkpoint` is the image model (a ViT .npz or Scenic
  msgpack); without one, a single-frame image model is first pre-trained in
  `workdir/tubelet_init/image_pretrain` (vivit_jax.ablation.pretrain).
  """
  kwargs = {}
  if values and name in ('frames', 'temporal_layers'):
    kwargs['values'] = tuple(values)
  if name == 'tubelet_init':
    if checkpoint is None:
      checkpoint = pretrain.pretrain_image_model(
        config, workdir, num_steps=pretrain_steps, train_fn=train_fn
      )
    kwargs['checkpoint'] = checkpoint
  return get_sweep(name, config, **kwargs)


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
) -> tuple[str, str] | None:
  """Runs sweep `name` (resumable) and writes its report.

  With `report_only`, nothing is trained: the report shows the seeds finished so
  far (a running sweep can be looked at this way).

  Returns:
    (markdown path, png path), or None when a run was preempted before the end
    (rerun the same command to continue).
  """
  config = config_lib.resolve(config)
  sweep = build_sweep(
    name,
    config,
    workdir,
    values=values,
    checkpoint=checkpoint,
    pretrain_steps=pretrain_steps,
    train_fn=train_fn,
  )
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

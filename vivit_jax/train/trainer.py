"""The trainer: `train_and_evaluate(config, workdir)`, told in a fixed order.

setup -> devices -> input -> model -> schedule, optimiser and state (resume,
else init_from, else random) -> compiled steps -> loop (train, summaries,
checkpoint, validation, test, preemption) -> predictions and results.json.

The pieces it reads as one line each live beside it: `state.build_train_state`,
`resume` (the workdir: resume-or-init, the finished run, the undo of a run that
fails before its first step) and `meters` (steps/s and core-hours, the NaN check).

The same code runs on one CPU, N CPU devices, a GPU and multi-host TPU pods:
`config.batch_size` is global, each process feeds its local devices, and only
process 0 writes summaries, predictions and results.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from absl import logging
from clu import parameter_overview, periodic_actions
from jax.experimental import multihost_utils

from vivit_jax import config as config_lib
from vivit_jax import fileio
from vivit_jax.data import build_dataset
from vivit_jax.data.meta import DatasetMeta, TrainingData
from vivit_jax.data.prefetch import prefetch_to_device
from vivit_jax.errors import UnwritablePathError
from vivit_jax.models import build_model, describe_model, stats
from vivit_jax.task import Task
from vivit_jax.train import evaluation, meters, parallel, resume, steps, summaries, workdir_lock
from vivit_jax.train.checkpointing import Checkpointer, PreemptionWatcher
from vivit_jax.train.meters import NonFiniteLossError
from vivit_jax.train.state import build_train_state

# NonFiniteLossError lives with the check that raises it; callers catch it from here.
__all__ = ['NonFiniteLossError', 'due', 'train_and_evaluate', 'training_length']


def due(step: int, every: int | None, total: int) -> bool:
  """The one rule for periodic work: every `every` steps, and at the last step."""
  return step == total or bool(every) and step % every == 0


def training_length(config: ml_collections.ConfigDict, num_train_examples: int) -> tuple[int, int]:
  """(total steps, steps per epoch) from num_training_steps or num_training_epochs."""
  if not config.batch_size:
    raise config_lib.ConfigError('config.batch_size must be set (the global batch size).')
  steps_per_epoch = max(1, int(num_train_examples) // config.batch_size)
  if config.num_training_steps:
    return int(config.num_training_steps), steps_per_epoch
  if config.num_training_epochs:
    return max(1, int(config.num_training_epochs * steps_per_epoch)), steps_per_epoch
  raise config_lib.ConfigError('Set config.num_training_steps or config.num_training_epochs.')


def _build_dataset(config: ml_collections.ConfigDict, workdir: str) -> TrainingData:
  return build_dataset(
    config,
    num_local_devices=jax.local_device_count(),
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    workdir=workdir,
  )


def _log_model(module, params, input_shape, count_flops: bool) -> dict[str, float]:
  parameter_overview.log_parameter_overview(params)
  info = {'num_params': float(stats.count_params(params))}
  if count_flops:
    try:
      info['gflops'] = stats.forward_gflops(module, params, input_shape)
    except Exception as e:  # A FLOP count is informative only; never fail a run for it.
      logging.warning('Could not count FLOPs: %s', e)
  logging.info('Model: %s', info)
  return info


def _mean_metrics(history: list[dict[str, np.ndarray]]) -> dict[str, float]:
  keys = [k for k in history[0] if k not in ('finite', 'learning_rate')]
  out = {f'train/{k}': float(np.mean([m[k] for m in history])) for k in keys}
  out['train/learning_rate'] = float(history[-1]['learning_rate'])
  return out


def _num_devices(config: ml_collections.ConfigDict) -> int:
  """All processes' devices, once the global batch is known to split over them."""
  problem = config.batch_size and config_lib.batch_split_problem(
    'batch_size', config.batch_size, jax.process_count(), jax.local_device_count()
  )
  if problem:
    raise config_lib.ConfigError(problem)
  logging.info(
    '%d processes, %d devices (%d local).',
    jax.process_count(),
    jax.device_count(),
    jax.local_device_count(),
  )
  return jax.device_count()


def make_update(
  config: ml_collections.ConfigDict,
  meta: DatasetMeta,
  placement: parallel.Replicated | parallel.Sharded,
) -> Callable:
  """The train step `main.py` runs, spread over devices by `placement`; the config stays
  outside traced code. `vivit_jax.harness.fit` compiles this same step for a TPU slice."""
  options = steps.StepOptions.from_config(config)
  return steps.make_update_fn(
    meta.task, options, device_augment=meta.device_augment, placement=placement
  )


@dataclasses.dataclass(frozen=True)
class SplitEvaluator:
  """Evaluates one split in one exact pass, and writes what it found.

  Attributes:
    dataset: the data; `eval_iter(split)` and `test_iter()` give the passes.
    task: how labels and logits are read.
    label_smoothing: as in training, for the evaluation loss.
    writer: where scalars and confusion images go.
    predict: the eval step for one view per clip.
    predict_test: the eval step for the multi-view test split.
    total_steps: at this step, predictions are also written.
    predictions_dir: where `predictions_<split>.jsonl` goes; None on processes
      other than the chief.
  """

  dataset: TrainingData
  task: Task
  label_smoothing: float | None
  writer: summaries.SplitWriters
  predict: Callable
  predict_test: Callable
  total_steps: int
  predictions_dir: str | None

  def evaluate(self, split: str, params: Any, step: int) -> dict[str, float]:
    """Writes the split's scalars, confusion images and, at the end, predictions.

    Args:
      split: 'validation' or 'test'.
      params: the parameters, as the placement holds them.
      step: the training step, for the summaries.

    Returns:
      The split's metrics, e.g. {'accuracy': 0.9, 'loss': 0.3}.
    """
    if split == 'test':
      preds = evaluation.predict_split(self.predict_test, params, self.dataset.test_iter())
    else:
      preds = evaluation.predict_split(self.predict, params, self.dataset.eval_iter(split))
    metrics = evaluation.compute_metrics(preds, self.task, self.label_smoothing)
    self.writer.write_scalars(step, {f'{split}/{k}': v for k, v in metrics.items()})
    names = self.dataset.meta.label_names
    images = evaluation.confusion_images(preds, self.task, names, title=f'{split}, step {step}')
    self.writer.write_images(step, {f'{split}/{k}': v for k, v in images.items()})
    if step == self.total_steps and self.predictions_dir is not None:
      path = os.path.join(self.predictions_dir, f'predictions_{split}.jsonl')
      evaluation.write_predictions(path, preds, self.task, names)
    logging.info('Step %d %s: %s', step, split, metrics)
    return metrics


def _evaluate_due(
  evaluator: SplitEvaluator,
  results: dict[str, Any],
  params: Any,
  step: int,
  eval_every: int,
  test_every: int,
  meta: DatasetMeta,
) -> None:
  """Evaluates the splits due at `step` into `results` (validation, then the multi-view test)."""
  if meta.num_eval_examples and due(step, eval_every, evaluator.total_steps):
    results['validation'] = evaluator.evaluate('validation', params, step)
  if test_every and due(step, test_every, evaluator.total_steps):
    results['test'] = evaluator.evaluate('test', params, step)


def _make_evaluator(
  config: ml_collections.ConfigDict,
  module: nn.Module,
  dataset: TrainingData,
  writer: summaries.SplitWriters,
  total_steps: int,
  predictions_dir: str | None,
  placement: parallel.Replicated | parallel.Sharded,
) -> SplitEvaluator:
  """The evaluator of `dataset`'s splits with eval steps of `module` spread by `placement`."""
  task = dataset.meta.task
  return SplitEvaluator(
    dataset=dataset,
    task=task,
    label_smoothing=config.label_smoothing,
    writer=writer,
    predict=steps.make_eval_fn(apply_fn=module.apply, task=task, placement=placement),
    predict_test=steps.make_eval_fn(
      apply_fn=module.apply,
      task=task,
      multiview=True,
      softmax_average=config.multicrop_softmax_logits,
      placement=placement,
    ),
    total_steps=total_steps,
    predictions_dir=predictions_dir,
  )


def _hooks(
  config: ml_collections.ConfigDict, workdir: str, start_step: int, total_steps: int
) -> list[periodic_actions.PeriodicAction]:
  """The chief's per-step hooks: progress and ETA in the log, and the profiler if asked."""
  # Progress and ETA go to the log only: the train run has its own steps_per_sec.
  hooks = [meters.ProgressNote(num_train_steps=total_steps)]
  if config.num_profile_steps:
    hooks.append(
      periodic_actions.Profile(
        logdir=workdir,
        num_profile_steps=config.num_profile_steps,
        first_profile=start_step + 10,
        every_secs=None,
      )
    )
  return hooks


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  dataset: TrainingData | None = None,
  module: nn.Module | None = None,
) -> dict[str, Any]:
  """Trains, evaluates and checkpoints in `workdir`; resumes from its latest checkpoint.

  setup -> devices -> input -> model -> schedule, optimiser and state (resume,
  else init_from, else random) -> config.json -> compiled steps -> loop (train,
  summaries, checkpoint, validation, test, preemption) -> results.json.

  Args:
    config: an experiment config (validated and completed with `resolve`).
    workdir: output directory: TensorBoard events, `checkpoints/`,
      `predictions_<split>.jsonl`, `results.json`, `config.json`.
    dataset: optional prebuilt dataset (tests); default `vivit_jax.data.build_dataset`.
    module: optional prebuilt Flax model (tests); default `vivit_jax.models.build_model`.

  Returns:
    The final results (also in `workdir/results.json`); with 'preempted': True
    when SIGTERM or Ctrl-C (SIGINT) stopped the run early.

  Raises:
    NonFiniteLossError: the loss became NaN or infinite (no checkpoint is
      written for that or any later step).
  """
  if jax.process_count() > 1:
    # The first collective also sets up the processes' connections (gloo's on CPU clusters),
    # and that setup gives up when one process is 30 s behind another. Here, just after
    # JAX's start waited for every process, none is behind; later collectives (the
    # checkpoint manager's, the first step's) then wait for a slow process instead of failing.
    multihost_utils.sync_global_devices('vivit_jax train_and_evaluate: all processes started')
  workdir = fileio.absolute(workdir)
  with resume.undone_unless_stepped(workdir) as progress, workdir_lock.held(workdir) as lock:
    # Setup. Resolving first makes a typo in any key fail before work starts.
    config = config_lib.resolve(config)
    is_chief = jax.process_index() == 0
    unwritable = fileio.unwritable_reason(workdir, directory=True)
    if unwritable:
      raise UnwritablePathError(
        f'Cannot write the workdir {workdir}: {unwritable}. Give a --workdir you can write to.'
      )
    fileio.makedirs(workdir)
    lock.acquire()  # Before anything is written: a second run on this workdir stops here.
    writer = summaries.SplitWriters(workdir, just_logging=not (is_chief and config.write_summary))
    # Devices: each process feeds its local devices a slice of the global batch.
    num_devices = _num_devices(config)
    placement = parallel.from_config(config)
    if module is None:  # The model's keys too (patch vs crop, tubelet vs frames), before the data.
      describe_model(config)

    # Input.
    dataset = dataset if dataset is not None else _build_dataset(config, workdir)
    meta = dataset.meta
    input_shape = tuple(meta.input_shape)
    total_steps, steps_per_epoch = training_length(config, meta.num_train_examples)
    eval_every = config.log_eval_steps or steps_per_epoch
    checkpoint_every = config.checkpoint_steps or eval_every
    test_every = 0
    if config.dataset_configs.do_multicrop_test and meta.num_test_examples:
      test_every = max(1, int(config.dataset_configs.log_test_epochs * steps_per_epoch))

    # Model, then schedule -> optimiser -> state: resume, else init_from, else random.
    module = module if module is not None else build_model(config, meta.task.num_classes)
    rng = jax.random.key(config.rng_seed)
    initial = build_train_state(config, module, input_shape, total_steps, rng)
    checkpoints_dir = os.path.join(workdir, 'checkpoints')
    checkpointer = Checkpointer(checkpoints_dir, config.max_checkpoints_to_keep)
    state = resume.restore_or_init(config, workdir, checkpointer, initial, meta.label_names)
    start_step = int(state.step)
    # Written only once the workdir's checkpoint is known to fit this config, so
    # a mistaken --workdir keeps the config.json of the run that wrote it.
    if is_chief:
      fileio.write_json(
        os.path.join(workdir, 'config.json'), json.loads(config.to_json_best_effort())
      )
      resume.keep_label_map(workdir, meta.label_names)
    if start_step >= total_steps and not resume.final_evaluation_missing(
      workdir, start_step, total_steps
    ):
      return resume.already_finished(workdir, start_step, total_steps, checkpointer)
    model_info = {}
    if is_chief:
      model_info = _log_model(module, state.params, input_shape, config.count_flops)

    # Compiled steps.
    update = make_update(config, meta, placement)
    evaluator = _make_evaluator(
      config, module, dataset, writer, total_steps, workdir if is_chief else None, placement
    )

    # The loop.
    logging.info('Parallelism: %s', placement.describe(state))
    state = placement.place_state(state)
    # Batches are copied to the devices a few steps ahead, overlapping the step.
    train_iter = prefetch_to_device(
      dataset.train_iter(start_step=start_step),
      config.dataset_configs.prefetch_to_device,
      put_array=placement.put_batch,
    )
    watcher = PreemptionWatcher(checkpointer)
    hooks = _hooks(config, workdir, start_step, total_steps) if is_chief else []
    results: dict[str, Any] = {'step': total_steps, **model_info}
    finite = meters.LateFiniteCheck(placement.to_host)
    meter = meters.ThroughputMeter(start_step, config.batch_size, num_devices)
    logging.info(
      'Training steps %d..%d (%d per epoch).', start_step + 1, total_steps, steps_per_epoch
    )
    try:
      for step in range(start_step + 1, total_steps + 1):
        with jax.profiler.StepTraceAnnotation('train', step_num=step):
          state, metrics = update(state, next(train_iter))
        progress['stepped'] = True
        finite.push(step, metrics)
        for hook in hooks:
          hook(step)

        if due(step, config.log_summary_steps, total_steps):
          finite.flush()
          rates = meter.rates(step)
          writer.write_scalars(step, {**_mean_metrics(finite.take_history()), **rates})
          meter.restart(step)

        # The step's checkpoint is started before its evaluation, so an evaluation
        # that fails (a bad test video) keeps the training it followed.
        stop = watcher.should_stop(step)
        if config.checkpoint and (due(step, checkpoint_every, total_steps) or stop):
          finite.flush()  # Never write a state that followed a NaN step.
          checkpointer.save(state, to_host=placement.to_host)

        # A stopping run skips its evaluation: a preemption notice leaves seconds,
        # and the checkpoint must be complete before the process ends.
        if not stop:
          with meter.paused():  # Evaluation time is not training time.
            _evaluate_due(evaluator, results, state.params, step, eval_every, test_every, meta)

        if stop:
          checkpointer.wait()
          logging.warning('Preempted: saved step %d; rerun the same command to resume.', step)
          writer.flush()
          return {'step': step, 'preempted': True}
      finite.flush()
      if start_step == total_steps:
        # The final checkpoint of a run that ended in its final evaluation: that evaluation.
        _evaluate_due(evaluator, results, state.params, total_steps, 1, test_every, meta)
    finally:
      # The input pipeline first, while Python still runs its tf.data workers:
      # left to the interpreter's exit, its iterator would wait for them forever.
      train_iter.close()
      watcher.close()
      checkpointer.close()
      writer.close()

    if is_chief:
      results['train_core_hours'] = meter.core_hours
      fileio.write_json(os.path.join(workdir, 'results.json'), results)
    logging.info('Done. Results: %s', results)
    return results

"""The trainer: `train_and_evaluate(config, workdir)`, told in a fixed order.

setup -> devices -> input -> model -> optimiser -> state (resume or init_from)
-> compiled steps -> loop (train, summaries, eval, test, checkpoint,
preemption) -> final evaluation, predictions and results.json.

The same code runs on one CPU, N CPU devices, a GPU and multi-host TPU pods:
`config.batch_size` is global, each process feeds its local devices, and only
process 0 writes summaries, predictions and results.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

import flax
import jax
import ml_collections
import numpy as np
from absl import logging
from clu import parameter_overview, periodic_actions

from vivit_jax import config as config_lib
from vivit_jax.checkpoints import workdir as workdir_lib
from vivit_jax.data.prefetch import prefetch_to_device
from vivit_jax.errors import UserError
from vivit_jax.train import evaluation, optimizers, schedules, steps, summaries
from vivit_jax.train.checkpointing import Checkpointer, PreemptionWatcher, unreplicate_to_host
from vivit_jax.train.state import create_train_state, init_params


class NonFiniteLossError(UserError, FloatingPointError):
  """The training loss or gradient norm became NaN or infinite."""


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


def _build_dataset(config: ml_collections.ConfigDict, workdir: str):
  from vivit_jax.data import build_dataset

  return build_dataset(
    config,
    num_local_devices=jax.local_device_count(),
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    workdir=workdir,
  )


def _load_pretrained(config: ml_collections.ConfigDict, params: Any) -> Any:
  try:
    from vivit_jax.checkpoints import load_pretrained
  except ImportError as e:
    raise ImportError(
      'config.init_from.checkpoint_path is set, but vivit_jax.checkpoints.load_pretrained '
      'is not available in this checkout.'
    ) from e
  logging.info('Initialising from %s.', config.init_from.checkpoint_path)
  return load_pretrained(config, params)


def _log_model(module, params, input_shape, count_flops: bool) -> dict[str, float]:
  from vivit_jax.models import stats

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


def _write_json(path: str, value: Any) -> None:
  with open(path + '.tmp', 'w') as f:
    json.dump(value, f, indent=2, sort_keys=True)
  os.replace(path + '.tmp', path)


def _written_with(workdir: str, config: ml_collections.ConfigDict) -> str | None:
  """'It was written with WORKDIR/config.json, which sets model.hidden_size=16 (...)', or None."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    differences = workdir_lib.config_differences(json.load(f), config)
  if not differences:
    return None
  return f'It was written with {path}, which sets {", ".join(differences)}.'


def _undo_new_entries(workdir: str):
  """A function that removes what appeared in `workdir` since this call (all of it if new)."""
  before = set(os.listdir(workdir)) if os.path.isdir(workdir) else None

  def undo() -> None:
    if before is None:
      shutil.rmtree(workdir, ignore_errors=True)
      return
    for name in set(os.listdir(workdir)) - before:
      path = os.path.join(workdir, name)
      if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
      else:
        os.remove(path)

  return undo


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, dataset=None, module=None
) -> dict[str, Any]:
  """Trains, evaluates and checkpoints in `workdir`; resumes from its latest checkpoint.

  Args:
    config: an experiment config (validated and completed with `resolve`).
    workdir: output directory: TensorBoard events, `checkpoints/`,
      `predictions_<split>.jsonl`, `results.json`, `config.json`.
    dataset: optional prebuilt dataset (tests); default `vivit_jax.data.build_dataset`.
    module: optional prebuilt Flax model (tests); default `vivit_jax.models.build_model`.

  Returns:
    The final results (also in `workdir/results.json`); with 'preempted': True
    when a SIGTERM stopped the run early.

  Raises:
    NonFiniteLossError: the loss became NaN or infinite (no checkpoint is
      written for that or any later step).
  """
  # A run that fails before its first step (a bad key, missing data, a workdir
  # of another config) leaves the workdir as it found it: no event files, no
  # config.json, no empty checkpoints/ and, if it was new, no workdir.
  workdir = os.path.abspath(workdir)
  undo = _undo_new_entries(workdir)
  progress = {'stepped': False}
  try:
    return _train_and_evaluate(config, workdir, dataset, module, progress)
  except BaseException:
    if not progress['stepped'] and jax.process_index() == 0:
      undo()
    raise


def _train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, dataset, module, progress: dict[str, bool]
) -> dict[str, Any]:
  """The body of `train_and_evaluate`; sets progress['stepped'] once a step has run."""
  # Setup. Resolving first makes a typo in any key fail before work starts.
  config = config_lib.resolve(config)
  workdir = os.path.abspath(workdir)
  is_chief = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  writer = summaries.SplitWriters(workdir, just_logging=not (is_chief and config.write_summary))

  # Devices: each process feeds its local devices a slice of the global batch.
  num_devices = jax.device_count()
  problem = config.batch_size and config_lib.batch_split_problem(
    'batch_size', config.batch_size, jax.process_count(), jax.local_device_count()
  )
  if problem:
    raise config_lib.ConfigError(problem)
  logging.info(
    '%d processes, %d devices (%d local).',
    jax.process_count(),
    num_devices,
    jax.local_device_count(),
  )

  # Input.
  dataset = dataset if dataset is not None else _build_dataset(config, workdir)
  meta = dataset.meta
  task = meta.task
  input_shape = tuple(meta.input_shape)
  total_steps, steps_per_epoch = training_length(config, meta.num_train_examples)
  eval_every = config.log_eval_steps or steps_per_epoch
  checkpoint_every = config.checkpoint_steps or eval_every
  data_cfg = config.dataset_configs
  test_every = 0
  if data_cfg.do_multicrop_test and meta.num_test_examples:
    test_every = max(1, int(data_cfg.log_test_epochs * steps_per_epoch))
  has_validation = bool(meta.num_eval_examples)

  # Model.
  if module is None:
    from vivit_jax.models import build_model

    module = build_model(config, task.num_classes)

  # Optimiser and learning-rate schedule.
  schedule = schedules.build_schedule(config.lr_configs, total_steps)
  tx = optimizers.build_optimizer(config, schedule)

  # State: resume from the latest checkpoint, else init_from, else random.
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.rng_seed))
  state = create_train_state(init_params(module, init_rng, input_shape), tx, train_rng)
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'), config.max_checkpoints_to_keep)
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore(state, written_with=_written_with(workdir, config))
    logging.info('Resumed from step %d in %s.', int(state.step), checkpointer.directory)
  elif config.init_from.checkpoint_path:
    params = _load_pretrained(config, state.params)
    state = create_train_state(params, tx, train_rng)
  start_step = int(state.step)
  # Written only once the workdir's checkpoint is known to fit this config, so
  # a mistaken --workdir keeps the config.json of the run that wrote it.
  if is_chief:
    _write_json(os.path.join(workdir, 'config.json'), json.loads(config.to_json_best_effort()))
  if start_step >= total_steps:
    message = (
      f'{workdir} already holds a checkpoint at step {start_step} >= num_training_steps '
      f'{total_steps}: nothing to train. Use a new --workdir, or raise num_training_steps.'
    )
    logging.warning(message)
    print(message, flush=True)
    checkpointer.close()
    results_path = os.path.join(workdir, 'results.json')
    if os.path.exists(results_path):
      with open(results_path) as f:
        return json.load(f)
    return {'step': start_step, 'already_finished': True}
  model_info = _log_model(module, state.params, input_shape, config.count_flops) if is_chief else {}

  # Compiled steps. The config stays outside traced code.
  update = steps.make_update_fn(
    apply_fn=module.apply,
    tx=tx,
    schedule=schedule,
    task=task,
    label_smoothing=config.label_smoothing,
    l2_decay_factor=config.l2_decay_factor,
    max_grad_norm=config.max_grad_norm,
    clip_grads_per_device=config.clip_grads_per_device,
    mixup_alpha=config.mixup.alpha,
    cutmix_alpha=config.mixup.cutmix_alpha,
    cutmix_switch_prob=config.mixup.cutmix_switch_prob,
  )
  predict = steps.make_eval_fn(apply_fn=module.apply, task=task)
  predict_test = steps.make_eval_fn(
    apply_fn=module.apply,
    task=task,
    multiview=True,
    softmax_average=config.multicrop_softmax_logits,
  )

  def evaluate(split: str, state, step: int) -> dict[str, float]:
    """One exact pass; writes scalars, confusion images and, at the end, predictions."""
    if split == 'test':
      preds = evaluation.predict_split(predict_test, state.params, dataset.test_iter())
    else:
      preds = evaluation.predict_split(predict, state.params, dataset.eval_iter(split))
    metrics = evaluation.compute_metrics(preds, task, config.label_smoothing)
    writer.write_scalars(step, {f'{split}/{k}': v for k, v in metrics.items()})
    images = evaluation.confusion_images(
      preds, task, meta.label_names, title=f'{split}, step {step}'
    )
    writer.write_images(step, {f'{split}/{k}': v for k, v in images.items()})
    if step == total_steps and is_chief:
      path = os.path.join(workdir, f'predictions_{split}.jsonl')
      evaluation.write_predictions(path, preds, task, meta.label_names)
    logging.info('Step %d %s: %s', step, split, metrics)
    return metrics

  # The loop.
  state = flax.jax_utils.replicate(state)
  # Batches are copied to the devices a few steps ahead, overlapping the step.
  train_iter = prefetch_to_device(
    dataset.train_iter(start_step=start_step), config.dataset_configs.prefetch_to_device
  )
  watcher = PreemptionWatcher(checkpointer)
  hooks = []
  if is_chief:
    # Progress and ETA go to the log only: the train run has its own steps_per_sec.
    hooks.append(periodic_actions.ReportProgress(num_train_steps=total_steps))
    if config.num_profile_steps:
      hooks.append(
        periodic_actions.Profile(
          logdir=workdir,
          num_profile_steps=config.num_profile_steps,
          first_profile=start_step + 10,
          every_secs=None,
        )
      )
  results: dict[str, Any] = {'step': total_steps, **model_info}
  history: list[dict[str, np.ndarray]] = []
  pending = None  # (step, metrics) of the last step, checked one step late.
  clips_per_step = config.batch_size
  last_log_time, last_log_step = time.time(), start_step
  train_seconds = paused = 0.0

  def check_finite(pending) -> None:
    if pending is None:
      return
    step, metrics = pending
    host = unreplicate_to_host(metrics)
    if not host['finite']:
      raise NonFiniteLossError(
        f'Non-finite training loss at step {step} (loss {host["total_loss"]}, gradient norm '
        f'{host["grad_norm"]}); stopping. The last checkpoint is clean.'
      )
    history.append(host)

  logging.info(
    'Training steps %d..%d (%d per epoch).', start_step + 1, total_steps, steps_per_epoch
  )
  step = start_step
  try:
    for step in range(start_step + 1, total_steps + 1):
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        state, metrics = update(state, next(train_iter))
      progress['stepped'] = True
      check_finite(pending)
      pending = (step, metrics)
      for hook in hooks:
        hook(step)

      if due(step, config.log_summary_steps, total_steps):
        check_finite(pending)
        pending = None
        elapsed = max(time.time() - last_log_time - paused, 1e-9)
        train_seconds += elapsed
        rates = {
          'train/steps_per_sec': (step - last_log_step) / elapsed,
          'train/clips_per_sec': (step - last_log_step) * clips_per_step / elapsed,
          'train/core_hours': train_seconds * num_devices / 3600,
        }
        writer.write_scalars(step, {**_mean_metrics(history), **rates})
        history.clear()
        last_log_time, last_log_step, paused = time.time(), step, 0.0

      eval_start = time.time()
      if has_validation and due(step, eval_every, total_steps):
        results['validation'] = evaluate('validation', state, step)
      if test_every and due(step, test_every, total_steps):
        results['test'] = evaluate('test', state, step)
      paused += time.time() - eval_start  # Evaluation time is not training time.

      stop = watcher.should_stop(step)
      if config.checkpoint and (due(step, checkpoint_every, total_steps) or stop):
        check_finite(pending)  # Never write a state that followed a NaN step.
        pending = None
        checkpointer.save(state)
      if stop:
        checkpointer.wait()
        logging.warning('Preempted: saved step %d; rerun the same command to resume.', step)
        writer.flush()
        return {'step': step, 'preempted': True}
    check_finite(pending)
  finally:
    watcher.close()
    checkpointer.close()
    writer.close()

  if is_chief:
    results['train_core_hours'] = train_seconds * num_devices / 3600
    _write_json(os.path.join(workdir, 'results.json'), results)
  logging.info('Done. Results: %s', results)
  return results

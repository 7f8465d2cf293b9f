"""The files of vivit_jax that one training batch crosses, from its file on disk to the update.

  PYTHONPATH=. python docs/batch_path.py [--models]

Runs the trainer's own pieces on configs/synthetic.py (its TFRecord shards in data/synthetic,
written on first use) with the paper configs' input path: augmentation on the device, with
color jitter and random erasing drawn on the host. Python's profiler records every function of
vivit_jax called while

  1. the split is opened (`build_dataset`: the tables, the files, the source),
  2. the first batch is made (`train_iter`: tf.data traces its functions on this first pull),
  3. it is put on the devices (`prefetch_to_device`), and
  4. the update step runs on it (traced, compiled and run: `trainer.make_update`).

and prints the files those functions live in, outside `models/` unless `--models` is given
(the model is one concern however many files it has; issue 29 counted the rest). docs/
architecture.md records the count before and after a restructuring.
"""

from __future__ import annotations

import collections
import os
import sys

import jax

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _recorder(package: str, into: dict):
  def profile(frame, event, arg):
    del arg
    if event == 'call':
      # A function autograph converted runs from a generated file, with its module's globals.
      path = frame.f_globals.get('__file__') or frame.f_code.co_filename
      if path.startswith(package):
        into[os.path.relpath(path, _ROOT)].add(frame.f_code.co_name)

  return profile


def main(argv: list[str]) -> None:
  sys.path.insert(0, _ROOT)
  os.chdir(_ROOT)
  from vivit_jax import config as config_lib
  from vivit_jax.data import build_dataset
  from vivit_jax.data.prefetch import prefetch_to_device
  from vivit_jax.models import build_model
  from vivit_jax.train import parallel, trainer
  from vivit_jax.train import state as state_lib

  config = config_lib.load_config_file('configs/synthetic.py')
  config = config_lib.with_overrides(
    config_lib.resolve(config),
    {
      'dataset_configs.augment_on_device': True,
      'dataset_configs.augmentation_params.do_color_augment': True,
      'dataset_configs.augmentation_params.do_random_erasing': True,
    },
  )
  stages: dict[str, dict[str, set]] = {}

  def recorded(stage: str, fn, *args, **kwargs):
    calls = stages.setdefault(stage, collections.defaultdict(set))
    sys.setprofile(_recorder(os.path.join(_ROOT, 'vivit_jax'), calls))
    try:
      return fn(*args, **kwargs)
    finally:
      sys.setprofile(None)

  dataset = recorded(
    'open the split',
    build_dataset,
    config,
    num_local_devices=jax.local_device_count(),
    process_index=0,
    process_count=1,
    workdir=None,
  )
  meta = dataset.meta
  module = build_model(config, meta.task.num_classes)
  state = state_lib.build_train_state(
    config, module, tuple(meta.input_shape), 100, jax.random.key(0)
  )
  placement = parallel.from_config(config)
  update = trainer.make_update(config, meta, placement)
  state = placement.place_state(state)
  batches = iter(dataset.train_iter(start_step=0))
  batch = recorded('make the batch', next, batches)
  on_device = recorded(
    'put it on the devices',
    lambda: next(prefetch_to_device(iter([batch]), 1, put_array=placement.put_batch)),
  )
  recorded('update', update, state, on_device)

  with_models = '--models' in argv
  union: set[str] = set()
  for stage, calls in stages.items():
    files = sorted(f for f in calls if with_models or '/models/' not in f)
    union.update(files)
    print(f'{stage}: {len(files)} files')
    for f in files:
      print(f'  {f}: {", ".join(sorted(calls[f])[:6])}{" ..." if len(calls[f]) > 6 else ""}')
  where = 'all of vivit_jax' if with_models else 'outside vivit_jax/models/'
  print(f'one batch, disk to update: {len(union)} files ({where})')


if __name__ == '__main__':
  main(sys.argv[1:])

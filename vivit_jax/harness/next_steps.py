"""The end of a training log: what the run wrote, and commands to try next.

Paths are printed as the user typed them (a relative `--workdir` stays
relative), and every command works as printed from the directory the run was
started in: the Python and TensorBoard of the running environment are named by
their path unless they are what `python` and `tensorboard` already mean there
(an activated virtual environment).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from typing import Any

import ml_collections

from vivit_jax import fileio
from vivit_jax.data import synthetic

# Config keys a checkpoint's reader (predict, visualize, export) must see as in training.
_INFERENCE_KEYS = ('model.', 'dataset_configs.')


def _shown(path: str) -> str:
  """`path` relative to the working directory when it lies inside it, else absolute; a URI as is."""
  if fileio.is_uri(path):
    return path
  path = os.path.abspath(path)
  relative = os.path.relpath(path)
  return path if relative.startswith(os.pardir) else relative


def executable(name: str) -> str:
  """How to call `name` (python, tensorboard) of this environment from this shell.

  The bare name when PATH finds this environment's one; else its path.
  """
  here = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), name)
  if not os.path.exists(here):
    here = sys.executable if name == 'python' else ''
  found = shutil.which(name)
  if here and found and os.path.abspath(found) == os.path.abspath(here):
    return name
  if here:
    return _shown(here)
  # TensorBoard missing next to this Python: run its module with this Python.
  return f'{executable("python")} -m tensorboard.main' if name == 'tensorboard' else name


def _overrides(values: Mapping[str, Any]) -> list[str]:
  """--config.<key>=<value> flags for the overrides an inference tool needs too."""
  return [
    shlex.quote(f'--config.{key}={value}')
    for key, value in sorted(values.items())
    if key.startswith(_INFERENCE_KEYS)
  ]


def _written(workdir: str) -> list[tuple[str, str]]:
  """(name, what) for each output of a run that exists in `workdir`."""
  what = []
  checkpoints = os.path.join(workdir, 'checkpoints')
  if fileio.isdir(checkpoints):
    steps = sorted(int(s) for s in fileio.listdir(checkpoints) if s.isdigit())
    listed = f'step{"s" if len(steps) > 1 else ""} {", ".join(str(s) for s in steps)}'
    what.append(('checkpoints/', f'Orbax checkpoints ({listed})' if steps else 'Orbax checkpoints'))
  names = fileio.listdir(workdir)
  if 'results.json' in names:
    what.append(('results.json', 'the final metrics'))
  for name in names:
    if name.startswith('predictions_') and name.endswith('.jsonl'):
      what.append((name, 'top-5 classes and scores of every video'))
  runs = [s for s in ('train', 'validation', 'test') if fileio.isdir(os.path.join(workdir, s))]
  if runs:
    what.append((' '.join(f'{s}/' for s in runs), 'TensorBoard runs, one per split'))
  if 'config.json' in names:
    what.append(('config.json', 'the resolved config'))
  return what


def closing_note(
  config: ml_collections.ConfigDict,
  *,
  workdir: str,
  config_file: str,
  overrides: Mapping[str, Any],
) -> str:
  """The lines printed at the end of training.

  Args:
    config: the run's config.
    workdir: `--workdir` as given.
    config_file: `--config` as given.
    overrides: the `--config.<key>` overrides given, flat (`config_flags.get_override_values`).
  """
  lines = [f'Written to {workdir}:']
  written = _written(workdir)
  width = max((len(name) for name, _ in written), default=0)
  lines += [f'  {name.ljust(width)}  {what}' for name, what in written]
  python, tensorboard = executable('python'), executable('tensorboard')
  common = [f'--config={shlex.quote(config_file)}', *_overrides(overrides)]
  checkpoint = f'--checkpoint={shlex.quote(workdir)}'
  lines.append('Next:')
  dc = config.dataset_configs
  if str(dc.tables.get('train', '')).startswith(synthetic.PREFIX) and dc.base_dir:
    videos = _shown(f'{dc.base_dir.rstrip("/")}_mp4')
    lines += [
      '  # mp4 copies of the first synthetic clips, then the model on the test videos:',
      f'  {python} -m vivit_jax.tools.make_synthetic --output_dir={shlex.quote(videos)} '
      '--format=mp4 --limit=8',
      # predict finds the class names in dataset_configs.base_dir's label_map.txt.
      f'  {python} -m vivit_jax.tools.predict {" ".join(common)} {checkpoint} '
      f'{shlex.quote(os.path.join(videos, "test"))}',
    ]
  else:
    lines += [
      '  # the model on your videos (files or directories):',
      f'  {python} -m vivit_jax.tools.predict {" ".join(common)} {checkpoint} VIDEO.mp4',
    ]
  lines += [
    '  # the curves and confusion matrices of every split, at http://localhost:6006:',
    f'  {tensorboard} --logdir {shlex.quote(workdir)}',
  ]
  return '\n'.join(lines)

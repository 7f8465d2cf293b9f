"""Plain mistakes fail before training, in one line (issue 27, Reliability III).

A bad file in any table (the test table too, read only after training) stops
`build_dataset`; clip settings that contradict each other stop `resolve`; a
path that cannot be written stops a command before its work; the step's
checkpoint is written before the step's evaluation. Commands run as
subprocesses with a timeout where a traceback (or a wait) was the fault.
"""

import io
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import reliability_fakes as rf
from test_data_video_files import make_config, write_csv, write_video
from test_inference_fakes import moving_frames, write_mp4
from test_reliability_bad_inputs import _config
from train_fakes import FakeDataset, TinyModel

from vivit_jax import fileio
from vivit_jax.checkpoints import workdir as workdir_lib
from vivit_jax.config import ConfigError, resolve
from vivit_jax.data import DataError, build_dataset, file_check
from vivit_jax.errors import UnwritablePathError
from vivit_jax.inference import files
from vivit_jax.train import trainer

REPO = rf.REPO
# Generous for this 2-core machine under a parallel suite; each run takes seconds.
RUN_TIMEOUT = 120


def _build(config):
  return build_dataset(config, num_local_devices=1, process_index=0, process_count=1)


_NO_READ_ONLY = 'root with a writable /sys: no directory here refuses writes'


def _read_only_dir(tmp_path, skip: bool = True) -> str | None:
  """A directory where no file can be created; else a skip (or None) that says why not.

  As root (these tests' usual user) permission bits stop nothing, so a chmod
  555 folder would be writable and prove nothing; the kernel's /sys refuses
  new files to every user. As another user, a chmod 555 folder does.
  """
  if os.geteuid() != 0:
    folder = tmp_path / 'read_only'
    folder.mkdir()
    folder.chmod(0o555)
    return str(folder)
  if os.path.isdir('/sys') and fileio.unwritable_reason('/sys', directory=True):
    return '/sys'
  if skip:
    pytest.skip(_NO_READ_ONLY)
  return None


# Tables.


def test_bad_videos_in_the_test_and_validation_tables_stop_the_build(tmp_path):
  for i in range(3):
    write_video(tmp_path / f'v{i}.mp4', 12)
  train = write_csv(tmp_path / 'train.csv', [('v0.mp4', 'cat'), ('v1.mp4', 'dog')])
  (tmp_path / 'empty.mp4').write_bytes(b'')
  (tmp_path / 'folder.mp4').mkdir()
  (tmp_path / 'text.mp4').write_text('not a video')
  test = write_csv(tmp_path / 'test.csv', [('v2.mp4', 'cat'), ('empty.mp4', 'dog')])
  # One bad file: one sentence naming it, its row and its table.
  with pytest.raises(DataError) as info:
    _build(make_config(tmp_path, {'train': train, 'test': test}))
  assert str(info.value) == (
    f'Bad input data: video {tmp_path}/empty.mp4 is empty (0 bytes) ({test} line 3 of the '
    "'test' table). Fix the file or its row in the table, or set "
    'dataset_configs.skip_corrupt=True to skip bad videos.'
  )
  # Several: their count per table and the first few.
  rows = [('v2.mp4', 'cat'), ('gone.mp4', 'dog'), ('folder.mp4', 'cat'), ('text.mp4', 'dog')]
  validation = write_csv(tmp_path / 'val.csv', rows)
  tables = {'train': train, 'validation': validation, 'test': test}
  with pytest.raises(DataError) as info:
    _build(make_config(tmp_path, tables))
  message = str(info.value)
  assert message.startswith(
    "Bad input data: 4 of the 8 videos of the tables cannot be used (3 in 'validation', "
    "1 in 'test'): "
  )
  assert f'video {tmp_path}/gone.mp4 file not found ({validation} line 3 of' in message
  assert f'{tmp_path}/folder.mp4 is a folder without frames' in message
  assert f'{tmp_path}/text.mp4 cannot be opened' in message and '; and 1 more.' in message
  assert '\n' not in message
  # skip_corrupt: the build goes on; the bad videos are skipped when met.
  ds = _build(make_config(tmp_path, tables, skip_corrupt=True))
  assert ds.meta.num_eval_examples == 4


def test_a_directory_or_a_video_in_place_of_a_tfrecord_shard_stops_the_build(tmp_path):
  data = str(tmp_path / 'data')
  table = rf.write_tfrecords(data, shards=2, per_shard=2)
  config = resolve(
    {
      'batch_size': 2,
      'dataset_configs': {
        'base_dir': data,
        'tables': {'train': table, 'test': 'test-*'},
        'num_classes': 5,
        'min_resize': 16,
        'crop_size': 16,
      },
    }
  )
  os.makedirs(os.path.join(data, 'test-00000'))
  with pytest.raises(
    DataError, match=r"data file .*test-00000 is a directory \(the 'test' table\)"
  ):
    _build(config)
  os.rmdir(os.path.join(data, 'test-00000'))
  os.rename(
    write_mp4(tmp_path / 'clip.mp4', moving_frames(4, size=(8, 8))),
    os.path.join(data, 'test-00000'),
  )
  with pytest.raises(DataError, match=r'test-00000 is not a TFRecord file, or is cut short'):
    _build(config)


def test_a_stalled_check_is_abandoned_and_named():
  def check(path):
    if path == 'slow':
      time.sleep(30)
    return file_check.Problem('is bad') if path == 'bad' else None

  began = time.monotonic()
  problems = file_check.find_problems(['ok', 'slow', 'bad'], check, timeout_s=0.5)
  assert time.monotonic() - began < 5
  assert problems[2].text == 'is bad'
  assert problems[1].text.startswith('stalled: opening it took more than 0.5 s')
  assert 0 not in problems


# Config.


@pytest.mark.parametrize(
  'data,message',
  [
    (
      {'crop_size': 64, 'min_resize': 32},
      r'^dataset_configs.crop_size=64 is larger than dataset_configs.min_resize=32: .* '
      r'\(--config.dataset_configs.min_resize=64; .*\), or lower crop_size.$',
    ),
    ({'min_resize': -1}, 'min_resize=-1 must be positive, or 0'),
    ({'num_test_clips': 0}, r'num_test_clips=0 must be at least 1'),
    ({'fps': 0.0}, r'fps=0.0 must be positive'),
    (
      {'augmentation_params': {'do_jitter_scale': True, 'scale_min_factor': 1.5}},
      r'scale_min_factor=1.5 and scale_max_factor=1.33 are no range of zoom factors',
    ),
    ({'augmentation_params': {'prob_color_drop': 2.0}}, r'prob_color_drop=2.0 is a probability'),
  ],
)
def test_clip_settings_that_contradict_each_other_are_refused_by_resolve(data, message):
  with pytest.raises(ConfigError, match=message):
    resolve({'dataset_configs': data})


def test_a_run_with_such_settings_stops_before_writing_anything(tmp_path):
  config = _config(steps=1)
  config.dataset_configs.crop_size = 64
  config.dataset_configs.min_resize = 32
  with pytest.raises(ConfigError, match='crop_size=64 is larger than'):
    trainer.train_and_evaluate(config, str(tmp_path / 'work'))
  assert not (tmp_path / 'work').exists()


def test_min_resize_zero_keeps_the_frames_and_any_crop():
  assert resolve({'dataset_configs': {'min_resize': 0, 'crop_size': 512}}).dataset_configs


def test_the_hint_for_another_crop_size_names_min_resize_too():
  def saved_config(crop_size, min_resize):  # As config.json holds it.
    data = {'crop_size': crop_size, 'min_resize': min_resize}
    return json.loads(resolve({'dataset_configs': data}).to_json_best_effort())

  saved = saved_config(64, 72)
  config = resolve({'dataset_configs': {'crop_size': 32, 'min_resize': 32}})
  assert workdir_lib.config_differences(saved, config) == [
    'dataset_configs.crop_size=64 (this config: 32)',
    'dataset_configs.min_resize=72 (this config: 32)',
  ]
  # The same min_resize on both sides: nothing more to say.
  config = resolve({'dataset_configs': {'crop_size': 32, 'min_resize': 64}})
  assert workdir_lib.config_differences(saved_config(64, 64), config) == [
    'dataset_configs.crop_size=64 (this config: 32)'
  ]


class _SmallFrames:  # A classifier whose config cannot cut its views from a video it read.
  config = resolve({'dataset_configs': {'crop_size': 32, 'min_resize': 0}})

  def decode(self, path):
    return np.zeros((5, 16, 24, 3), np.uint8)

  def views(self, frames):
    raise ValueError('Input to reshape is a tensor with 0 values\n(a TensorFlow page of detail)')


def test_predict_blames_the_settings_not_a_video_it_read():
  err = io.StringIO()
  failures = files.predict_files(
    _SmallFrames(), ['good.mp4'], out=io.StringIO(), err=err, progress=False
  )
  assert failures == 1
  assert 'cannot read the video' not in err.getvalue()
  assert (
    'ERROR: good.mp4: was read (5 frames of 24x16 pixels) but its views cannot be cut with '
    'dataset_configs.crop_size=32 and min_resize=0 of the config (ValueError: Input to '
    'reshape is a tensor with 0 values)\n'
  ) in err.getvalue()


# The trainer.


class _FailingEvaluation(FakeDataset):
  def eval_iter(self, split='validation'):
    raise DataError('Bad input data: video bad.mp4 cannot be decoded.')


def test_the_checkpoint_of_a_step_is_written_before_its_evaluation_fails(tmp_path):
  config = _config(steps=6)
  config.checkpoint_steps = 2
  config.log_eval_steps = 6
  workdir = str(tmp_path / 'work')
  with pytest.raises(DataError, match='bad.mp4'):
    trainer.train_and_evaluate(
      config, workdir, dataset=_FailingEvaluation(num_devices=8), module=TinyModel(6)
    )
  # Before: steps 2 and 4 only; the training of steps 5 and 6 was lost with the evaluation.
  assert rf.saved_steps(os.path.join(workdir, 'checkpoints')) == [2, 4, 6]
  assert not os.path.exists(os.path.join(workdir, 'results.json'))
  # With the data fixed, the rerun trains nothing and runs the final evaluation it missed.
  results = trainer.train_and_evaluate(
    config, workdir, dataset=FakeDataset(num_devices=8), module=TinyModel(6)
  )
  assert results['step'] == 6 and 'validation' in results and 'already_finished' not in results
  assert (
    fileio.read_json(os.path.join(workdir, 'results.json'))['validation'] == (results['validation'])
  )
  assert rf.saved_steps(os.path.join(workdir, 'checkpoints')) == [2, 4, 6]


def test_a_workdir_that_cannot_be_written_is_one_line_and_nothing_is_left(tmp_path):
  a_file = tmp_path / 'results.txt'
  a_file.write_text('mine')
  config = _config(steps=1)
  with pytest.raises(UnwritablePathError) as info:
    trainer.train_and_evaluate(
      config, str(a_file), dataset=FakeDataset(num_devices=8), module=TinyModel(6)
    )
  assert str(info.value) == (
    f'Cannot write the workdir {a_file}: {a_file} is a file, not a directory. Give a '
    '--workdir you can write to.'
  )
  assert a_file.read_text() == 'mine'
  read_only = _read_only_dir(tmp_path)
  for workdir in (read_only, os.path.join(read_only, 'vivit-new-run')):  # Existing, and new.
    before = sorted(os.listdir(read_only))
    with pytest.raises(UnwritablePathError, match=f'no file can be created in {read_only} '):
      trainer.train_and_evaluate(
        config, workdir, dataset=FakeDataset(num_devices=8), module=TinyModel(6)
      )
    assert sorted(os.listdir(read_only)) == before


# Commands: one line on stderr, exit status 1, no traceback.


def _start(args, cwd=REPO):
  return subprocess.Popen(
    [sys.executable, *args],
    cwd=str(cwd),
    env=dict(
      rf.main_env(os.environ.get('JAX_COMPILATION_CACHE_DIR', ''), devices=1), PYTHONPATH=REPO
    ),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _one_line(proc, started) -> str:
  try:
    _, stderr = proc.communicate(timeout=max(1, RUN_TIMEOUT - (time.time() - started)))
  except subprocess.TimeoutExpired:
    proc.kill()
    pytest.fail(f'{proc.args} still ran after {RUN_TIMEOUT} s')
  errors = [line for line in stderr.splitlines() if ': error: ' in line]
  assert proc.returncode == 1 and len(errors) == 1 and 'Traceback' not in stderr, stderr[-3000:]
  return errors[0].split(': error: ', 1)[1]


def _tool(name: str, *flags: str) -> list[str]:
  return ['-m', f'vivit_jax.tools.{name}', *flags]


def test_commands_end_in_one_line_before_their_work(tmp_path):
  videos = tmp_path / 'videos'
  videos.mkdir()
  write_mp4(videos / 'a.mp4', moving_frames(8, size=(16, 16)))
  for i in range(3):
    write_video(videos / f'v{i}.mp4', 12, label=i)
  (videos / 'empty.mp4').write_bytes(b'')
  write_csv(videos / 'train.csv', [(f'v{i}.mp4', 'abc'[i]) for i in range(3)])
  write_csv(videos / 'test.csv', [('v0.mp4', 'a'), ('empty.mp4', 'b')])
  (tmp_path / 'labels.txt').write_text('a\nb\n')
  write_csv(tmp_path / 'wasp.csv', [('v0.mp4', 'a'), ('v1.mp4', 'wasp')])
  video_config = tmp_path / 'video_config.py'
  video_config.write_text(
    'from configs import synthetic\n\n\ndef get_config():\n  c = synthetic.get_config()\n'
    "  c.dataset_name = 'video_files'\n  d = c.dataset_configs\n"
    f'  d.base_dir = {str(videos)!r}\n  d.generate_synthetic_if_missing = False\n'
    "  d.tables = {'train': 'train.csv', 'test': 'test.csv'}\n  d.examples_per_subset = {}\n"
    '  d.num_classes = 3\n  d.video_fps = 8.0\n  return c\n'
  )
  out = f'--output_dir={tmp_path / "o"}'
  runs = {
    'bad test video': ['main.py', f'--config={video_config}', f'--workdir={tmp_path / "w1"}'],
    'csv is a directory': _tool('make_tfrecords', f'--csv={videos}', out),
    'label not in map': _tool(
      'make_tfrecords', f'--csv={tmp_path / "wasp.csv"}', f'--label_map={tmp_path}/labels.txt', out
    ),
  }
  read_only = _read_only_dir(tmp_path, skip=False)
  model = ['--config=configs/synthetic.py', f'--checkpoint={tmp_path / "no_checkpoint"}']
  outputs = {
    'read-only output_dir': f'--output_dir={read_only}/shards',
    'read-only export': f'--output={read_only}/model',
    'read-only visualize': f'--out={read_only}/attention.png',
    'read-only predict': f'--output={read_only}/predictions.jsonl',
  }
  if read_only:
    video = str(videos / 'a.mp4')
    runs['read-only output_dir'] = _tool(
      'make_tfrecords', f'--csv={videos}/train.csv', outputs['read-only output_dir']
    )
    runs['read-only export'] = _tool('export', *model, outputs['read-only export'])
    runs['read-only visualize'] = _tool('visualize', *model, outputs['read-only visualize'], video)
    runs['read-only predict'] = _tool('predict', *model, outputs['read-only predict'], video)
  started = time.time()
  procs = {name: _start(args) for name, args in runs.items()}
  # README.md's own command, run where there is no train.csv.
  procs['missing csv'] = _start(_tool('make_tfrecords', '--csv=train.csv', out), cwd=tmp_path)
  lines = {name: _one_line(proc, started) for name, proc in procs.items()}
  assert lines['bad test video'].startswith(
    f'Bad input data: video {videos}/empty.mp4 is empty (0 bytes) ({videos}/test.csv line 3 '
    "of the 'test' table)."
  )
  assert lines['missing csv'].startswith(
    f'--csv=train.csv does not exist (looked for {tmp_path}/train.csv).'
  )
  assert lines['csv is a directory'].startswith(f'--csv={videos} is a directory')
  assert lines['label not in map'].startswith(f"Labels not in {tmp_path}/labels.txt: ['wasp']")
  # Nothing was left behind by the runs that failed before their work.
  for name in ('w1', 'o'):
    assert not (tmp_path / name).exists(), name
  if not read_only:
    pytest.skip(_NO_READ_ONLY)
  no_file = f'no file can be created in {read_only} ('
  for name, flag in outputs.items():
    assert lines[name].startswith(f'Cannot write {flag}: {no_file}'), lines[name]

"""Mistakes a user makes print one line naming the thing and the fix, and lose nothing.

Each message is made here by the code that prints it; docs/reliability.md quotes
them (its table between the `messages` markers), and the last test checks every
quote against these messages, so the doc cannot drift from the code.
"""

import json
import os
import re
import subprocess
import sys

import pytest
from test_data_video_files import make_config as make_video_config
from test_data_video_files import write_csv, write_video
from test_inference_fakes import random_params, tiny_config, write_orbax_workdir
from test_reliability_bad_inputs import _config
from train_fakes import FakeDataset, TinyModel

from vivit_jax import errors
from vivit_jax.config import ConfigError, resolve
from vivit_jax.data import DataError, build_dataset
from vivit_jax.data.conversion import build_label_map
from vivit_jax.data.video_io import Row
from vivit_jax.errors import UnwritablePathError
from vivit_jax.inference import VideoClassifier, files, load_params
from vivit_jax.inference.convert import convert_checkpoint
from vivit_jax.tools import cli
from vivit_jax.train import trainer
from vivit_jax.train.checkpointing import CheckpointMismatchError
from vivit_jax.train.workdir_lock import WorkdirInUseError, WorkdirLock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, 'docs', 'reliability.md')


def _message(call, error=errors.UserError) -> str:
  with pytest.raises(error) as info:
    call()
  # A CheckpointSaveError(errno, text) keeps its text in strerror, as errors.exit_with prints it.
  return getattr(info.value, 'strerror', None) or str(info.value)


def _unset_base_dir_config():
  config = tiny_config()
  config.batch_size = 8
  config.num_training_steps = 1
  config.dataset_configs.tables = {'test': 'test@1', 'train': 'train@2'}
  return resolve(config)


def _listing(path):
  return sorted(os.listdir(path)) if os.path.isdir(path) else None


@pytest.fixture(scope='module')
def messages(tmp_path_factory):
  """{mistake: the message printed for it}, each made by the code that prints it."""
  root = tmp_path_factory.mktemp('messages')
  old_cwd = os.getcwd()
  os.chdir(REPO)  # Config files are named relative to the repository root, as in the docs.
  try:
    out = {}
    for name, arg in (
      ('Misspelt config key', '--config.model.hiden_size=10'),
      ('Config key at the wrong level', '--config.num_frames=8'),
    ):
      out[name] = _message(
        lambda a=arg: cli.check_command_line(['main.py', '--config=configs/synthetic.py', a]),
        ConfigError,
      )
    out['Missing config file'] = _message(
      lambda: cli.check_command_line(['main.py', '--config=configs/synthetic_typo.py'])
    )
  finally:
    os.chdir(old_cwd)

  # Training: nothing is created or left in the workdir.
  kept = root / 'kept'
  kept.mkdir()
  (kept / 'notes.txt').write_text('mine')
  out['Data location unset'] = _message(
    lambda: trainer.train_and_evaluate(_unset_base_dir_config(), str(kept)), DataError
  )
  assert _listing(kept) == ['notes.txt']
  config = _config(steps=1)
  config.batch_size = 12
  fake = FakeDataset(num_devices=8)
  out['Batch size that does not split over the devices'] = _message(
    lambda: trainer.train_and_evaluate(
      config, str(root / 'new'), dataset=FakeDataset(num_devices=8)
    ),
    ConfigError,
  )
  assert _listing(root / 'new') is None

  workdir = str(root / 'work')
  first = _config(steps=1)
  first.model.hidden_size = 16
  trainer.train_and_evaluate(
    first, workdir, dataset=FakeDataset(num_devices=8), module=TinyModel(6, 16)
  )
  second = _config(steps=2)
  second.model.hidden_size = 32
  before = _listing(workdir)
  out['Training in the workdir of another config'] = _message(
    lambda: trainer.train_and_evaluate(second, workdir, dataset=fake, module=TinyModel(6, 32)),
    CheckpointMismatchError,
  )
  assert _listing(workdir) == before

  # Inference and conversion.
  small = tiny_config()
  write_orbax_workdir(str(root / 'run'), random_params(small), step=5)
  with open(root / 'run' / 'config.json', 'w') as f:
    json.dump(json.loads(resolve(small).to_json_best_effort()), f)
  out['Missing checkpoint'] = _message(lambda: load_params(str(root / 'nothing')))
  out['Step that was not saved'] = _message(lambda: load_params(str(root / 'run'), step=9))
  wide = tiny_config()
  wide.model.hidden_size = 32
  out['Checkpoint of another config'] = _message(
    lambda: VideoClassifier.from_checkpoint(wide, str(root / 'run'))
  )
  gap = tiny_config()
  gap.model.classifier = 'gap'
  out['HF export of a model HF cannot hold'] = _message(
    lambda: convert_checkpoint(gap, str(root / 'run'), str(root / 'hf'), to='huggingface')
  )
  assert not (root / 'hf').exists()

  # Issue 27: before training, in one line.
  out['Crop larger than the resized frames'] = _message(
    lambda: resolve({'dataset_configs': {'crop_size': 64, 'min_resize': 32}}), ConfigError
  )
  videos = root / 'videos'
  videos.mkdir()
  write_video(videos / 'a.mp4', 12)
  (videos / 'empty.mp4').write_bytes(b'')
  tables = {
    'train': write_csv(videos / 'train.csv', [('a.mp4', 'cat')]),
    'test': write_csv(videos / 'test.csv', [('a.mp4', 'cat'), ('empty.mp4', 'cat')]),
  }
  out['Bad video in the test table'] = _message(
    lambda: build_dataset(
      make_video_config(videos, tables), num_local_devices=1, process_index=0, process_count=1
    ),
    DataError,
  )
  a_file = root / 'notes.txt'
  a_file.write_text('mine')
  out['Workdir that is a file'] = _message(
    lambda: trainer.train_and_evaluate(
      _config(steps=1), str(a_file), dataset=fake, module=TinyModel(6, 16)
    ),
    UnwritablePathError,
  )
  assert a_file.read_text() == 'mine'
  out['Output that cannot be written'] = _message(
    lambda: cli.check_writable('output_dir', str(a_file), directory=True), UnwritablePathError
  )
  label_map = root / 'label_map.txt'
  label_map.write_text('cat\ndog\n')
  out['Label missing from the label map'] = _message(
    lambda: build_label_map([Row('a.mp4', 'cat'), Row('b.mp4', 'wasp')], str(label_map)),
    DataError,
  )

  # Issue 27, nothing silently wrong: another model's workdir, a workdir in use, empty folders.
  same_tree = _config(steps=2)
  same_tree.model.hidden_size = 16
  same_tree.model.attention_config.type = 'factorized_dot_product_attention'
  before = _listing(workdir)
  out['Training in the workdir of another model'] = _message(
    lambda: trainer.train_and_evaluate(same_tree, workdir, dataset=fake, module=TinyModel(6, 16)),
    CheckpointMismatchError,
  )
  holder = WorkdirLock(workdir, chief=True)
  holder.acquire()
  try:
    out['Training in a workdir another run holds'] = _message(
      lambda: trainer.train_and_evaluate(first, workdir, dataset=fake, module=TinyModel(6, 16)),
      WorkdirInUseError,
    )
  finally:
    holder.release()
  assert _listing(workdir) == before
  classes = root / 'classes'
  write_video(classes / 'cat' / 'a.mp4', 12)
  (classes / 'emu').mkdir()
  out['Class folder without videos'] = _message(
    lambda: build_dataset(
      make_video_config(classes, {'train': '.'}),
      num_local_devices=1,
      process_index=0,
      process_count=1,
    ),
    DataError,
  )
  (root / 'no_videos').mkdir()
  out['Directory without videos given to predict'] = _message(
    lambda: files.expand([str(root / 'no_videos')]), DataError
  )
  return out


def test_each_message_names_the_thing_and_the_fix(messages):
  m = messages
  assert (
    "Unknown config key 'model.hiden_size' (given as --config.model.hiden_size=10). "
    in m['Misspelt config key']
  )
  assert "Did you mean 'model.hidden_size'?" in m['Misspelt config key']
  assert "Did you mean 'dataset_configs.num_frames'?" in m['Config key at the wrong level']
  assert "'configs/synthetic_typo.py' does not exist" in m['Missing config file']
  # Training asked for: the train table is named (not the test table listed first).
  unset = m['Data location unset']
  assert "the 'train' table 'train@2'" in unset and 'dataset_configs.base_dir is unset' in unset
  assert os.getcwd() in unset and 'train-00000-of-00002' in unset
  batch = m['Batch size that does not split over the devices']
  assert batch.startswith('config.batch_size=12 does not split evenly over the 8 devices')
  assert 'a multiple of 8, e.g. 8 or 16' in batch
  other = m['Training in the workdir of another config']
  assert 'which sets model.hidden_size=16 (this config: 32)' in other
  assert 'Nothing in the directory was changed.' in other
  assert 'the steps there are 5' in m['Step that was not saved']
  assert 'which sets model.hidden_size=16 (this config: 32)' in m['Checkpoint of another config']
  hf = m['HF export of a model HF cannot hold']
  assert "model.classifier='token' (this config: 'gap')" in hf
  for name, message in messages.items():
    assert '\n' not in message and '\\n' not in message, name


def _doc_quotes() -> dict[str, str]:
  with open(DOC) as f:
    text = f.read()
  table = text.split('<!-- messages:begin -->')[1].split('<!-- messages:end -->')[0]
  rows = re.findall(r'^\| ([^|]+?) \| `(.+)` \|$', table, flags=re.M)
  return {name: quote for name, quote in rows}


def test_the_doc_quotes_the_real_messages(messages):
  quotes = _doc_quotes()
  assert sorted(quotes) == sorted(messages)
  for name, quote in quotes.items():
    # '...' in a quote stands for a path or a list that depends on the machine.
    pattern = '.*'.join(re.escape(part) for part in quote.split('...'))
    assert re.fullmatch(pattern, messages[name]), (
      f'{name}:\n  doc:  {quote}\n  code: {messages[name]}'
    )


def _cli(args, **env):
  return subprocess.run(
    [sys.executable, *args],
    cwd=REPO,
    env=dict(os.environ, **env),
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_main_prints_one_line_and_no_traceback_and_creates_nothing(messages, tmp_path):
  workdir = tmp_path / 'work'
  done = _cli(
    [
      'main.py',
      '--config=configs/synthetic.py',
      f'--workdir={workdir}',
      '--config.model.hiden_size=10',
    ]
  )
  assert done.returncode == 1
  assert 'Traceback' not in done.stderr
  printed = [line for line in done.stderr.splitlines() if line.startswith('main.py: error: ')]
  assert printed == [f'main.py: error: {messages["Misspelt config key"]}']
  hint = f'(--verbose or {errors.TRACEBACK_ENV}=1 shows the traceback.)'
  assert done.stderr.rstrip().endswith(printed[0] + '\n' + hint)
  assert not workdir.exists()


def test_a_tool_shows_the_traceback_when_asked(tmp_path):
  args = [
    '-m',
    'vivit_jax.tools.predict',
    '--config=configs/synthetic.py',
    f'--checkpoint={tmp_path / "none"}',
    'clip.mp4',
  ]
  done = _cli(args, **{errors.TRACEBACK_ENV: '1'})
  assert done.returncode == 1
  assert 'Traceback' in done.stderr
  assert f'MissingFileError: Checkpoint {tmp_path / "none"} does not exist.' in done.stderr

"""Every way a training run ends ends the process, within seconds (issue 27).

A bad entry in a `video_files` train table is one line on stderr and exit
status 1; Ctrl-C (SIGINT) saves the current step as SIGTERM does, and a rerun
resumes from it. Before, both left the process blocked for ever in a tf.data
iterator's destructor at interpreter exit. Every run is a subprocess with a
timeout: a hang fails its test instead of stopping the suite.
"""

import os
import re
import signal
import subprocess
import time

import av
import pytest
import reliability_fakes as rf
from test_inference_fakes import moving_frames, write_mp4

from vivit_jax.train import meters
from vivit_jax.train.checkpointing import PreemptionWatcher

# Generous for this 2-core machine under a parallel suite; a hang is for ever.
RUN_TIMEOUT = 90
# From SIGINT to the end of the process: a step, a checkpoint, shutting down.
STOP_SECONDS = 30

VIDEO_CONFIG = """
from configs import synthetic


def get_config():
  c = synthetic.get_config()
  c.dataset_name = 'video_files'
  d = c.dataset_configs
  d.base_dir = {data_dir!r}
  d.generate_synthetic_if_missing = False
  d.tables = {{'train': 'train.csv'}}
  d.examples_per_subset = {{}}
  d.num_classes = 3
  d.video_fps = 8.0
  d.num_frames = 4
  d.stride = 1
  d.min_resize = 16
  d.crop_size = 16
  d.shuffle_buffer_size = 8
  d.do_multicrop_test = False
  d.decode_workers = 2
  c.model.update(hidden_size=16, num_heads=2, mlp_dim=16, num_layers=1)
  c.batch_size = 4
  c.num_training_steps = {steps}
  c.lr_configs.warmup_steps = 1
  c.lr_configs.steps_per_cycle = {steps}
  c.checkpoint_steps = {steps}
  c.log_summary_steps = 1
  c.count_flops = False
  c.write_summary = False
  return c
"""


def _faststart_mp4(path, frames) -> bytes:
  """Writes u8[N, H, W, 3] as an mp4 whose index comes before the frames; returns its bytes."""
  with av.open(str(path), 'w', options={'movflags': 'faststart'}) as container:
    stream = container.add_stream('libx264', rate=8)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = 'yuv444p'
    stream.options = {'crf': '0', 'preset': 'ultrafast'}
    for frame in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
    container.mux(stream.encode())
  return path.read_bytes()


def _video_run(tmp_path, bad: str | None = None, steps: int = 4):
  """Six tiny mp4s of 3 classes in train.csv, plus one `bad` entry; returns the config path."""
  data = tmp_path / 'data'
  data.mkdir()
  rows = [f'v{i}.mp4,{"abc"[i % 3]}' for i in range(6)]
  for i in range(6):
    write_mp4(data / f'v{i}.mp4', moving_frames(12, size=(16, 24), seed=i))
  if bad == 'empty':
    (data / 'bad.mp4').write_bytes(b'')
  elif bad == 'truncated':
    # Cut short after its header (index first, then the frames): only decoding finds it.
    whole = _faststart_mp4(data / 'whole.mp4', moving_frames(12, size=(16, 24)))
    (data / 'bad.mp4').write_bytes(whole[: len(whole) // 2])
  elif bad == 'directory':
    (data / 'bad.mp4').mkdir()
  if bad:
    rows.insert(0, 'bad.mp4,a')  # 'missing': named, never written.
  (data / 'train.csv').write_text('video_path,label\n' + '\n'.join(rows) + '\n')
  config = tmp_path / 'config.py'
  config.write_text(VIDEO_CONFIG.format(data_dir=str(data), steps=steps))
  return str(config)


# main.py with SIGINT's default action: a background job of a shell script (this
# suite, perhaps) inherits an ignored SIGINT, which Python and main.py keep ignoring.
_WITH_SIGINT = (
  'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); '
  'os.execv(sys.executable, [sys.executable, *sys.argv[1:]])'
)


def _start(config: str, workdir: str, cache: str, log_path: str, *flags: str):
  log = open(log_path, 'w')
  python, *args = rf.main_command(config, workdir, *flags)
  proc = subprocess.Popen(
    [python, '-c', _WITH_SIGINT, *args],
    cwd=rf.REPO,
    env=rf.main_env(cache, devices=1),
    stdout=log,
    stderr=subprocess.STDOUT,
    text=True,
  )
  return proc, log


def _finish(proc, log, log_path: str, timeout: float) -> tuple[int, str]:
  """Waits up to `timeout` s; a process still running then is killed and fails the test."""
  try:
    proc.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    log.close()
    with open(log_path) as f:
      pytest.fail(f'main.py still ran after {timeout:.0f} s (a hang):\n{f.read()[-3000:]}')
  log.close()
  with open(log_path) as f:
    return proc.returncode, f.read()


def test_a_bad_train_video_is_one_line_and_the_process_ends(tmp_path):
  # The check before the first step names the first three; only decoding finds
  # 'truncated', in the running pipeline: the path that used to hang.
  cases = ('missing', 'empty', 'directory', 'truncated')
  runs = {}
  for bad in cases:  # In parallel: each mostly waits for its imports and the data.
    root = tmp_path / bad
    root.mkdir()
    log_path = str(root / 'log.txt')
    config = _video_run(root, bad)
    runs[bad] = (
      time.time(),
      log_path,
      *_start(config, str(root / 'work'), str(tmp_path / 'cache'), log_path),
    )
  for bad, (started, log_path, proc, log) in runs.items():
    code, text = _finish(proc, log, log_path, RUN_TIMEOUT - (time.time() - started))
    errors = [line for line in text.splitlines() if line.startswith('main.py: error: ')]
    assert code == 1 and len(errors) == 1, f'{bad}:\n{text[-3000:]}'
    assert 'bad.mp4' in errors[0] and 'Traceback' not in text, f'{bad}:\n{text[-3000:]}'


def _interrupt_and_resume(config: str, tmp_path):
  """Sends SIGINT once training is under way; checks the stop, the checkpoint and the resume."""
  workdir, cache = str(tmp_path / 'work'), str(tmp_path / 'cache')
  log_path = str(tmp_path / 'log.txt')
  proc, log = _start(config, workdir, cache, log_path)
  deadline = time.time() + RUN_TIMEOUT
  while time.time() < deadline and proc.poll() is None:
    with open(log_path) as f:
      if re.search(r'\[\d+\] collection=train', f.read()):  # A step's summary: mid-training.
        break
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  sent = time.time()
  code, text = _finish(proc, log, log_path, STOP_SECONDS)
  assert time.time() - sent < STOP_SECONDS
  assert code == 0 and 'Traceback' not in text, text[-3000:]
  assert 'Received SIGINT' in text and 'Press Ctrl-C again' in text, text[-3000:]
  saved = re.findall(r'Preempted: saved step (\d+); rerun the same command to resume', text)
  assert saved, text[-3000:]
  step = int(saved[0])
  assert rf.saved_steps(os.path.join(workdir, 'checkpoints'))[-1] == step

  # The rerun resumes from that step and finishes one step later.
  log_path = str(tmp_path / 'rerun.txt')
  proc, log = _start(config, workdir, cache, log_path, f'--config.num_training_steps={step + 1}')
  code, text = _finish(proc, log, log_path, RUN_TIMEOUT)
  assert code == 0 and f'Resumed from step {step}' in text, text[-3000:]


def test_ctrl_c_during_video_files_training_saves_exits_and_resumes(tmp_path):
  _interrupt_and_resume(_video_run(tmp_path, steps=100_000), tmp_path)


def test_ctrl_c_during_tfrecord_training_saves_exits_and_resumes(tmp_path):
  data_dir = str(tmp_path / 'data')
  rf.write_tfrecords(data_dir)
  config = rf.write_config(
    str(tmp_path / 'config.py'), data_dir, steps=100_000, checkpoint_steps=100_000
  )
  _interrupt_and_resume(config, tmp_path)


def test_sigint_asks_for_a_stop_once_and_a_second_one_is_left_to_the_system():
  original = signal.getsignal(signal.SIGINT)
  # Python's own Ctrl-C handler, whatever the test worker set (the watcher leaves an
  # ignored SIGINT ignored, by design; a worker may start with SIGINT ignored).
  signal.signal(signal.SIGINT, signal.default_int_handler)
  previous = signal.default_int_handler
  watcher = PreemptionWatcher()
  try:
    assert not watcher.should_stop(1)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.1)  # The handler runs at the next bytecode of the main thread.
    assert watcher.should_stop(2)
    # No KeyboardInterrupt was raised; a second Ctrl-C would end the process at once.
    assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
  finally:
    watcher.close()
    restored = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, original)
  assert restored is previous


def test_the_progress_note_gives_a_real_eta_and_the_time_taken_at_the_end():
  note = meters.ProgressNote(num_train_steps=1000, every_secs=60.0)
  assert not note(1, t=100.0)  # The first step (compiling): where the clock starts.
  assert not note(2, t=130.0)  # Less than a minute since.
  # 400 steps in 160 s: 2.5 steps/s, 599 steps left in 239.6 s.
  assert note.note(401, 260.0) == '2.5 steps/s, 40.1% (401/1000), ETA: 4m00s'
  assert note.note(990, 100.0 + 989 / 2.5) == '2.5 steps/s, 99.0% (990/1000), ETA: 4s'
  assert note(1000, t=500.0)  # The last step always has its note.
  assert note.note(1000, 500.0) == '2.5 steps/s, 100.0% (1000/1000), steps 2..1000 took 6m40s'
  assert meters.duration(7500) == '2h05m' and meters.duration(59.6) == '1m00s'

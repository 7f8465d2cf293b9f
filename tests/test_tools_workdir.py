"""A training workdir, given by a relative path from another directory, is a checkpoint to
every tool: predict, visualize, export, convert_checkpoint (also to HF), load_params,
VideoClassifier.from_checkpoint and init_from.checkpoint_path.

One tiny token-classifier Model 1 is trained by main.py into a relative workdir.
"""

import importlib.util
import json
import os
import subprocess
import sys
import uuid

import jax
import numpy as np
import pytest
from test_inference_fakes import moving_frames, write_mp4
from train_fakes import TINY_CLASSES, tiny_main_overrides, write_tiny_split

from vivit_jax import config as config_lib
from vivit_jax import fileio
from vivit_jax.checkpoints import formats, load, safetensors
from vivit_jax.errors import MissingFileError
from vivit_jax.inference import VideoClassifier, load_params
from vivit_jax.inference.convert import convert_checkpoint
from vivit_jax.models import build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'configs', 'synthetic.py')


def tiny_overrides(data_dir: str, steps: int = 2) -> list[str]:
  """The tiny Model 1 with a class token (what HF export needs), a checkpoint every step."""
  return tiny_main_overrides(
    data_dir,
    steps,
    model__classifier='token',
    log_eval_steps=steps,
    checkpoint_steps=1,
    count_flops=False,
  )


def _run(args, cwd):
  env = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run(
    [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
  )


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """(root, config): ROOT/work trained by main.py from ROOT with --workdir=work; ROOT/clip.mp4."""
  root = tmp_path_factory.mktemp('relative')
  data = root / 'data'
  data.mkdir()
  for split, num in (('train', 16), ('validation', 7), ('test', 5)):
    write_tiny_split(str(data), split, num)
  write_mp4(root / 'clip.mp4', moving_frames(12, size=(16, 20)))
  (root / 'elsewhere').mkdir()
  done = _run(
    [os.path.join(REPO, 'main.py'), f'--config={CONFIG}', '--workdir=work']
    + tiny_overrides(str(data)),
    cwd=root,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert sorted(os.listdir(root / 'work' / 'checkpoints')) == ['1', '2']
  with open(root / 'work' / 'config.json') as f:
    config = config_lib.resolve(json.load(f))
  return root, config


def _relative_args(root) -> list[str]:
  return [f'--config={CONFIG}', '--checkpoint=../work', *tiny_overrides(str(root / 'data'))]


@pytest.fixture(scope='module')
def relative_predict(run):
  """predict.py run from ROOT/elsewhere on ../clip.mp4 with --checkpoint=../work."""
  root, _ = run
  args = [*_relative_args(root), '--top_k=1', '../clip.mp4']
  predict = _run(['-m', 'vivit_jax.tools.predict', *args], root / 'elsewhere')
  assert predict.returncode == 0, predict.stderr[-3000:]
  return predict


def test_every_tool_reads_a_relative_workdir_from_another_directory(run, relative_predict):
  root, _ = run
  here = root / 'elsewhere'
  args = _relative_args(root)
  predict = relative_predict
  # The label names come from the dataset's label map, found through the workdir.
  assert any(name in predict.stdout for name in TINY_CLASSES), predict.stdout
  visualize = _run(['-m', 'vivit_jax.tools.visualize', *args, '--out=a.png', '../clip.mp4'], here)
  assert visualize.returncode == 0, visualize.stderr[-3000:]
  assert (here / 'a.png').stat().st_size > 0
  export = _run(['-m', 'vivit_jax.tools.export', *args, '--step=1', '--output=saved'], here)
  assert export.returncode == 0, export.stderr[-3000:]
  assert (here / 'saved' / 'saved_model.pb').exists()
  convert = _run(['-m', 'vivit_jax.tools.convert_checkpoint', *args, '--output=conv'], here)
  assert convert.returncode == 0, convert.stderr[-3000:]
  assert (here / 'conv' / 'checkpoint').exists()
  assert (here / 'conv' / 'label_map.txt').read_text().split() == list(TINY_CLASSES)


def test_library_entry_points_read_a_relative_workdir(run, monkeypatch):
  root, config = run
  monkeypatch.chdir(root / 'elsewhere')
  latest, path = load_params('../work')
  assert path == str(root / 'work' / 'checkpoints' / '2' / 'default')
  first, _ = load_params('../work', step=1)
  assert jax.tree_util.tree_structure(first) == jax.tree_util.tree_structure(latest)
  assert not np.array_equal(first['embedding']['kernel'], latest['embedding']['kernel'])
  with pytest.raises(
    MissingFileError, match=r'No checkpoint of step 7 .* the steps there are 1, 2'
  ):
    load_params('../work', step=7)

  clf = VideoClassifier.from_checkpoint(config, '../work')
  assert clf.label_names == list(TINY_CLASSES)
  assert clf.predict_file('../clip.mp4').scores.shape == (3,)

  # init_from.checkpoint_path: the same workdir, relative, as a pretrained checkpoint.
  module = build_model(config)
  video = np.zeros((1, 4, 16, 16, 3), np.float32)
  fresh = jax.device_get(module.init(jax.random.key(1), video, train=False)['params'])
  config.init_from.checkpoint_path = '../work'
  config.init_from.restore_output_proj = True
  params, entries = load.convert(config, fresh)
  assert {e.action for e in entries} == {'copied'}
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(latest)):
    np.testing.assert_array_equal(a, b)

  report = convert_checkpoint(config, '../work', 'conv_in_process', step=1)
  # The class names the run trained with, kept in its workdir.
  assert report.endswith(f'(labels from {root / "work" / "label_map.txt"})')
  flat, fmt = formats.read_checkpoint('conv_in_process')
  assert fmt == 'scenic'
  np.testing.assert_array_equal(flat['embedding/kernel'], first['embedding']['kernel'])


def _hf_forward(directory, pixel_values):
  """Logits of an HF ViViT directory in numpy (PyTorch layouts, HF's order of operations).

  pixel_values: f32[B, T, 3, H, W] as VivitForVideoClassification takes them.
  """
  t = {
    k: v.astype(np.float64)
    for k, v in safetensors.load(str(directory / 'model.safetensors')).items()
  }
  c = json.loads((directory / 'config.json').read_text())
  eps, heads = c['layer_norm_eps'], c['num_attention_heads']
  pt, ph, pw = c['tubelet_size']
  b, frames, ch, h, w = pixel_values.shape
  x = pixel_values.astype(np.float64).transpose(0, 2, 1, 3, 4)  # [B, C, T, H, W]
  x = x.reshape(b, ch, frames // pt, pt, h // ph, ph, w // pw, pw)
  x = x.transpose(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, -1, ch * pt * ph * pw)  # (t, h, w) order.
  kernel = t['vivit.embeddings.patch_embeddings.projection.weight']  # [D, C, t, h, w]
  x = (
    x @ kernel.reshape(kernel.shape[0], -1).T
    + t['vivit.embeddings.patch_embeddings.projection.bias']
  )
  cls = np.broadcast_to(t['vivit.embeddings.cls_token'], (b, 1, x.shape[-1]))
  x = np.concatenate([cls, x], axis=1) + t['vivit.embeddings.position_embeddings']

  def norm(y, name):
    y = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + eps)
    return y * t[f'{name}.weight'] + t[f'{name}.bias']

  def linear(y, name):
    return y @ t[f'{name}.weight'].T + t[f'{name}.bias']

  i = 0
  while f'vivit.encoder.layer.{i}.layernorm_before.weight' in t:
    layer = f'vivit.encoder.layer.{i}'
    y = norm(x, f'{layer}.layernorm_before')
    q, k, v = (
      linear(y, f'{layer}.attention.attention.{n}').reshape(b, -1, heads, x.shape[-1] // heads)
      for n in ('query', 'key', 'value')
    )
    logits = np.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(q.shape[-1])
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    o = np.einsum('bhqk,bkhd->bqhd', p, v).reshape(x.shape)
    x = x + linear(o, f'{layer}.attention.output.dense')
    y = linear(norm(x, f'{layer}.layernorm_after'), f'{layer}.intermediate.dense')
    y = 0.5 * y * (1 + np.tanh(np.sqrt(2 / np.pi) * (y + 0.044715 * y**3)))  # gelu_fast
    x = x + linear(y, f'{layer}.output.dense')
    i += 1
  x = norm(x, 'vivit.layernorm')
  return linear(x[:, 0], 'classifier')


def _hf_export(run, tmp_path):
  root, config = run
  out = tmp_path / 'hf'
  convert_checkpoint(config, str(root / 'work'), str(out), to='huggingface')
  params, _ = load_params(str(root / 'work'))
  video = np.random.default_rng(0).uniform(-1, 1, (2, 4, 16, 16, 3)).astype(np.float32)
  ours = np.asarray(build_model(config).apply({'params': params}, video, train=False))
  return out, params, video, ours


def test_a_token_model1_workdir_exports_to_hf_and_round_trips(run, tmp_path):
  out, params, video, ours = _hf_export(run, tmp_path)
  hf = json.loads((out / 'config.json').read_text())
  assert hf['id2label'] == {str(i): name for i, name in enumerate(TINY_CLASSES)}
  assert hf['label2id'] == {name: i for i, name in enumerate(TINY_CLASSES)}
  # HF's forward pass, written with numpy from the exported tensors.
  np.testing.assert_allclose(_hf_forward(out, video.transpose(0, 1, 4, 2, 3)), ours, atol=1e-5)
  # And back: reading the HF directory gives the workdir's arrays bit for bit.
  flat, fmt = formats.read_checkpoint(str(out))
  assert fmt == 'huggingface'
  expected = formats.flatten(params)
  assert sorted(flat) == sorted(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(flat[name], value, err_msg=name)


# HF's own model, run in a process of its own: torch and TensorFlow loaded into one
# process crash on some machines (they ship clashing native libraries).
_TRANSFORMERS_FORWARD = """
import json, sys
import numpy as np, torch, transformers
model = transformers.VivitForVideoClassification.from_pretrained(sys.argv[1]).eval()
video = torch.from_numpy(np.load(sys.argv[2]))
with torch.no_grad():
  logits = model(pixel_values=video).logits.numpy()
print(json.dumps({'id2label': model.config.id2label, 'logits': logits.tolist()}))
"""


@pytest.mark.skipif(
  not (importlib.util.find_spec('transformers') and importlib.util.find_spec('torch')),
  reason='HF transformers and torch are not installed (they are not dependencies)',
)
def test_the_hf_export_of_a_workdir_loads_in_transformers(run, tmp_path):
  out, _, video, ours = _hf_export(run, tmp_path)
  np.save(tmp_path / 'video.npy', video.transpose(0, 1, 4, 2, 3))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
  done = subprocess.run(
    [sys.executable, '-c', _TRANSFORMERS_FORWARD, str(out), str(tmp_path / 'video.npy')],
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  hf = json.loads(done.stdout.strip().splitlines()[-1])
  assert hf['id2label'] == {str(i): name for i, name in enumerate(TINY_CLASSES)}
  np.testing.assert_allclose(np.array(hf['logits']), ours, atol=1e-5)


def test_a_missing_required_flag_is_one_line_naming_it(tmp_path):
  """Required flags are marked with flags.mark_flags_as_required; cli.run prints the error."""
  done = _run(['-m', 'vivit_jax.tools.visualize', f'--config={CONFIG}', 'clip.mp4'], tmp_path)
  assert done.returncode == 1, done.stderr
  assert 'Traceback' not in done.stderr
  errors = [line for line in done.stderr.splitlines() if ': error: ' in line]
  assert len(errors) == 1 and '--checkpoint must have a value' in errors[0], done.stderr
  assert os.listdir(tmp_path) == []


def _upload_tree(local: str, uri: str) -> None:
  for directory, _, files in os.walk(local):
    for name in files:
      path = os.path.join(directory, name)
      fileio.copy(path, f'{uri}/{os.path.relpath(path, local)}')


def test_every_tool_reads_and_writes_a_bucket(run, relative_predict, gcs, tmp_path):
  root, config = run
  bucket = f'gs://vivit-test/tools-{uuid.uuid4().hex[:8]}'
  _upload_tree(str(root / 'work'), f'{bucket}/work')
  _upload_tree(str(root / 'data'), f'{bucket}/data')
  fileio.copy(str(root / 'clip.mp4'), f'{bucket}/clip.mp4')
  args = [f'--config={CONFIG}', f'--checkpoint={bucket}/work', *tiny_overrides(f'{bucket}/data')]
  here = str(tmp_path)
  predict = _run(['-m', 'vivit_jax.tools.predict', *args, '--top_k=1', f'{bucket}/clip.mp4'], here)
  assert predict.returncode == 0, predict.stderr[-3000:]
  assert any(name in predict.stdout for name in TINY_CLASSES), predict.stdout
  # The checkpoint and the clip in the bucket predict what they predict on the disk.
  assert predict.stdout.split()[1:] == relative_predict.stdout.split()[1:]  # all but the path
  convert = _run(
    ['-m', 'vivit_jax.tools.convert_checkpoint', *args, f'--output={bucket}/conv'], here
  )
  assert convert.returncode == 0, convert.stderr[-3000:]
  visualize = _run(
    ['-m', 'vivit_jax.tools.visualize', *args, f'--out={bucket}/a.png', f'{bucket}/clip.mp4'], here
  )
  assert visualize.returncode == 0, visualize.stderr[-3000:]
  assert os.listdir(here) == []  # nothing written where the commands ran
  assert fileio.read_text(f'{bucket}/conv/label_map.txt').split() == list(TINY_CLASSES)
  assert fileio.size(f'{bucket}/a.png') > 0
  # The converted checkpoint and the workdir itself, read back as pretrained checkpoints.
  flat, fmt = formats.read_checkpoint(f'{bucket}/conv')
  assert fmt == 'scenic'
  latest, path = load_params(f'{bucket}/work')
  assert path == f'{bucket}/work/checkpoints/2/default'
  np.testing.assert_array_equal(flat['embedding/kernel'], latest['embedding']['kernel'])
  assert formats.read_checkpoint(f'{bucket}/work')[1] == 'orbax'

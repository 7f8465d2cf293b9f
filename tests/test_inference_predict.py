"""VideoClassifier, checkpoint loading and the predict CLI on mp4 files written here."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf
from test_inference_fakes import (
  LABELS,
  moving_frames,
  random_params,
  tiny_config,
  write_mp4,
  write_msgpack,
  write_orbax_workdir,
)

from vivit_jax import config as config_lib
from vivit_jax.data import build_dataset, conversion, records, video_io
from vivit_jax.inference import VideoClassifier, files, load_params
from vivit_jax.train import evaluation, steps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp('inference')
  config = tiny_config()
  params = random_params(config)
  write_orbax_workdir(str(root / 'workdir'), params)
  write_msgpack(str(root / 'converted'), params)
  records.write_label_map(str(root / 'label_map.txt'), LABELS)
  videos = {
    'odd': write_mp4(root / 'odd.mp4', moving_frames(20, size=(23, 31))),
    'grey': write_mp4(root / 'grey.mp4', moving_frames(5, seed=1), grey=True),
  }
  (root / 'corrupt.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42' + os.urandom(300))
  videos['corrupt'] = str(root / 'corrupt.mp4')
  return root, config, params, videos


def test_load_params_from_every_layout(setup):
  root, _, params, _ = setup
  flat = jax.tree_util.tree_leaves(params)
  for path in (
    root / 'workdir',
    root / 'workdir' / 'checkpoints',
    root / 'workdir' / 'checkpoints' / '5',
    root / 'converted',
    root / 'converted' / 'checkpoint',
  ):
    loaded, _ = load_params(str(path))
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(params)
    for a, b in zip(jax.tree_util.tree_leaves(loaded), flat):
      np.testing.assert_array_equal(a, b)
  with pytest.raises(FileNotFoundError, match='neither a training workdir'):
    load_params(str(root))


def test_checkpoint_of_another_model_is_named(setup):
  root, _, _, _ = setup
  with pytest.raises(ValueError, match='does not fit the model of this config'):
    VideoClassifier.from_checkpoint(tiny_config('factorized_encoder'), str(root / 'converted'))


def test_views_loop_short_video_and_accept_greyscale(setup):
  _, config, params, _ = setup
  clf = VideoClassifier(config, params)
  # Frame i is the flat grey 40 * i; 5 frames < a clip of 4 frames every 2 (7).
  frames = (np.arange(5, dtype=np.uint8) * 40)[:, None, None].repeat(20, 1).repeat(24, 2)
  views = clf.views(frames)
  assert views.looped and views.num_frames == 5
  assert views.inputs.shape == (2, 4, 16, 16, 3)
  # Both windows start at 0 and wrap: frames 0, 2, 4, 6 mod 5 = 1.
  grey = (views.inputs[:, :, 8, 8, 0] + 1) * 127.5
  np.testing.assert_allclose(grey, [[0, 80, 160, 40]] * 2, atol=1e-4)
  rgb = clf.predict(np.repeat(frames[..., None], 3, axis=-1))
  np.testing.assert_array_equal(clf.predict(frames).scores, rgb.scores)
  assert not clf.views(moving_frames(7)).looped


def _eval_path_scores(root, config, params, video: str) -> tuple[np.ndarray, np.ndarray]:
  """Scores and views of `video` converted by make_tfrecords and read by the test split."""
  data = root / 'data'
  data.mkdir(exist_ok=True)
  dc = config.dataset_configs
  settings = {'video_root': '', 'fps': dc.fps, 'min_resize': dc.min_resize, 'jpeg_quality': 90}
  settings['labels'] = {name: i for i, name in enumerate(LABELS)}
  _, example, error = conversion.convert_row((0, video_io.Row(video, 'dog'), settings))
  assert not error
  with tf.io.TFRecordWriter(str(data / 'test-00000-of-00001')) as writer:
    writer.write(example)
  config = config_lib.resolve(config)
  config.dataset_configs.base_dir = str(data)
  config.dataset_configs.tables = {'test': 'test@1'}
  config.batch_size = 1
  dataset = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  clf = VideoClassifier(config, params)
  step = steps.make_eval_fn(apply_fn=clf.module.apply, task=clf.task, multiview=True)
  replicated = jax.tree_util.tree_map(lambda x: x[None], params)
  batch = next(dataset.test_iter())
  preds = evaluation.predict_split(step, replicated, [batch])
  return clf.scores(preds.logits[0]), batch['inputs'][0, 0]


def test_cli_api_and_evaluation_give_the_same_scores(setup, tmp_path):
  root, config, params, videos = setup
  clf = VideoClassifier.from_checkpoint(
    config, str(root / 'workdir'), label_map=str(root / 'label_map.txt'), jpeg_quality=90
  )
  api = clf.predict_file(videos['odd'])
  assert api.num_frames == 20 and not api.looped
  eval_scores, eval_inputs = _eval_path_scores(root, config, params, videos['odd'])
  np.testing.assert_array_equal(clf.views(clf.decode(videos['odd'])).inputs, eval_inputs)
  np.testing.assert_allclose(api.scores, eval_scores, rtol=1e-6, atol=1e-7)

  config_file = tmp_path / 'tiny.py'
  config_file.write_text(
    'from test_inference_fakes import tiny_config\n\ndef get_config():\n  return tiny_config()\n'
  )
  output = tmp_path / 'preds.jsonl'
  env = dict(os.environ, PYTHONPATH=f'{REPO}{os.pathsep}{os.path.join(REPO, "tests")}')
  run = subprocess.run(
    [sys.executable, '-m', 'vivit_jax.tools.predict', f'--config={config_file}']
    + [f'--checkpoint={root / "workdir"}', f'--label_map={root / "label_map.txt"}']
    + ['--jpeg_quality=90', '--top_k=3', f'--output={output}']
    + [videos['odd'], videos['corrupt'], videos['grey']],
    capture_output=True,
    text=True,
    env=env,
    cwd=REPO,
    timeout=300,
  )
  assert run.returncode == 1, run.stderr[-3000:]
  assert f'ERROR: {videos["corrupt"]}: cannot read the video' in run.stderr
  assert f'Note: {videos["grey"]} is shorter than one clip' in run.stderr
  assert '1 of 3 videos could not be read' in run.stderr
  lines = [json.loads(line) for line in output.read_text().splitlines()]
  by_video = {line['video']: line for line in lines}
  assert set(by_video) == set(videos.values())
  assert 'error' in by_video[videos['corrupt']]
  odd = by_video[videos['odd']]
  assert [r['label'] for r in odd['top_k']] == [LABELS[i] for i in np.argsort(-api.scores)]
  np.testing.assert_allclose([r['score'] for r in odd['top_k']], np.sort(api.scores)[::-1], 1e-6)
  grey = clf.predict_file(videos['grey'])
  assert by_video[videos['grey']]['looped'] and grey.looped
  np.testing.assert_allclose(
    [r['score'] for r in by_video[videos['grey']]['top_k']], np.sort(grey.scores)[::-1], 1e-6
  )
  best = LABELS[int(np.argmax(api.scores))]
  assert f'{videos["odd"]}  (20 frames)' in run.stdout and best in run.stdout


def test_predict_files_in_process_one_video_and_a_directory(setup, tmp_path):
  root, config, params, videos = setup
  clf = VideoClassifier(config, params, label_names=LABELS)
  os.makedirs(tmp_path / 'dir' / 'sub')
  write_mp4(tmp_path / 'dir' / 'sub' / 'b.mp4', moving_frames(9, seed=2))
  write_mp4(tmp_path / 'dir' / 'a.mp4', moving_frames(9, seed=3))
  (tmp_path / 'dir' / 'notes.txt').write_text('not a video')
  paths = files.expand([videos['odd'], str(tmp_path / 'dir')])
  assert paths == [
    videos['odd'],
    str(tmp_path / 'dir' / 'a.mp4'),
    str(tmp_path / 'dir' / 'sub' / 'b.mp4'),
  ]
  output = tmp_path / 'out.jsonl'
  with open(tmp_path / 'stdout', 'w') as out, open(tmp_path / 'stderr', 'w') as err:
    failures = files.predict_files(
      clf, paths, batch_size=2, top_k=2, output=str(output), out=out, err=err, progress=False
    )
  assert failures == 0
  lines = [json.loads(line) for line in output.read_text().splitlines()]
  assert [line['video'] for line in lines] == paths
  for path, line in zip(paths, lines):
    expected = clf.predict_file(path).scores
    np.testing.assert_allclose(
      [r['score'] for r in line['top_k']], np.sort(expected)[::-1][:2], 1e-6
    )

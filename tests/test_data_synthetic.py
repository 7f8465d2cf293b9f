"""The synthetic motion dataset: time reversal swaps classes; generation is deterministic."""

import os

import numpy as np
import pytest

from vivit_jax import config as config_lib
from vivit_jax.data import build_dataset, ensure_synthetic, synthetic

PARTNERS = [(0, 1), (2, 3), (4, 5), (6, 7)]


@pytest.mark.parametrize('label,partner', PARTNERS)
def test_reversed_clip_is_the_partner_class(label, partner):
  a = synthetic.render_clip(label, np.random.default_rng(5)).astype(float)
  b = synthetic.render_clip(partner, np.random.default_rng(5)).astype(float)
  # The same random draws give the partner's motion backwards; only the per-frame
  # sensor noise (sigma 4) differs.
  assert np.abs(a[::-1] - b).mean() < 6
  # ... while played forwards the clips differ by the motion itself.
  assert np.abs(a - b).mean() > 2 * np.abs(a[::-1] - b).mean()


def test_render_deterministic_and_moving():
  a = synthetic.render_clip(4, np.random.default_rng(1))
  b = synthetic.render_clip(4, np.random.default_rng(1))
  np.testing.assert_array_equal(a, b)
  assert a.shape == (24, 32, 32, 3) and a.dtype == np.uint8
  assert np.abs(a[0].astype(float) - a[-1]).mean() > 5


@pytest.fixture
def tiny_splits(monkeypatch):
  monkeypatch.setattr(synthetic, 'SPLITS', {'train': (16, 2), 'validation': (8, 2), 'test': (8, 2)})


def _config(base_dir):
  from configs import synthetic as synthetic_config

  c = synthetic_config.get_config()
  c.dataset_configs.base_dir = str(base_dir)
  c.dataset_configs.tables = {s: synthetic.table(s) for s in ('train', 'validation', 'test')}
  c.dataset_configs.examples_per_subset = {}
  c.batch_size = 8
  c.eval_batch_size = 8
  return config_lib.resolve(c)


def test_ensure_synthetic_generates_once(tmp_path, tiny_splits):
  config = _config(tmp_path / 'syn')
  assert ensure_synthetic(config)
  files = sorted(os.listdir(tmp_path / 'syn'))
  assert 'label_map.txt' in files and 'synthetic_train-00001-of-00002' in files
  first = (tmp_path / 'syn' / 'synthetic_train-00000-of-00002').read_bytes()
  assert not ensure_synthetic(config)
  # Deterministic by seed: regenerating writes the same bytes.
  synthetic.generate(str(tmp_path / 'again'))
  assert (tmp_path / 'again' / 'synthetic_train-00000-of-00002').read_bytes() == first


def test_synthetic_config_builds(tmp_path, tiny_splits):
  config = _config(tmp_path / 'syn')
  ds = build_dataset(config, num_local_devices=2, process_index=0, process_count=1)
  assert ds.meta.num_classes == 8 and ds.meta.label_names[0] == 'move_right'
  assert ds.meta.num_train_examples == 16
  b = next(ds.train_iter())
  assert b['inputs'].shape == (2, 4, config.dataset_configs.num_frames, 32, 32, 3)
  assert -1.0 <= b['inputs'].min() and b['inputs'].max() <= 1.0
  assert sum(b['batch_mask'].sum() for b in ds.eval_iter()) == 8


def test_config_without_flag_does_not_generate(tmp_path, tiny_splits):
  config = _config(tmp_path / 'syn')
  config.dataset_configs.generate_synthetic_if_missing = False
  assert not ensure_synthetic(config)
  assert not (tmp_path / 'syn').exists()


def test_mp4_format_holds_the_same_clips(tmp_path, tiny_splits):
  import av

  out = tmp_path / 'mp4'
  synthetic.generate_mp4(str(out), limit=3)
  assert (out / 'label_map.txt').read_text().split() == list(synthetic.CLASS_NAMES)
  rendered = {s: list(synthetic._rendered(s, 0, 24, 32)) for s in synthetic.SPLITS}
  for split in synthetic.SPLITS:
    lines = (out / f'{split}.csv').read_text().splitlines()
    assert lines[0] == 'video_path,label'
    # The first 3 clips of the (tiny) full split, in order, labelled by class name.
    expected = [
      f'{split}/{synthetic.CLASS_NAMES[label]}/{i:05d}.mp4,{synthetic.CLASS_NAMES[label]}'
      for i, label, _ in rendered[split][:3]
    ]
    assert lines[1:] == expected
  assert not [p for p in out.rglob('*') if '.tmp' in p.name]
  path, _ = lines[2].split(',')
  with av.open(str(out / path)) as container:
    stream = container.streams.video[0]
    assert stream.average_rate == synthetic.FPS
    decoded = np.stack([f.to_ndarray(format='rgb24') for f in container.decode(stream)])
  clip = rendered['test'][1][2].astype(float)
  assert decoded.shape == clip.shape
  # H.264 at crf 4 and yuv420p: a few levels off on average, far closer than another clip.
  assert np.abs(decoded - clip).mean() < 5
  assert np.abs(decoded - rendered['test'][0][2].astype(float)).mean() > 20


def _tubelets(frames):
  return sorted(row.tobytes() for row in frames.reshape(len(frames) // 2, -1))


def test_temporal_order_classes_are_the_same_frames_in_another_order():
  names = synthetic.class_names('temporal_order')
  assert len(names) == 6 and names[0] == 'move_right_then_move_down_then_rotate_clockwise'
  clips = [
    synthetic.render_clip(label, np.random.default_rng(3), variant='temporal_order')
    for label in range(len(names))
  ]
  assert clips[0].shape == (24, 32, 32, 3) and clips[0].dtype == np.uint8
  segments = [clips[0][8 * k : 8 * (k + 1)] for k in range(3)]
  for label, clip in enumerate(clips):
    # Every class shows the same three 8-frame segments, only in its own order ...
    order = synthetic.segment_order(label)
    np.testing.assert_array_equal(clip, np.concatenate([segments[k] for k in order]))
    # ... so the mean over time (what the average-pool baseline keeps) is the same,
    np.testing.assert_allclose(clip.mean(0), clips[0].mean(0), atol=1e-4)
    # and so is the multiset of 2-frame tubelets of 12 frames 2 apart, from either start.
    for start in (0, 1):
      assert _tubelets(clip[start::2]) == _tubelets(clips[0][start::2])
  assert len({clip.tobytes() for clip in clips}) == 6
  # Each segment is a motion: its first and last frames differ.
  assert all(np.abs(s[0].astype(float) - s[-1]).mean() > 2 for s in segments)


def test_temporal_order_variant_is_generated_and_selected_by_the_config(tmp_path, tiny_splits):
  from configs import synthetic as synthetic_config

  c = synthetic_config.get_config('temporal_order')
  assert c.dataset_configs.synthetic_variant == 'temporal_order'
  assert c.dataset_configs.num_classes == 6
  assert c.dataset_configs.base_dir.endswith('synthetic_temporal_order')
  c.dataset_configs.base_dir = str(tmp_path / 'order')
  c.dataset_configs.examples_per_subset = {}
  config = config_lib.resolve(c)
  assert ensure_synthetic(config)
  labels = (tmp_path / 'order' / 'label_map.txt').read_text().split()
  assert labels == list(synthetic.class_names('temporal_order'))
  assert synthetic.is_complete(str(tmp_path / 'order'), variant='temporal_order')
  assert not synthetic.is_complete(str(tmp_path / 'order'))  # not the default data
  # The default config still describes the default data, at the default recipe.
  default = synthetic_config.get_config()
  assert default.dataset_configs.synthetic_variant == 'motion'
  recipe = synthetic_config.get_config('factorised')
  assert recipe.lr_configs.base_learning_rate == default.lr_configs.base_learning_rate / 4
  assert synthetic_config.get_config('temporal_order,factorised').dataset_configs.num_classes == 6
  with pytest.raises(ValueError, match='unknown'):
    synthetic_config.get_config('temporal-order')

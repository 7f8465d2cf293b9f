"""Validation and test clips are pinned bit for bit.

They use no augmentation, so a change to the train-time augmentation or to
its speed must leave them exactly as they were. The checksums were computed
from the code before issue 14's changes; a deliberate change to evaluation
preprocessing updates them in the same commit, with the reason.
"""

import dataclasses
import hashlib

import numpy as np
import pytest
import tensorflow as tf

from vivit_jax import config as config_lib
from vivit_jax.data import clips, sampling
from vivit_jax.data.clip_spec import Augmentation, ClipSpec

# The library defaults: every augmentation off.
DEFAULT_AUGMENTATION = Augmentation.from_config(
  config_lib.get_defaults().dataset_configs.augmentation_params
)
SPEC = ClipSpec(
  num_frames=4,
  stride=2,
  min_resize=32,
  crop_size=24,
  zero_centering=True,
  random_flip=True,
  augment_on_device=False,
  num_classes=3,
  class_splits=None,
  split_names=(),
  multi_label=False,
  num_test_clips=2,
  three_crops=True,
  augmentation=DEFAULT_AUGMENTATION,
)


def _record(fmt: str) -> dict[str, tf.Tensor]:
  """11 frames of 36x50 smooth random content (resized, so the resize is pinned too)."""
  rng = np.random.default_rng(0)
  coarse = rng.uniform(0, 255, (11, 9, 13, 3)).astype(np.float32)
  frames = tf.cast(tf.round(tf.image.resize(coarse, [36, 50])), tf.uint8)
  encode = tf.io.encode_jpeg if fmt == 'jpeg' else tf.io.encode_png
  return {
    'encoded': tf.stack([encode(f) for f in frames]),
    'label_index': tf.constant([1], tf.int64),
    'key': tf.constant('v'),
    'where': tf.constant('pinned'),
  }


def _digest(x: tf.Tensor) -> str:
  return hashlib.sha256(np.ascontiguousarray(x.numpy(), np.float32).tobytes()).hexdigest()[:16]


PINNED = {
  ('eval', 'jpeg'): 'bfc6d6fed16947d1',
  ('eval', 'png'): 'd366c85fc4e8f26f',
  ('test', 'jpeg'): 'e246d22f1fb6c467',
  ('test', 'png'): '881d753983f14283',
  ('test1', 'jpeg'): '659ea26312b218a3',
}


@pytest.mark.parametrize('kind, fmt', sorted(PINNED))
def test_eval_and_test_clips_bit_identical(kind, fmt):
  record, jpeg = _record(fmt), fmt == 'jpeg'
  if kind == 'eval':
    out = clips.eval_clip(record, SPEC, jpeg)
  elif kind == 'test':
    out = clips.test_clip(record, SPEC, jpeg)
  else:  # One centre crop per clip, [0, 1] range.
    spec = dataclasses.replace(SPEC, three_crops=False, zero_centering=False)
    out = clips.test_clip(record, spec, jpeg)
  assert out['error'].numpy() == b''
  assert _digest(out['inputs']) == PINNED[(kind, fmt)]


def _video(fmt: str) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
  record = _record(fmt)
  decode = tf.io.decode_jpeg if fmt == 'jpeg' else tf.io.decode_png
  return record, tf.stack([decode(f, channels=3) for f in record['encoded']])


AUGMENTED = {
  'do_jitter_scale': True,
  'scale_min_factor': 0.9,
  'scale_max_factor': 1.33,
  'prob_scale_jitter': 1.0,
  'do_color_augment': True,
  'prob_color_augment': 0.8,
  'prob_color_drop': 0.1,
  'do_rand_augment': False,
  'rand_augment_num_layers': 2,
  'rand_augment_magnitude': 15,
  'do_random_erasing': True,
  'prob_random_erasing': 0.5,
}


@pytest.mark.parametrize('fmt', ['png', 'jpeg'])
@pytest.mark.parametrize('rand_augment', [False, True])
def test_decoded_frames_entry_points_match_the_record_path(fmt, rand_augment):
  """The decoded-frames functions (of video_files and inference) give the record path's clips.

  The JPEG path decodes only the crop window (decode_and_crop_jpeg), so this
  also pins that cropped decoding equals decoding whole frames and slicing.
  """
  record, video = _video(fmt)
  length = tf.shape(video)[0]
  aug = dict(AUGMENTED, do_rand_augment=rand_augment, do_color_augment=not rand_augment)
  spec = dataclasses.replace(SPEC, augmentation=dataclasses.replace(DEFAULT_AUGMENTATION, **aug))
  jpeg = fmt == 'jpeg'
  for s in range(4):
    seed = tf.constant([s, 11])
    # The decoded-frames path (video_files'): train_clip's seeds and sampling.
    seeds = tf.random.experimental.stateless_split(seed, 4)
    indices = sampling.train_indices(length, spec.num_frames, spec.stride, seeds[0])
    ours, _ = clips.train_from_frames(tf.gather(video, indices), seeds[1], seeds[2], spec)
    np.testing.assert_array_equal(ours, clips.train_clip(record, seed, spec, jpeg)['inputs'])
  np.testing.assert_array_equal(
    clips.eval_from_frames(
      tf.gather(video, sampling.centre_indices(length, spec.num_frames, spec.stride)), spec
    ),
    clips.eval_clip(record, spec, jpeg)['inputs'],
  )
  np.testing.assert_array_equal(
    clips.test_inputs(video, spec), clips.test_clip(record, spec, jpeg)['inputs']
  )

"""`dataset_configs.augment_on_device`: uint8 train batches, color and normalisation in the step.

The device arithmetic is checked against TensorFlow's own `tf.image` ops, the
on-device clips against the host path's for the same records and seeds, and
the train step against one fed the finished inputs.
"""

import dataclasses

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tensorflow as tf
from test_data_dataset import VIDEOS, make_config, write_shards
from test_data_pinned import DEFAULT_AUGMENTATION, SPEC

from vivit_jax.data import augment, build_dataset, clips, sampling
from vivit_jax.data.clip_spec import ClipSpec
from vivit_jax.data.device_augment import DeviceAugment
from vivit_jax.task import Task
from vivit_jax.train import steps
from vivit_jax.train.state import TrainState


def _tf_color(x, brightness, saturation, contrast, hue):
  """DMVR's color_augment with fixed factors, from TensorFlow's own ops."""
  x = tf.image.adjust_brightness(x, brightness)
  x = tf.image.adjust_saturation(x, saturation)
  x = tf.image.adjust_contrast(x, contrast)
  return tf.clip_by_value(tf.image.adjust_hue(x, hue), 0.0, 1.0)


def _spec(on_device: bool, **augmentation) -> ClipSpec:
  """4 frames at stride 2, short side 32, crop 24, with these augmentations."""
  aug = dataclasses.replace(DEFAULT_AUGMENTATION, **augmentation)
  return dataclasses.replace(SPEC, augment_on_device=on_device, augmentation=aug)


def test_device_color_matches_tf_image_ops():
  rng = np.random.default_rng(0)
  clips = rng.integers(0, 256, (4, 2, 12, 12, 3), np.uint8)
  color = np.array(
    [
      [1.0, 0.1, 1.3, 0.7, 0.15, 0.0],
      [1.0, -0.12, 0.6, 1.4, -0.2, 0.0],
      [0.0, 0.1, 1.3, 0.7, 0.1, 0.0],  # Not applied.
      [1.0, 0.05, 0.9, 1.1, 0.2, 1.0],  # Then grey.
    ],
    np.float32,
  )
  batch = {'inputs': clips, 'color': color, 'erase': np.zeros((4, 5), np.int32)}
  out = DeviceAugment(False, color=True, erasing=False, resize_to=None)(batch, jax.random.key(0))
  unit = clips.astype(np.float32) / 255
  for i, (apply, b, s, c, h, drop) in enumerate(color):
    expected = _tf_color(unit[i], b, s, c, h).numpy() if apply else unit[i]
    if drop:
      expected = np.repeat(tf.image.rgb_to_grayscale(expected).numpy(), 3, -1)
    np.testing.assert_allclose(out[i], expected, atol=2e-5)
  centred = DeviceAugment(True, color=False, erasing=False, resize_to=None)(batch, None)
  np.testing.assert_allclose(centred, unit * 2 - 1, atol=1e-6)


def _smooth_record(length=11, height=36, width=50):
  """Smooth random content in a raw-frames record, as video frames are."""
  coarse = np.random.default_rng(1).uniform(0, 255, (length, 5, 7, 3)).astype(np.float32)
  frames = tf.cast(tf.round(tf.image.resize(coarse, [height, width])), tf.uint8)
  return {
    'encoded': tf.map_fn(tf.io.encode_png, frames, fn_output_signature=tf.string),
    'label_index': tf.constant([1], tf.int64),
    'key': tf.constant('v'),
    'where': tf.constant('test record'),
  }


def _element_batch(element):
  keys = ('inputs', 'color', 'erase', 'window')
  return {k: element[k].numpy()[None] for k in keys if k in element}


def test_on_device_clips_are_the_host_clips():
  """Same record and seed: the host's window and draws, resized and colored on the device,
  are the host path's clip, with the exact contrast pivot."""
  record = _smooth_record()
  for color in (False, True):
    augmentation = dict(
      do_jitter_scale=True,
      do_color_augment=color,
      prob_color_augment=0.5,
      prob_color_drop=0.3,
    )
    # The record's frames have short side 36, as make_tfrecords writes them at min_resize.
    host, device = (dataclasses.replace(_spec(d, **augmentation), min_resize=36) for d in (0, 1))
    finish = DeviceAugment.from_spec(device)
    assert DeviceAugment.from_spec(host) is None and finish.color == color
    assert finish.resize_to == 24 and device.device_window == 29
    plain = dataclasses.replace(finish, color=False, zero_centering=False)
    drawn, sizes = [], set()
    for s in range(12):
      seed = tf.constant([s, 5])
      on_host = clips.train_clip(record, seed, host, jpeg_only=False)['inputs'].numpy()
      element = clips.train_clip(record, seed, device, jpeg_only=False)
      assert element['inputs'].dtype == tf.uint8 and element['inputs'].shape == (4, 29, 29, 3)
      sizes.add(tuple(element['window'].numpy()))
      batch = _element_batch(element)
      on_device = np.asarray(jax.jit(finish)(batch, jax.random.key(0))[0])
      if not color:
        # The same window, flip and bilinear resize as on the host, in float.
        np.testing.assert_allclose(on_device, on_host, atol=1e-5)
        continue
      drawn.append(element['color'].numpy())
      resized = plain(batch, None)[0]
      exact = augment.apply_color(tf.constant(resized), element['color']).numpy() * 2 - 1
      np.testing.assert_allclose(on_device, exact, atol=1e-5)
      # The same draws as the host's: a different color change or drop would
      # move pixels by tenths; the host's estimated contrast pivot moves them
      # by a few levels.
      assert np.abs(on_device - on_host).mean() < 4 / 255
    assert len(sizes) > 6  # The windows' sizes vary with the scale jitter.
    if color:
      applied, dropped = np.array(drawn)[:, 0], np.array(drawn)[:, 5]
      assert 0 < applied.sum() < 12 and 0 < dropped.sum() < 12


def test_windows_too_large_and_rand_augment_are_resized_on_the_host():
  record = _smooth_record()
  # Frames far larger than min_resize: windows of up to 36 * 24 / 14 pixels.
  large = dataclasses.replace(_spec(True, do_jitter_scale=True), min_resize=14)
  host = dataclasses.replace(large, augment_on_device=False)
  finish = DeviceAugment.from_spec(large)
  for s in range(4):
    seed = tf.constant([s, 2])
    element = clips.train_clip(record, seed, large, jpeg_only=False)
    np.testing.assert_array_equal(element['window'], [24, 24])
    on_device = np.asarray(finish(_element_batch(element), None)[0])
    on_host = clips.train_clip(record, seed, host, jpeg_only=False)['inputs'].numpy()
    # Resized on the host and rounded to whole levels; the device's resize is the identity.
    assert np.abs(on_device - on_host).max() <= 1 / 255 + 1e-6
  spec = _spec(True, do_rand_augment=True)
  assert not spec.device_resize and DeviceAugment.from_spec(spec).resize_to is None
  element = clips.train_clip(record, tf.constant([0, 1]), spec, jpeg_only=False)
  assert element['inputs'].shape == (4, 24, 24, 3) and 'window' not in element


def test_decoded_frames_path_sends_what_the_record_path_sends():
  """video_files' entry point (`train_from_frames`) gives the record path's u8 clip and draws."""
  spec = _spec(True, do_jitter_scale=True, do_color_augment=True, do_random_erasing=True)
  record = _smooth_record()
  frames = tf.map_fn(tf.io.decode_png, record['encoded'], fn_output_signature=tf.uint8)
  for s in range(3):
    seed = tf.constant([s, 9])
    seeds = tf.random.experimental.stateless_split(seed, 4)
    indices = sampling.train_indices(tf.shape(frames)[0], spec.num_frames, spec.stride, seeds[0])
    clip, extras = clips.train_from_frames(tf.gather(frames, indices), seeds[1], seeds[2], spec)
    element = clips.train_clip(record, seed, spec, jpeg_only=False)
    np.testing.assert_array_equal(clip, element['inputs'])
    for key in ('color', 'erase', 'window'):
      np.testing.assert_array_equal(extras[key], element[key])


def test_on_device_erasing_draws_the_hosts_box():
  spec = _spec(True, do_random_erasing=True, prob_random_erasing=1.0)
  finish = DeviceAugment.from_spec(spec)
  unerased = dataclasses.replace(finish, erasing=False)
  seed = tf.constant([3, 1])
  host = _spec(False, do_random_erasing=True, prob_random_erasing=1.0)
  on_host = clips.train_clip(_smooth_record(), seed, host, jpeg_only=False)['inputs'].numpy()
  batch = _element_batch(clips.train_clip(_smooth_record(), seed, spec, jpeg_only=False))
  on_device = np.asarray(finish(batch, jax.random.key(1))[0])
  reference = np.asarray(unerased(batch, None)[0])
  host_box = np.abs(on_host - reference).max(axis=(0, 3)) > 0.01
  device_box = np.abs(on_device - reference).max(axis=(0, 3)) > 0.01
  # The same rectangle (noise can land close to a pixel's own value: allow a few).
  assert host_box.sum() > 10
  assert np.sum(host_box != device_box) <= 0.02 * host_box.size
  # And the same noise in every frame, as on the host.
  erased = on_device[:, device_box]
  np.testing.assert_array_equal(erased, np.broadcast_to(erased[:1], erased.shape))


def test_train_step_finishes_u8_batches_as_it_would_finished_ones():
  """The step with device_augment on a u8 batch = the step on the finished float batch."""
  num_devices = jax.local_device_count()
  shape = (num_devices, 2, 2, 6, 6, 3)

  def apply_fn(variables, inputs, train, rngs):
    del train, rngs
    return jnp.mean(inputs, axis=(1, 2, 3)) @ variables['params']['w']

  rng = np.random.default_rng(0)
  factors = [rng.uniform(low, high, shape[:2]) for low, high in _RANGES]
  color = np.stack([np.ones(shape[:2]), *factors, np.zeros(shape[:2])], -1).astype(np.float32)
  batch = {
    'inputs': rng.integers(0, 256, shape, np.uint8),
    'color': color,
    'erase': np.zeros((*shape[:2], 5), np.int32),
    'label': np.eye(3, dtype=np.float32)[rng.integers(0, 3, shape[:2])],
    'batch_mask': np.ones(shape[:2], np.float32),
  }
  finish = DeviceAugment(True, color=True, erasing=False, resize_to=None)
  finished = dict(batch, inputs=np.asarray(finish.host_batch_inputs(batch, jax.random.key(0))))
  tx = optax.sgd(0.1)
  params = {'w': jnp.asarray(rng.normal(size=(3, 3)), jnp.float32)}
  state = TrainState.create(
    apply_fn=apply_fn,
    params=params,
    tx=tx,
    schedule=lambda step: jnp.float32(0.1),
    rng=jax.random.key_data(jax.random.key(0)),
  )
  results = []
  for device_augment, data in ((finish, batch), (None, finished)):
    update = steps.make_update_fn(Task(3), steps.StepOptions(), device_augment=device_augment)
    replicated = flax.jax_utils.replicate(state)
    new_state, metrics = update(replicated, data)
    results.append((np.asarray(new_state.params['w'][0]), float(metrics['loss'][0])))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
  assert abs(results[0][1] - results[1][1]) < 1e-5


_RANGES = [
  (-augment.BRIGHTNESS, augment.BRIGHTNESS),
  augment.SATURATION,
  augment.CONTRAST,
  (-augment.HUE, augment.HUE),
]


def test_dataset_sends_u8_train_batches_and_unchanged_eval_batches(tmp_path):
  write_shards(tmp_path, 'train', VIDEOS, 2)
  write_shards(tmp_path, 'val', VIDEOS, 2)

  def dataset(on_device):
    config = make_config(
      tmp_path,
      {'train': 'train@2', 'validation': 'val@2'},
      augment_on_device=on_device,
      random_flip=True,
      augmentation_params={'do_color_augment': True, 'do_jitter_scale': True},
    )
    return build_dataset(config, num_local_devices=1, process_index=0, process_count=1)

  plain, ds = dataset(False), dataset(True)
  assert plain.meta.device_augment is None and ds.meta.device_augment.color
  batch = next(ds.train_iter())
  assert batch['inputs'].dtype == np.uint8 and batch['color'].shape == (1, 4, 6)
  reference = next(plain.train_iter())
  finished = np.asarray(ds.meta.device_augment.host_batch_inputs(batch, jax.random.key(0)))
  # Resized on the device in float; the host estimates the contrast pivot.
  assert np.abs(finished - reference['inputs']).max() < 2 * 3 / 255
  np.testing.assert_array_equal(next(ds.eval_iter())['inputs'], next(plain.eval_iter())['inputs'])

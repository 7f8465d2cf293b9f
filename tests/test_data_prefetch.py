"""prefetch_to_device: batches arrive split over the devices, host-only keys stay numpy."""

import jax
import numpy as np

from vivit_jax.data import prefetch_to_device


def test_batches_are_split_over_devices_in_order():
  devices = jax.local_devices()
  assert len(devices) == 8
  batches = [
    {'inputs': np.arange(16, dtype=np.float32).reshape(8, 2) + 100 * i, 'key': np.array(['a'] * 8)}
    for i in range(3)
  ]
  out = list(prefetch_to_device(iter(batches), size=2, devices=devices))
  assert len(out) == 3
  for i, batch in enumerate(out):
    inputs = batch['inputs']
    assert isinstance(inputs, jax.Array)
    assert [s.device for s in inputs.addressable_shards] == devices
    np.testing.assert_array_equal(inputs, batches[i]['inputs'])
    np.testing.assert_array_equal(inputs.addressable_shards[3].data, batches[i]['inputs'][3:4])
    assert isinstance(batch['key'], np.ndarray)
  # pmap consumes them without moving data.
  total = jax.pmap(lambda x: x.sum())(out[0]['inputs'])
  np.testing.assert_array_equal(total, batches[0]['inputs'].sum(axis=1))

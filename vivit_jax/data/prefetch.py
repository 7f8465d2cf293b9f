"""Moving host batches onto the local devices ahead of the step that needs them."""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

HOST_ONLY_KEYS = ('key',)


def prefetch_to_device(
  batches: Iterator[dict[str, np.ndarray]],
  size: int = 2,
  devices: Sequence[Any] | None = None,
) -> Iterator[dict[str, Any]]:
  """Yields batches whose arrays already live on the devices, `size` ahead.

  Args:
    batches: host batches with leading axis D = len(devices) (as `Dataset`
      iterators yield them).
    size: batches kept in flight (dataset_configs.prefetch_to_device).
    devices: the local devices (default: jax.local_devices()).

  Returns:
    Batches whose arrays are sharded over `devices` along axis 0, ready for
    pmap; host-only entries ('key') stay numpy.
  """
  devices = list(devices or jax.local_devices())
  queue: collections.deque = collections.deque()
  # Axis 0 split over the devices: the placement pmap gives its own inputs.
  mesh = jax.sharding.Mesh(np.array(devices), ('devices',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('devices'))

  def put(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    return {
      name: value if name in HOST_ONLY_KEYS else jax.device_put(value, sharding)
      for name, value in batch.items()
    }

  for batch in batches:
    queue.append(put(batch))
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()

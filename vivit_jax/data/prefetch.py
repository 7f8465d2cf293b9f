"""Moving host batches onto the local devices ahead of the step that needs them."""

from __future__ import annotations

import collections
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

HOST_ONLY_KEYS = ('key',)
# Stopping the input pipeline takes longer than this only with work in flight: its time is logged.
_SLOW_CLOSE_S = 1.0


def prefetch_to_device(
  batches: Iterator[dict[str, np.ndarray]],
  size: int = 2,
  devices: Sequence[Any] | None = None,
  put_array: Callable[[np.ndarray], Any] | None = None,
) -> Iterator[dict[str, Any]]:
  """Yields batches whose arrays already live on the devices, `size` ahead.

  Args:
    batches: host batches with leading axis D = len(devices) (as `Dataset`
      iterators yield them).
    size: batches kept in flight (dataset_configs.prefetch_to_device).
    devices: the local devices (default: jax.local_devices()).
    put_array: how one array goes to the devices instead (the trainer's
      placement, `vivit_jax.train.parallel`), e.g. as rows of a global batch
      over a mesh.

  Returns:
    Batches whose arrays are sharded over `devices` along axis 0, ready for
    pmap; host-only entries ('key') stay numpy. Its `close()` closes `batches`.
  """
  queue: collections.deque = collections.deque()
  if put_array is None:
    # Axis 0 split over the devices: the placement pmap gives its own inputs.
    mesh = jax.sharding.Mesh(np.array(list(devices or jax.local_devices())), ('devices',))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('devices'))
    put_array = functools.partial(jax.device_put, device=sharding)

  def put(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    return {
      name: value if name in HOST_ONLY_KEYS else put_array(value) for name, value in batch.items()
    }

  try:
    for batch in batches:
      queue.append(put(batch))
      if len(queue) > size:
        yield queue.popleft()
    while queue:
      yield queue.popleft()
  finally:
    # Closing this closes the source now (a Dataset iterator deletes its tf.data
    # iterator, which waits for the work in flight), not whenever the last
    # reference to it goes.
    queue.clear()
    close = getattr(batches, 'close', None)
    if close is not None:
      # Said first: with clips being decoded (video files) this can take a while.
      logging.info('Stopping the input pipeline: the clips in flight are finished first.')
      start = time.monotonic()
      close()
      waited = time.monotonic() - start
      if waited > _SLOW_CLOSE_S:
        logging.info('Stopped the input pipeline in %.1f s.', waited)

"""tf.data pipelines: a source's records -> checked clips -> host batches.

A source (the `Source` protocol of `sources.py`: `TFRecordSource`,
`TfdsSource`, `VideoFilesSource`) yields raw elements and parses them into
records; `clips.py` makes each record's clip. This module orders, shuffles and
seeds the stream of each split, and checks each clip: a clip whose record had a
problem (its `error` string) is either raised, naming the record
(`data_error_message` finds it in TensorFlow's error), or skipped and counted
(`SkipCounter`, `dataset_configs.skip_corrupt`).
"""

from __future__ import annotations

import re
import threading
from typing import Any

import tensorflow as tf
from absl import logging

from vivit_jax.data import clips
from vivit_jax.data.clip_spec import ClipSpec
from vivit_jax.data.sources import ClipSource, Record, Source, traced

ERROR_MARK = 'vivit_jax data error: '
_ERROR_RE = re.compile(re.escape(ERROR_MARK) + r'(.*?)\]?\s*(\[\[|\Z|\n)', re.S)
# Streams of random numbers folded from the seed, one per purpose.
_SHUFFLE_STREAM, _CLIP_STREAM = 1, 2


class SkipCounter:
  """Counts (and logs) records skipped because of bad data."""

  def __init__(self) -> None:
    self.count = 0
    self._lock = threading.Lock()

  def add(self, what: str) -> None:
    """Counts and logs one skipped record; `what` names it and its problem."""
    with self._lock:
      self.count += 1
      count = self.count
    logging.warning(
      'Skipping %s (dataset_configs.skip_corrupt=True; %d records skipped so far).', what, count
    )

  def log(self, where: tf.Tensor, error: tf.Tensor) -> bool:
    """`add` for a clip in the graph (via tf.py_function); False: drop the clip."""
    self.add(f'{where.numpy().decode()}: {error.numpy().decode()}')
    return False


def check_clips(ds: tf.data.Dataset, skip: SkipCounter | None) -> tf.data.Dataset:
  """Raises on clips with an error, or drops and counts them when `skip` is given."""
  if skip is None:

    def check(clip):
      message = tf.strings.join([ERROR_MARK, clip['where'], ' ', clip['error']])
      ok = tf.debugging.Assert(tf.equal(clip['error'], ''), [message])
      with tf.control_dependencies([ok]):
        return {k: tf.identity(v) for k, v in clip.items() if k not in ('where', 'error')}

    return ds.map(traced(check))

  def keep(clip) -> tf.Tensor:
    return tf.cond(
      tf.equal(clip['error'], ''),
      lambda: tf.constant(True),
      lambda: tf.py_function(skip.log, [clip['where'], clip['error']], tf.bool),
    )

  ds = ds.filter(traced(keep))
  return ds.map(traced(lambda clip: {k: v for k, v in clip.items() if k not in ('where', 'error')}))


def data_error_message(error: tf.errors.OpError) -> str | None:
  """The record and problem from a failed check, or None for other errors."""
  match = _ERROR_RE.search(error.message)
  return match.group(1).strip() if match else None


def train_dataset(
  source: Source,
  spec: ClipSpec,
  *,
  host_batch: int,
  seed: tf.Tensor,
  start_example: int = 0,
  examples_per_epoch: int | None = None,
  shuffle_buffer: int,
  skip: SkipCounter | None,
) -> tf.data.Dataset:
  """Infinite, shuffled, augmented batches {'inputs': f32[B,T,S,S,3], ...}.

  Epoch e reads the files in an order and through a shuffle buffer seeded by
  (seed, e), and clip n is augmented with a seed made from (seed, n), so the
  stream depends only on the seed. Starting at example `start_example` skips
  whole epochs without reading them and the rest of one epoch without decoding.
  """
  shuffle_seed = tf.random.experimental.stateless_fold_in(seed, _SHUFFLE_STREAM)
  clip_seed = tf.random.experimental.stateless_fold_in(seed, _CLIP_STREAM)
  first_epoch, offset = 0, 0
  if start_example and examples_per_epoch:
    first_epoch, offset = divmod(start_example, examples_per_epoch)

  def epoch(e: tf.Tensor) -> tf.data.Dataset:
    epoch_seed = tf.random.experimental.stateless_fold_in(shuffle_seed, e)
    buffer_seed = tf.random.stateless_uniform(
      [], epoch_seed, minval=None, maxval=None, dtype=tf.int64
    )
    return source.epoch(epoch_seed).shuffle(shuffle_buffer, seed=buffer_seed)

  ds = tf.data.Dataset.range(first_epoch, 2**62).flat_map(traced(epoch)).skip(offset)
  ds = ds.enumerate(start=start_example)

  def process(n: tf.Tensor, raw: Any) -> Record:
    clip_key = tf.random.experimental.stateless_fold_in(clip_seed, n)
    if isinstance(source, ClipSource):
      return source.train_clip(source.parse(raw), clip_key, spec)
    return clips.train_clip(source.parse(raw), clip_key, spec, source.jpeg_only)

  ds = ds.map(traced(process), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = check_clips(ds, skip)
  return ds.batch(host_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(
  source: Source, spec: ClipSpec, *, host_batch: int, multi_view: bool, skip: SkipCounter | None
) -> tf.data.Dataset:
  """One ordered pass; the last batch may be smaller (padded by the caller)."""

  def make(raw: Any) -> Record:
    record = source.parse(raw)
    if isinstance(source, ClipSource):
      return source.test_clip(record, spec) if multi_view else source.eval_clip(record, spec)
    return (clips.test_clip if multi_view else clips.eval_clip)(record, spec, source.jpeg_only)

  ds = source.ordered().map(
    traced(make),
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=True,
  )
  ds = check_clips(ds, skip)
  return ds.batch(host_batch).prefetch(tf.data.AUTOTUNE)


def with_options(ds: tf.data.Dataset) -> tf.data.Dataset:
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  return ds.with_options(options)

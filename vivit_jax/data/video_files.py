"""`dataset_name='video_files'`: clips straight from video files, no TFRecords.

A table (`dataset_configs.tables.<split>`) is a CSV with columns
`video_path,label[,start,end]` (the columns `make_tfrecords` reads; paths and the
CSV itself relative to `base_dir`) or a directory with one sub-folder of videos
per class. Each video is one example. A video may be a folder of frames
(`<class>/<video>/<frame>.jpg`, or a folder in the CSV): its sorted image files
at `dataset_configs.frame_folder_fps` (see `video_io`). Clips are made as from TFRecords written
by `make_tfrecords --fps=<fps> --min_resize=<min_resize>`: the same sampling
functions pick frame indices of the video resampled to `fps`, only those frames
are decoded (`video_io.decode_frames`: seek to the key frame before them, decode
forward), resized to short side `min_resize` by FFmpeg's scaler as
make_tfrecords does, and handed as u8[T,H,W,3] to the same crop, augmentation
and normalisation code.

Decoding runs in `decode_workers` threads (PyAV releases the GIL while FFmpeg
decodes and scales); a call that takes longer than `decode_timeout_s` is
abandoned and reported as bad input, so a stalled file cannot hang training.

`base_dir`, the tables, the videos and the workdir may be URIs (`gs://...`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import os
import queue
import threading
from collections.abc import Callable, Sequence

import ml_collections
import numpy as np
import tensorflow as tf

from vivit_jax import fileio
from vivit_jax.data import clips, file_check, pipeline, records, sampling, video_io
from vivit_jax.data.clip_spec import ClipSpec
from vivit_jax.data.sources import DataError, Record, SplitData, SplitRequest, examples_in_split

VIDEO_EXTENSIONS = frozenset(
  {'.mp4', '.m4v', '.mov', '.mkv', '.webm', '.avi', '.mpg', '.mpeg', '.ogv', '.flv', '.wmv'}
)
# Videos whose frame index (probe) is kept between the length and decode calls.
_INDEX_CACHE_SIZE = 1024


@dataclasses.dataclass(frozen=True)
class Entry:
  """One video example: where it is, its label and clip bounds (seconds)."""

  path: str
  key: str  # The path as the table gives it: the example's key.
  label: str
  start: float | None
  end: float | None
  where: str  # Table and line, for error messages.


def _is_video(name: str) -> bool:
  return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def read_table(base_dir: str | None, table: str | Sequence[str]) -> list[Entry]:
  """The videos a table names, in table order (class folders: sorted by class, then path).

  Raises:
    DataError: a missing table, a bad CSV row, or a directory without videos.
  """
  if isinstance(table, (list, tuple)):
    return [e for t in table for e in read_table(base_dir, t)]
  path = str(table)
  if base_dir and not fileio.is_absolute(path):
    path = os.path.join(base_dir, path)
  root = base_dir or ''
  if fileio.isdir(path):
    return _read_folders(path)
  if not fileio.isfile(path):
    raise DataError(
      f'Video table {path!r} does not exist: give a CSV (video_path,label[,start,end]) or a '
      'directory with one sub-folder per class. Check dataset_configs.base_dir and '
      'dataset_configs.tables.'
    )
  try:
    rows = video_io.read_csv(path)
  except (ValueError, UnicodeDecodeError) as e:
    raise DataError(f'Bad video table: {e}') from None
  if not rows:
    raise DataError(f'Video table {path} lists no videos.')
  entries = []
  for line, row in enumerate(rows, start=2):
    video = row.video_path
    if not fileio.is_absolute(video):
      video = os.path.join(root, video)
    entries.append(
      Entry(video, row.video_path, row.label, row.start, row.end, f'{path} line {line}')
    )
  return entries


def _read_folders(directory: str) -> list[Entry]:
  entries = []
  for label in fileio.listdir(directory):
    class_dir = os.path.join(directory, label)
    if label.startswith('.') or not fileio.isdir(class_dir):
      continue
    videos = _videos_under(class_dir)
    if not videos:  # Dropping it would train a model of one class less, without a word.
      raise DataError(
        f'Class folder {class_dir} holds no videos: put the videos of class {label!r} in it '
        f'(<class>/<video> with extensions {", ".join(sorted(VIDEO_EXTENSIONS))}, or '
        '<class>/<video>/<frame>.jpg for a folder of frames), or remove the folder.'
      )
    for relative in videos:
      video, key = os.path.join(class_dir, relative), os.path.join(label, relative)
      entries.append(Entry(video, key, label, None, None, f'class folder {class_dir}'))
  if not entries:
    raise DataError(
      f'Directory {directory} holds no videos in class sub-folders (<class>/<video>, '
      f'extensions {", ".join(sorted(VIDEO_EXTENSIONS))}).'
    )
  return entries


def _videos_under(directory: str) -> list[str]:
  """The videos anywhere under `directory`, relative to it, depth first in name order.

  A folder's own files come before its sub-folders, as a sorted top-down
  `os.walk` gives them. Sorted here, since a walk's order (and, in a bucket,
  the spelling of the folders it yields) is the storage's. A folder below
  `directory` that holds frames (`video_io.FRAME_EXTENSIONS`) is one video, in
  its parent's place among the files.
  """
  found = []
  top = None
  for parent, _, files in fileio.walk(directory):
    top = parent if top is None else top  # The walk yields `directory` first.
    folders = [f for f in parent[len(top) :].split('/') if f]
    found += [(folders, name) for name in files if _is_video(name)]
    if folders and any(video_io.is_frame_file(name) for name in files):
      found.append((folders[:-1], folders[-1]))
  # Within a folder, files (0) before sub-folders (1); each in name order.
  found.sort(key=lambda item: [(1, f) for f in item[0]] + [(0, item[1])])
  return [os.path.join(*folders, name) for folders, name in found]


def label_names(
  dc: ml_collections.ConfigDict, tables: dict[str, list[Entry]], workdir: str | None, chief: bool
) -> list[str]:
  """The class names: dataset_configs.label_map, else the workdir's, else the train labels.

  The map made from the train labels (sorted, unique) is written to
  `<workdir>/label_map.txt` and read back on a restart, so indices never change
  under a checkpoint.
  """
  if dc.label_map:
    path = dc.label_map
    if dc.base_dir and not fileio.is_absolute(path) and not fileio.exists(path):
      path = os.path.join(dc.base_dir, path)
    if not fileio.exists(path):
      raise DataError(f'dataset_configs.label_map file {dc.label_map!r} does not exist.')
    return records.read_label_map(path)
  saved = os.path.join(workdir, records.LABEL_MAP_FILENAME) if workdir else None
  if saved and fileio.exists(saved):
    return records.read_label_map(saved)
  if 'train' not in tables:
    raise DataError(
      'video_files needs the class names: set dataset_configs.label_map (one class a line) '
      'or dataset_configs.tables.train, whose sorted labels make the map.'
    )
  names = sorted({e.label for e in tables['train']})
  if saved and chief:
    fileio.makedirs(workdir)
    records.write_label_map(saved, names)
  return names


def labelled(
  entries: Sequence[Entry], names: Sequence[str], skip: pipeline.SkipCounter | None
) -> list[tuple[Entry, int]]:
  """Entries with their class index; an unknown label is a DataError, or skipped and counted."""
  index = {n: i for i, n in enumerate(names)}
  out = []
  for entry in entries:
    if entry.label in index:
      out.append((entry, index[entry.label]))
      continue
    message = (
      f'{entry.where}: video {entry.key} has label {entry.label!r}, which is not in the label '
      f'map ({len(names)} classes)'
    )
    if skip is None:
      raise DataError(
        f'Bad input data: {message}. Fix the table or dataset_configs.label_map, or set '
        'dataset_configs.skip_corrupt=True to skip it.'
      )
    skip.add(message)
  return out


class _Workers:
  """Daemon threads running calls with a timeout; a stalled call is abandoned.

  An abandoned thread is replaced, so the pool keeps its size, and being a
  daemon it cannot block the interpreter's exit.
  """

  def __init__(self, size: int):
    self._jobs: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(size):
      self._start()

  def _start(self) -> None:
    threading.Thread(target=self._run, daemon=True, name='video-decode').start()

  def _run(self) -> None:
    while True:
      future, fn, args = self._jobs.get()
      if not future.set_running_or_notify_cancel():
        continue
      try:
        future.set_result(fn(*args))
      except BaseException as e:  # noqa: BLE001 - handed to the caller.
        future.set_exception(e)

  def call(self, timeout: float, fn: Callable, *args):
    """fn(*args), or raises TimeoutError after `timeout` seconds."""
    future: concurrent.futures.Future = concurrent.futures.Future()
    self._jobs.put((future, fn, args))
    try:
      return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
      if not future.cancel():  # Running: leave the thread to it and start another.
        self._start()
      raise TimeoutError from None


class Decoder:
  """Frame counts and frames of videos for the tf.data graph (via tf.numpy_function).

  Never raises into the graph: every problem comes back as an error string
  that the pipeline reports (naming the video) or skips.
  """

  def __init__(
    self,
    *,
    fps: float,
    min_resize: int,
    workers: int,
    timeout_s: float,
    frames_fps: float | None = None,
  ):
    self.fps = fps
    self.frames_fps = frames_fps or fps  # The rate of a folder of frames.
    self.min_resize = min_resize
    self.timeout_s = timeout_s
    self._workers = _Workers(workers)
    self._cache: collections.OrderedDict = collections.OrderedDict()
    self._lock = threading.Lock()

  def _index(self, path: str) -> video_io.VideoIndex:
    with self._lock:
      if path in self._cache:
        self._cache.move_to_end(path)
        return self._cache[path]
    index = video_io.probe(path, self.frames_fps)
    with self._lock:
      self._cache[path] = index
      while len(self._cache) > _INDEX_CACHE_SIZE:
        self._cache.popitem(last=False)
    return index

  def _guarded(self, fn: Callable, *args):
    try:
      return self._workers.call(self.timeout_s, fn, *args), ''
    except TimeoutError:
      return None, (
        f'stalled: decoding took more than {self.timeout_s:g} s and was abandoned '
        '(dataset_configs.decode_timeout_s)'
      )
    except video_io.VideoError as e:
      return None, str(e)
    except Exception as e:  # noqa: BLE001 - reported with the video's name.
      return None, f'cannot be decoded ({type(e).__name__}: {e})'

  def _count(self, path: str, start: float, end: float) -> int:
    return video_io.num_frames(self._index(path), self.fps, _opt(start), _opt(end))

  def length(self, path: bytes, start: float, end: float) -> tuple[np.int32, bytes]:
    """Frames of the video at `fps` (0 on error) and the error ('' if none)."""
    count, error = self._guarded(self._count, path.decode(), float(start), float(end))
    if not error and not count:
      error = 'has no frames (an empty video, or start/end outside it)'
    return np.int32(count or 0), error.encode()

  def _frames(self, path: str, start: float, end: float, indices: np.ndarray) -> np.ndarray:
    return video_io.decode_frames(
      path,
      indices,
      fps=self.fps,
      min_resize=self.min_resize,
      start=_opt(start),
      end=_opt(end),
      index=self._index(path),
      thread_type='NONE',  # The parallelism is across videos (decode_workers).
    )

  def frames(
    self, path: bytes, start: float, end: float, indices: np.ndarray, error: bytes
  ) -> tuple[np.ndarray, bytes]:
    """u8[*indices.shape, H, W, 3] and '' , or a 1x1 placeholder and the error."""
    if not error:
      frames, message = self._guarded(
        self._frames, path.decode(), float(start), float(end), indices
      )
      if not message:
        return frames, b''
      error = message.encode()
    return np.zeros((*indices.shape, 1, 1, 3), np.uint8), error


def _opt(value: float) -> float | None:
  return None if math.isnan(value) else value


class VideoFilesSource:
  """Video examples of one host, and the clip makers that decode them.

  Args:
    examples: (entry, class index) pairs of this host.
    decoder: the `Decoder`.
  """

  jpeg_only = False

  def __init__(self, examples: Sequence[tuple[Entry, int]], decoder: Decoder):
    self.examples = list(examples)
    self.decoder = decoder

  @property
  def num_examples(self) -> int:
    return len(self.examples)

  def _tensors(self) -> dict[str, tf.Tensor]:
    nan = float('nan')
    entries = [e for e, _ in self.examples]
    return {
      'path': tf.constant([e.path for e in entries], tf.string),
      'label_index': tf.constant([[i] for _, i in self.examples], tf.int64),
      'start': tf.constant([nan if e.start is None else e.start for e in entries], tf.float64),
      'end': tf.constant([nan if e.end is None else e.end for e in entries], tf.float64),
      'key': tf.constant([e.key for e in entries], tf.string),
      'where': tf.constant([f'video {e.path}' for e in entries], tf.string),
    }

  def ordered(self) -> tf.data.Dataset:
    """Every video once, in table order."""
    return tf.data.Dataset.from_tensor_slices(self._tensors())

  def epoch(self, seed: tf.Tensor) -> tf.data.Dataset:
    """Every video once, in an order drawn from `seed` (int32[2])."""
    tensors = self._tensors()
    order = tf.random.experimental.stateless_shuffle(tf.range(self.num_examples), seed)
    return tf.data.Dataset.from_tensor_slices({k: tf.gather(v, order) for k, v in tensors.items()})

  def parse(self, raw: Record) -> Record:
    return raw

  def length(self, record) -> tuple[tf.Tensor, tf.Tensor]:
    """The record's number of frames at the decoder's fps, and its error ('' if it opened)."""
    length, error = tf.numpy_function(
      self.decoder.length,
      [record['path'], record['start'], record['end']],
      [tf.int32, tf.string],
      stateful=False,
    )
    return tf.ensure_shape(length, []), tf.ensure_shape(error, [])

  def decode(self, record, indices: tf.Tensor, error: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Frames u8[*indices.shape, H, W, 3] and the error (no decoding once `error` is set)."""
    frames, error = tf.numpy_function(
      self.decoder.frames,
      [record['path'], record['start'], record['end'], indices, error],
      [tf.uint8, tf.string],
      stateful=False,
    )
    frames.set_shape(indices.shape.concatenate([None, None, 3]))
    return frames, tf.ensure_shape(error, [])

  # Clip makers, called by `pipeline` in place of its TFRecord ones.

  def _checked(self, record, spec: ClipSpec):
    target, error = clips.label_target(record['label_index'], spec)
    length, decode_error = self.length(record)
    return target, tf.where(tf.equal(error, ''), decode_error, error), length

  def train_clip(self, record, seed: tf.Tensor, spec: ClipSpec):
    """As `clips.train_clip`: the same seeds, sampling and augmentation."""
    target, error, length = self._checked(record, spec)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    indices = sampling.train_indices(length, spec.num_frames, spec.stride, seeds[0])
    frames, error = self.decode(record, indices, error)
    return clips.train_output(
      record,
      target,
      error,
      lambda: clips.train_from_frames(frames, seeds[1], seeds[2], spec),
      spec,
    )

  def eval_clip(self, record, spec: ClipSpec):
    """As `clips.eval_clip`: the centre window."""
    target, error, length = self._checked(record, spec)
    indices = sampling.centre_indices(length, spec.num_frames, spec.stride)
    frames, error = self.decode(record, indices, error)
    shape = [spec.num_frames, spec.crop_size, spec.crop_size, 3]
    clip = clips.if_valid(error, lambda: clips.eval_from_frames(frames, spec), shape)
    return clips.element(record, clip, target, error)

  def test_clip(self, record, spec: ClipSpec):
    """As `clips.test_clip`: all views, f32[V,T,S,S,3]."""
    target, error, length = self._checked(record, spec)
    t, s = spec.num_frames, spec.crop_size
    indices = sampling.multi_view_indices(length, t, spec.stride, spec.num_test_clips)
    frames, error = self.decode(record, indices, error)
    views = clips.if_valid(
      error, lambda: clips.test_from_frames(frames, spec), [spec.num_views, t, s, s, 3]
    )
    return clips.element(record, views, target, error)


def splits(request: SplitRequest) -> tuple[dict[str, SplitData], int, list[str]]:
  """Video tables -> this host's splits (host i takes videos i, i + hosts, ...), the classes.

  Every file of every table is checked first (file_check), and every host checks all of
  them and every label, so all hosts stop, or skip and count the same videos, together.
  """
  dc, index, count = request.dc, request.process_index, request.process_count
  if dc.split_names or dc.class_splits or dc.multi_label:
    raise DataError(
      'video_files tables hold one label per video: multi-head (split_names, class_splits) '
      'and multi_label data need TFRecords (make_tfrecords).'
    )
  tables = {name: read_table(dc.base_dir, dc.tables[name]) for name in dc.tables}
  # A bad test video is found now, not after training.
  file_check.check_tables(
    {name: [(e.path, e.where) for e in entries] for name, entries in tables.items()},
    file_check.video_problem,
    what='video',
    fix='Fix the file or its row in the table, or set dataset_configs.skip_corrupt=True to '
    'skip bad videos.',
    skip_corrupt=dc.skip_corrupt,
    timeout_s=dc.decode_timeout_s,
  )
  names = label_names(dc, tables, request.workdir, chief=index == 0)
  decoder = Decoder(
    fps=dc.video_fps or dc.fps,
    min_resize=dc.min_resize,
    workers=dc.decode_workers or os.cpu_count() or 1,
    timeout_s=dc.decode_timeout_s,
    frames_fps=dc.frame_folder_fps,
  )
  result = {}
  for name, entries in tables.items():
    examples = labelled(entries, names, request.skipped if dc.skip_corrupt else None)
    if len(examples) < count:
      raise DataError(
        f"The '{name}' table lists {len(examples)} usable videos, fewer than the "
        f'{count} hosts: every host needs at least one.'
      )
    steps = None
    if count > 1:
      steps = math.ceil(math.ceil(len(examples) / count) / request.batch(name))
    # The table is the exact count; a stale config value (say, of the full set
    # when the table lists a sample) would only mislead the epoch length.
    num = examples_in_split(
      name,
      dc.examples_per_subset.get(name),
      len(examples),
      f"the '{name}' table {dc.tables[name]!r} lists {{}} usable videos",
    )
    result[name] = SplitData(VideoFilesSource(examples[index::count], decoder), num, steps, [])
  return result, dc.num_classes or len(names), names

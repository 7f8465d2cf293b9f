"""Decoding video files with PyAV: resampled to a frame rate, only the frames asked for.

One definition of how a video becomes frames at a fixed rate, used by
`make_tfrecords` (every frame), `video_files` (the sampled frames of a clip) and
inference (`predict`). Output frame k of a video read from `start` at `fps`
shows the last source frame whose time is at or before `start + k / fps` (the
first frame when none is), so frames are dropped or repeated to reach `fps`.
The video ends at `end`, else one frame duration (the gap between the last two
frames) after its last frame.

Reading a few frames costs a demux of the packet headers (no decoding) to learn
the frame times and key frames, then, for each run of wanted frames, a seek to
the key frame before it and decoding forward to its last wanted frame: a clip
of a long video never decodes the whole video.

A path may be a URI (`gs://...`): FFmpeg reads it through a file object that
fetches the byte ranges it seeks to, so a clip reads only its part of the
file, not a download of the whole video.

A path may also be a folder of frames (EPIC-Kitchens ships its videos so): its
image files (`FRAME_EXTENSIONS`), in the natural order of their names
(`frame_2.jpg` before `frame_10.jpg`), are one video at `frames_fps` (default:
the output rate, so each file is one output frame). Only the frames asked for
are read, each decoded by FFmpeg and scaled by the same scaler as a video's.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fractions
import io
import os
import re
from collections.abc import Iterator, Sequence

import av
import numpy as np

from vivit_jax import fileio

_TIME_EPSILON = 1e-6  # Seconds.
FRAME_EXTENSIONS = frozenset({'.jpg', '.jpeg', '.png'})


class VideoError(ValueError):
  """A video file cannot be read: missing, no video stream, no frames, undecodable."""


@dataclasses.dataclass(frozen=True)
class Row:
  """One line of a video table (`video_path,label[,start,end]`, times in seconds)."""

  video_path: str
  label: str
  start: float | None = None
  end: float | None = None


def read_csv(path: str) -> list[Row]:
  """Reads a video table; raises ValueError naming the line of a bad row."""
  rows = []
  # newline='' as the csv module wants, so a quoted field keeps its line breaks.
  with io.StringIO(fileio.read_text(path), newline='') as f:
    reader = csv.DictReader(f)
    missing = {'video_path', 'label'} - set(reader.fieldnames or ())
    if missing:
      raise ValueError(f'{path}: the header lacks column(s) {sorted(missing)}.')
    for line, record in enumerate(reader, start=2):
      try:
        start = float(record['start']) if record.get('start') not in (None, '') else None
        end = float(record['end']) if record.get('end') not in (None, '') else None
      except ValueError as e:
        raise ValueError(f'{path} line {line}: bad start/end ({e}).') from None
      if not record['video_path'] or record['label'] in (None, ''):
        raise ValueError(f'{path} line {line}: empty video_path or label.')
      rows.append(Row(record['video_path'], record['label'].strip(), start, end))
  return rows


@dataclasses.dataclass(frozen=True)
class VideoIndex:
  """Where the frames of a video's first video stream are, from its packet headers.

  Attributes:
    pts: int64[N] presentation timestamps of the frames, ascending.
    times: f64[N] the same in seconds (as PyAV's `frame.time`).
    keyframe: bool[N] whether decoding can start at that frame.
    width, height: frame size.
    frames: for a folder of frames, the N image files; None for a video file.
  """

  pts: np.ndarray
  times: np.ndarray
  keyframe: np.ndarray
  width: int
  height: int
  frames: tuple[str, ...] | None = None


def is_frame_file(name: str) -> bool:
  """Whether file `name` is an image a folder of frames is made of."""
  return os.path.splitext(name)[1].lower() in FRAME_EXTENSIONS


def _natural(name: str) -> list:
  """Sort key: digit runs compare as numbers, so frame_2 comes before frame_10."""
  return [
    (0, int(part), '') if part.isdigit() else (1, 0, part) for part in re.split(r'(\d+)', name)
  ]


def frame_files(directory: str) -> list[str]:
  """The image files of a folder of frames, in the natural order of their names."""
  names = [n for n in fileio.listdir(directory) if is_frame_file(n)]
  return [os.path.join(directory, n) for n in sorted(names, key=_natural)]


@contextlib.contextmanager
def _open(path: str) -> Iterator[av.container.InputContainer]:
  """The container of `path`, open for the `with` block."""
  with contextlib.ExitStack() as stack:
    # FFmpeg reads a local file itself (faster than through Python); a URI
    # through a seekable file object of the storage layer.
    source = stack.enter_context(fileio.open_file(path, 'rb')) if fileio.is_uri(path) else path
    try:
      container = av.open(source, metadata_errors='ignore')
    except FileNotFoundError:
      raise VideoError('file not found') from None
    except av.error.FFmpegError as e:
      raise VideoError(f'cannot be opened ({type(e).__name__}: {e})') from None
    with container:
      yield container


def _video_stream(container):
  if not container.streams.video:
    raise VideoError('has no video stream (not a video, or truncated so that its index is lost)')
  return container.streams.video[0]


def _frames_of(directory: str) -> list[str]:
  files = frame_files(directory)
  if not files:
    raise VideoError(
      f'is a folder without frames (no {", ".join(sorted(FRAME_EXTENSIONS))} files in it)'
    )
  return files


def _probe_frames(directory: str, frames_fps: float) -> VideoIndex:
  """The index of a folder of frames: frame k at k / frames_fps, every frame a key frame."""
  files = _frames_of(directory)
  with _open(files[0]) as container:
    context = _video_stream(container).codec_context
    width, height = context.width, context.height
  if not width or not height:
    raise VideoError(f'has a first frame {os.path.basename(files[0])} of unknown size')
  count = len(files)
  return VideoIndex(
    np.arange(count, dtype=np.int64),
    np.arange(count) / frames_fps,
    np.ones(count, bool),
    int(width),
    int(height),
    tuple(files),
  )


def probe(path: str, frames_fps: float | None = None) -> VideoIndex:
  """Reads the frame times and key frames of `path` without decoding.

  Args:
    path: a video file, or a folder of frames.
    frames_fps: the rate of a folder's frames (required for a folder).

  Raises:
    VideoError: the file is missing or unreadable, or has no video stream or no frames.
  """
  if fileio.isdir(path):
    if not frames_fps:
      raise ValueError(f'{path} is a folder of frames: give its frames_fps.')
    return _probe_frames(path, frames_fps)
  with _open(path) as container:
    stream = _video_stream(container)
    pts, key = [], []
    try:
      for packet in container.demux(stream):
        if packet.pts is not None and packet.size:
          pts.append(packet.pts)
          key.append(packet.is_keyframe)
    except av.error.FFmpegError as e:
      raise VideoError(f'cannot be read ({type(e).__name__}: {e})') from None
    if stream.frames and len(pts) < stream.frames:
      raise VideoError(f'is truncated: {len(pts)} of its {stream.frames} frames can be read')
    if not pts:
      raise VideoError('has no frames')
    width, height = stream.codec_context.width, stream.codec_context.height
    time_base = stream.time_base
  order = np.argsort(pts, kind='stable')
  pts = np.asarray(pts, np.int64)[order]
  keyframe = np.asarray(key, bool)[order]
  keyframe[0] = True  # Decoding from the start always works.
  times = np.array([float(fractions.Fraction(int(p)) * time_base) for p in pts])
  return VideoIndex(pts, times, keyframe, int(width), int(height))


def resample(
  times: np.ndarray, fps: float, start: float | None = None, end: float | None = None
) -> np.ndarray:
  """int64[K]: the source frame shown by each output frame at `fps` (see the module doc).

  Args:
    times: f64[N] ascending source frame times in seconds.
    fps: output frame rate.
    start: first output time (default 0).
    end: output stops before this time (default: one frame duration after the last frame).

  Returns nothing when `start` is at or after the end of the video.
  """
  begin = start or 0.0
  duration = times[-1] - times[-2] if len(times) > 1 else 1.0 / fps
  video_end = times[-1] + duration
  if begin >= video_end - _TIME_EPSILON or (end is not None and times[0] >= end):
    return np.zeros([0], np.int64)
  # An end past the video (common in annotations) repeats the last frame up to it.
  stop = video_end if end is None else end
  # Output times are computed, not accumulated, and compared with a tolerance far
  # below any timestamp resolution, so that a frame at exactly k / fps is shown at
  # output frame k despite rounding.
  count = max(0, int(np.ceil((stop - begin) * fps)) + 1)
  targets = begin + np.arange(count) / fps
  targets = targets[targets < stop - _TIME_EPSILON]
  return np.maximum(np.searchsorted(times, targets + _TIME_EPSILON, side='right') - 1, 0).astype(
    np.int64
  )


def short_side_size(width: int, height: int, min_resize: int) -> tuple[int, int]:
  """(width, height) scaled so the short side is `min_resize` (0: unchanged)."""
  if not min_resize:
    return width, height
  scale = min_resize / min(width, height)
  if width <= height:
    return min_resize, round(height * scale)
  return round(width * scale), min_resize


def _runs(index: VideoIndex, wanted: np.ndarray) -> list[tuple[int, list[int]]]:
  """Groups the wanted source frames (ascending) into (key frame, frames) decode runs.

  A new run starts when a key frame lies after the previous wanted frame, so
  seeking there beats decoding through the gap.
  """
  keys = np.flatnonzero(index.keyframe)
  runs: list[tuple[int, list[int]]] = []
  for s in wanted:
    key = int(keys[np.searchsorted(keys, s, side='right') - 1])
    if runs and key <= runs[-1][1][-1]:
      runs[-1][1].append(int(s))
    else:
      runs.append((key, [int(s)]))
  return runs


def _decode_wanted(container, stream, wanted_pts: set[int]):
  """Decoded frames from the current position, skipping unwanted non-reference frames.

  No other frame depends on a non-reference frame, so not decoding the ones
  not wanted changes no pixel of the others (a third of H.264's frames with
  the x264 defaults).
  """
  context = stream.codec_context
  for packet in container.demux(stream):
    if packet.pts is not None:
      context.skip_frame = 'DEFAULT' if packet.pts in wanted_pts else 'NONREF'
    yield from packet.decode()


def _decode_video_frames(
  path: str, index: VideoIndex, wanted: np.ndarray, width: int, height: int, thread_type: str
) -> dict[int, np.ndarray]:
  """{source frame: u8[H, W, 3]} of the wanted source frames (ascending) of a video file."""
  decoded: dict[int, np.ndarray] = {}
  with _open(path) as container:
    stream = _video_stream(container)
    stream.thread_type = thread_type
    pts_to_frame = {int(p): i for i, p in enumerate(index.pts)}
    wanted_pts = set(index.pts[wanted].tolist())
    try:
      for key, frames in _runs(index, wanted):
        if key > 0 or decoded:
          container.seek(int(index.pts[key]), backward=True, any_frame=False, stream=stream)
        todo, last = set(frames), frames[-1]
        for frame in _decode_wanted(container, stream, wanted_pts):
          i = pts_to_frame.get(frame.pts)
          if i is None:
            continue
          if i in todo:
            decoded[i] = frame.to_ndarray(width=width, height=height, format='rgb24')
            todo.discard(i)
          if i >= last or not todo:
            break
    except av.error.FFmpegError as e:
      raise VideoError(f'cannot be decoded ({type(e).__name__}: {e})') from None
  return decoded


def _decode_image(path: str, width: int, height: int) -> np.ndarray:
  """u8[height, width, 3]: one frame file of a folder of frames, scaled as a video's frames."""
  name = os.path.basename(path)
  try:
    with _open(path) as container:
      for frame in container.decode(_video_stream(container)):
        return frame.to_ndarray(width=width, height=height, format='rgb24')
  except av.error.FFmpegError as e:
    raise VideoError(
      f'has a bad frame {name}: cannot be decoded ({type(e).__name__}: {e})'
    ) from None
  except VideoError as e:
    raise VideoError(f'has a bad frame {name}: {e}') from None
  raise VideoError(f'has a bad frame {name}: it holds no image')


def decode_frames(
  path: str,
  frame_indices: np.ndarray | Sequence[int],
  *,
  fps: float,
  min_resize: int,
  start: float | None = None,
  end: float | None = None,
  index: VideoIndex | None = None,
  thread_type: str = 'AUTO',
  frames_fps: float | None = None,
) -> np.ndarray:
  """Decodes output frames `frame_indices` of `path` resampled to `fps`.

  Args:
    path: any file PyAV (FFmpeg) reads, or a folder of frames.
    frame_indices: int[...] indices into the resampled video (see `num_frames`).
    fps: output frame rate.
    min_resize: short side of the returned frames (0 keeps the size).
    start: start time in seconds (default 0).
    end: end time in seconds (default: the end of the video).
    index: `probe(path)`, when already known.
    thread_type: FFmpeg's threading within this decode ('AUTO', or 'NONE' when
      many videos are decoded in parallel threads, which scales better).
    frames_fps: the rate of a folder's frames (default: `fps`).

  Returns:
    u8[*frame_indices.shape, H, W, 3].

  Raises:
    VideoError: unreadable file, no video stream or frames, an index out of
      range, or a frame that cannot be decoded.
  """
  frame_indices = np.asarray(frame_indices, np.int64)
  index = index or probe(path, frames_fps or fps)
  source = resample(index.times, fps, start, end)
  if not len(source):
    raise VideoError('has no frames between the start and end times')
  flat = frame_indices.reshape(-1)
  if flat.size and (flat.min() < 0 or flat.max() >= len(source)):
    raise VideoError(f'has {len(source)} frames at {fps:g} fps; frame {flat.max()} was asked for')
  wanted_src = source[flat]
  wanted = np.unique(wanted_src)
  width, height = short_side_size(index.width, index.height, min_resize)
  if index.frames is not None:
    decoded = {int(i): _decode_image(index.frames[int(i)], width, height) for i in wanted}
  else:
    decoded = _decode_video_frames(path, index, wanted, width, height, thread_type)
  missing = [int(i) for i in wanted if int(i) not in decoded]
  if missing:
    raise VideoError(
      f'frame {missing[0]} (at {index.times[missing[0]]:.3f} s) could not be decoded '
      f'({len(missing)} of {len(wanted)} wanted frames missing; the file may be truncated)'
    )
  out = np.stack([decoded[int(s)] for s in wanted_src]) if flat.size else None
  if out is None:
    return np.zeros((*frame_indices.shape, height, width, 3), np.uint8)
  return out.reshape(*frame_indices.shape, height, width, 3)


def num_frames(
  index: VideoIndex, fps: float, start: float | None = None, end: float | None = None
) -> int:
  """Number of frames of the video resampled to `fps` between `start` and `end`."""
  return len(resample(index.times, fps, start, end))


def decode_video(
  path: str,
  *,
  fps: float,
  min_resize: int,
  start: float | None = None,
  end: float | None = None,
  frames_fps: float | None = None,
) -> np.ndarray:
  """Every frame of `path` between `start` and `end` resampled to `fps`: u8[N, H, W, 3].

  `path` may be a folder of frames at `frames_fps` (default: `fps`).

  Raises:
    VideoError: as `decode_frames`, and for a video without frames in the range.
  """
  index = probe(path, frames_fps or fps)
  count = num_frames(index, fps, start, end)
  if not count:
    raise VideoError('has no frames (empty video, or start/end outside it)')
  return decode_frames(
    path, np.arange(count), fps=fps, min_resize=min_resize, start=start, end=end, index=index
  )


def check_opens(path: str) -> None:
  """Opens `path`'s container and finds its video stream, decoding nothing.

  The cheap check of a table's videos before training (FFmpeg reads the
  container's header and probes its streams).

  Raises:
    VideoError: the file is missing, is not a container FFmpeg can open, or
      holds no video stream; a folder of frames holds no frames, or its first
      frame does not open.
  """
  if fileio.isdir(path):
    path = _frames_of(path)[0]
  with _open(path) as container:
    _video_stream(container)

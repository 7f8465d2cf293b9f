"""DMVR's TFRecord format: writing and parsing one clip.

Each record is a `tf.train.SequenceExample`, as DMVR and Scenic read them:

- feature list `image/encoded`: one JPEG per frame (one bytes Feature per frame);
- context `clip/label/index`: int64, one value per class present (several values
  mean a multi-label clip);
- context `clip/label/text`: bytes, the class names (optional);
- context `video/filename`: bytes, the source video (optional; the per-video key);
- context `clip/start/timestamp`, `clip/end/timestamp`: int64 microseconds
  (optional).

Multi-head labels (EPIC-Kitchens verbs and nouns) add, for every head named in
`dataset_configs.split_names`, the context keys `clip/label/<head>/index` (int64,
exactly one value) and `clip/label/<head>/text` (bytes, optional); for example
`clip/label/verb/index` and `clip/label/noun/index`. `clip/label/index` may be
present too and is then ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from vivit_jax import fileio

FRAMES_KEY = 'image/encoded'
LABEL_INDEX_KEY = 'clip/label/index'
LABEL_TEXT_KEY = 'clip/label/text'
FILENAME_KEY = 'video/filename'
START_KEY = 'clip/start/timestamp'
END_KEY = 'clip/end/timestamp'
LABEL_MAP_FILENAME = 'label_map.txt'


def head_index_key(head: str) -> str:
  """The context key holding the class index of one label head, e.g. `verb`."""
  return f'clip/label/{head}/index'


def head_text_key(head: str) -> str:
  """The context key holding the class name of one label head."""
  return f'clip/label/{head}/text'


def make_sequence_example(
  jpeg_frames: Sequence[bytes],
  label_indices: Sequence[int],
  *,
  label_texts: Sequence[str] = (),
  filename: str | None = None,
  start_us: int | None = None,
  end_us: int | None = None,
  head_labels: dict[str, tuple[int, str | None]] | None = None,
) -> tf.train.SequenceExample:
  """Builds one DMVR-format record.

  Args:
    jpeg_frames: the encoded frames, in time order.
    label_indices: class indices (several for a multi-label clip).
    label_texts: class names, parallel to `label_indices`.
    filename: the source video, written as `video/filename`.
    start_us: clip start in microseconds.
    end_us: clip end in microseconds.
    head_labels: for multi-head datasets, `{head: (index, name or None)}`.

  Returns:
    The SequenceExample.
  """
  ex = tf.train.SequenceExample()
  ctx = ex.context.feature
  ctx[LABEL_INDEX_KEY].int64_list.value.extend(int(i) for i in label_indices)
  if label_texts:
    ctx[LABEL_TEXT_KEY].bytes_list.value.extend(t.encode() for t in label_texts)
  if filename is not None:
    ctx[FILENAME_KEY].bytes_list.value.append(filename.encode())
  if start_us is not None:
    ctx[START_KEY].int64_list.value.append(int(start_us))
  if end_us is not None:
    ctx[END_KEY].int64_list.value.append(int(end_us))
  for head, (index, name) in (head_labels or {}).items():
    ctx[head_index_key(head)].int64_list.value.append(int(index))
    if name is not None:
      ctx[head_text_key(head)].bytes_list.value.append(name.encode())
  frames = ex.feature_lists.feature_list[FRAMES_KEY]
  for jpeg in jpeg_frames:
    frames.feature.add().bytes_list.value.append(jpeg)
  return ex


def parse_record(serialized: tf.Tensor, heads: Sequence[str] = ()) -> dict[str, tf.Tensor]:
  """Parses one serialized record (graph-friendly; never fails on missing keys).

  Args:
    serialized: string[] one SequenceExample.
    heads: names of the label heads of a multi-head dataset, or empty.

  Returns:
    {'frames': string[N] (N = 0 when `image/encoded` is missing),
     'label_index': int64[L] (all labels, or one per head in head order),
     'filename': string[] ('' when absent)}.
  """
  context_spec = {
    LABEL_INDEX_KEY: tf.io.VarLenFeature(tf.int64),
    FILENAME_KEY: tf.io.FixedLenFeature([], tf.string, default_value=''),
  }
  for head in heads:
    context_spec[head_index_key(head)] = tf.io.VarLenFeature(tf.int64)
  seq_spec = {FRAMES_KEY: tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)}
  context, sequence = tf.io.parse_single_sequence_example(serialized, context_spec, seq_spec)
  if heads:
    label = tf.concat([_head_index_or_invalid(context[head_index_key(h)]) for h in heads], 0)
  else:
    label = tf.sparse.to_dense(context[LABEL_INDEX_KEY])
  return {'frames': sequence[FRAMES_KEY], 'label_index': label, 'filename': context[FILENAME_KEY]}


def _head_index_or_invalid(sparse: tf.sparse.SparseTensor) -> tf.Tensor:
  """int64[1]: the head's single index, or -1 when it is missing or repeated."""
  values = tf.sparse.to_dense(sparse)
  return tf.cond(tf.size(values) == 1, lambda: values, lambda: tf.constant([-1], tf.int64))


def write_label_map(path: str, names: Sequence[str]) -> None:
  """Writes one class name a line; line i is class i (`path` may be a URI)."""
  for name in names:
    if '\n' in name or not name.strip():
      raise ValueError(f'Label {name!r} cannot be written to a label map (empty or multi-line).')
  with fileio.atomic_write(path) as f:
    f.write(''.join(f'{n}\n' for n in names))


def read_label_map(path: str) -> list[str]:
  """Reads a label map written by `write_label_map` (blank lines are ignored; a URI too)."""
  names = [n for n in fileio.read_text(path).splitlines() if n.strip()]
  if len(set(names)) != len(names):
    raise ValueError(f'Label map {path} lists a class twice.')
  return names


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
  """Encodes one u8[H,W,3] frame as JPEG bytes."""
  return tf.io.encode_jpeg(frame, quality=quality).numpy()

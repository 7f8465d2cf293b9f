"""The DMVR record format: every key written is parsed back; label maps."""

import numpy as np
import pytest
import tensorflow as tf

from vivit_jax.data import records


def test_round_trip_with_all_keys():
  frame = np.full((8, 8, 3), 40, np.uint8)
  ex = records.make_sequence_example(
    [records.encode_jpeg(frame)] * 3,
    [1, 4],
    label_texts=['a', 'b'],
    filename='v.mp4',
    start_us=0,
    end_us=2_000_000,
    head_labels={'verb': (3, 'open'), 'noun': (7, None)},
  )
  ctx = ex.context.feature
  assert list(ctx['clip/label/index'].int64_list.value) == [1, 4]
  assert list(ctx['clip/label/text'].bytes_list.value) == [b'a', b'b']
  assert list(ctx['clip/end/timestamp'].int64_list.value) == [2_000_000]
  assert list(ctx['clip/label/verb/text'].bytes_list.value) == [b'open']
  parsed = records.parse_record(tf.constant(ex.SerializeToString()))
  assert parsed['frames'].shape == (3,)
  np.testing.assert_array_equal(parsed['label_index'], [1, 4])
  assert parsed['filename'].numpy() == b'v.mp4'
  heads = records.parse_record(tf.constant(ex.SerializeToString()), ('verb', 'noun'))
  np.testing.assert_array_equal(heads['label_index'], [3, 7])


def test_missing_frames_parse_as_empty():
  ex = records.make_sequence_example([], [0])
  del ex.feature_lists.feature_list['image/encoded']
  assert records.parse_record(tf.constant(ex.SerializeToString()))['frames'].shape == (0,)


def test_label_map(tmp_path):
  path = str(tmp_path / 'label_map.txt')
  records.write_label_map(path, ['a b', 'c'])
  assert (tmp_path / 'label_map.txt').read_text() == 'a b\nc\n'
  assert records.read_label_map(path) == ['a b', 'c']
  with pytest.raises(ValueError, match='empty or multi-line'):
    records.write_label_map(path, ['x\ny'])

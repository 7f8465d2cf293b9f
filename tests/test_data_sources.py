"""Table specs, per-host file splits and record counting."""

import json
import os

import pytest
import tensorflow as tf

from vivit_jax.data import sources
from vivit_jax.data.sources import DataError


def _write(path, n):
  with tf.io.TFRecordWriter(str(path)) as w:
    for i in range(n):
      w.write(b'x' * (10 + i))


def test_expand_shard_spec_glob_and_list(tmp_path):
  for i in range(3):
    _write(tmp_path / f'train-{i:05d}-of-00003', 1)
  expected = [str(tmp_path / f'train-{i:05d}-of-00003') for i in range(3)]
  assert sources.expand_table(str(tmp_path), 'train@3') == expected
  assert sources.expand_table(str(tmp_path), 'train-*') == expected
  assert sources.expand_table(None, [expected[2], expected[0]]) == [expected[2], expected[0]]


def test_missing_file_named(tmp_path):
  _write(tmp_path / 'train-00000-of-00002', 1)
  with pytest.raises(DataError, match='train-00001-of-00002'):
    sources.expand_table(str(tmp_path), 'train@2')
  with pytest.raises(DataError, match='matches no file'):
    sources.expand_table(str(tmp_path), 'nothing-*')


def test_files_for_process():
  files = [f'f{i}' for i in range(5)]
  assert sources.files_for_process(files, 1, 2) == ['f1', 'f3']
  with pytest.raises(DataError, match='5 data files cannot be split across 6 hosts'):
    sources.files_for_process(files, 0, 6)


def test_count_and_cache(tmp_path):
  _write(tmp_path / 'a', 3)
  _write(tmp_path / 'b', 5)
  files = [str(tmp_path / 'a'), str(tmp_path / 'b')]
  assert sources.count_records(files) == [3, 5]
  cache = json.loads((tmp_path / sources.COUNTS_FILENAME).read_text())
  assert cache['a']['count'] == 3
  # A cached count is used while the file is unchanged ...
  cache['a']['count'] = 7
  (tmp_path / sources.COUNTS_FILENAME).write_text(json.dumps(cache))
  assert sources.count_records(files) == [7, 5]
  # ... and recounted when it changes.
  _write(tmp_path / 'a', 4)
  os.utime(tmp_path / 'a', ns=(1, 1))
  assert sources.count_records(files) == [4, 5]


def test_truncated_file(tmp_path):
  _write(tmp_path / 'a', 3)
  data = (tmp_path / 'a').read_bytes()
  (tmp_path / 'a').write_bytes(data[:-5])
  with pytest.raises(DataError, match=r'a is truncated: it ends inside record 2'):
    sources.count_file_records(str(tmp_path / 'a'))
  assert sources.count_file_records(str(tmp_path / 'a'), skip_corrupt=True) == 2

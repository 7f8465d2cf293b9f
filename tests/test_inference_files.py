"""predict_files' JSON lines appear whole or not at all; a non-msgpack checkpoint is named."""

import io
import os

import pytest

from vivit_jax.checkpoints.formats import CheckpointFormatError
from vivit_jax.inference import files, load_params


class _FailingClassifier:
  """Decodes anything, then fails in the forward pass (as a lost device would)."""

  def decode(self, path):
    return path

  def views(self, frames):
    return frames

  def predict_views(self, views):
    raise RuntimeError('device lost')


def test_an_interrupted_prediction_leaves_the_old_output_whole(tmp_path):
  output = tmp_path / 'preds.jsonl'
  output.write_text('{"video": "old"}\n')
  with pytest.raises(RuntimeError, match='device lost'):
    files.predict_files(
      _FailingClassifier(),
      ['a.mp4', 'b.mp4'],
      batch_size=2,
      output=str(output),
      out=io.StringIO(),
      err=io.StringIO(),
      progress=False,
    )
  assert output.read_text() == '{"video": "old"}\n'
  assert os.listdir(tmp_path) == ['preds.jsonl']


def test_a_file_that_is_no_msgpack_names_the_fix(tmp_path):
  junk = tmp_path / 'checkpoint'
  junk.write_bytes(b'\x00 not a checkpoint')
  with pytest.raises(CheckpointFormatError, match='not a Scenic/Flax msgpack checkpoint') as info:
    load_params(str(tmp_path))
  assert str(info.value).endswith(
    'Point --checkpoint at the --workdir of a training run, or at a file written by '
    'convert_checkpoint.'
  )

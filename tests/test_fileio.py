"""fileio on local paths and on gs:// through the Cloud Storage emulator."""

import os
import uuid

import pytest

from vivit_jax import fileio


@pytest.fixture(params=['local', 'gs'])
def root(request, tmp_path):
  if request.param == 'local':
    return str(tmp_path)
  request.getfixturevalue('gcs')
  return f'gs://vivit-test/fileio-{uuid.uuid4().hex[:8]}'


def test_paths():
  assert fileio.absolute('gs://b/run') == 'gs://b/run'
  assert fileio.absolute('run') == os.path.join(os.getcwd(), 'run')
  assert fileio.absolute('~/x') == os.path.expanduser('~/x')
  assert fileio.is_absolute('gs://b/x') and fileio.is_absolute('/x')
  assert not fileio.is_absolute('x/y')


def test_write_read_list_remove(root):
  fileio.makedirs(f'{root}/a/b')
  fileio.write_json(f'{root}/a/b/x.json', {'k': 1})
  with fileio.atomic_write(f'{root}/a/y.txt') as f:
    f.write('hello')
  assert fileio.read_json(f'{root}/a/b/x.json') == {'k': 1}
  assert fileio.read_text(f'{root}/a/y.txt') == 'hello'
  assert fileio.isfile(f'{root}/a/y.txt') and not fileio.isdir(f'{root}/a/y.txt')
  assert fileio.isdir(f'{root}/a/b') and not fileio.isfile(f'{root}/a/b')
  assert fileio.listdir(f'{root}/a') == ['b', 'y.txt']
  assert fileio.glob(f'{root}/a/*.txt') == [f'{root}/a/y.txt']
  assert fileio.size(f'{root}/a/y.txt') == 5
  walked = {os.path.relpath(d, root): sorted(f) for d, _, f in fileio.walk(root)}
  assert walked['a'] == ['y.txt'] and walked['a/b'] == ['x.json']
  with fileio.local_copy(f'{root}/a/y.txt') as local:
    assert open(local).read() == 'hello'
  fileio.copy(f'{root}/a/y.txt', f'{root}/z.txt')
  assert fileio.read_text(f'{root}/z.txt') == 'hello'
  fileio.rmtree(f'{root}/a')
  fileio.rmtree(f'{root}/missing')
  assert not fileio.exists(f'{root}/a/y.txt') and fileio.listdir(root) == ['z.txt']


def test_failed_atomic_write_leaves_the_old_file(root):
  fileio.write_json(f'{root}/r.json', {'old': True})
  with pytest.raises(RuntimeError), fileio.atomic_write(f'{root}/r.json') as f:
    f.write('{"new": tr')
    f.flush()
    raise RuntimeError('interrupted')
  with pytest.raises(RuntimeError), fileio.atomic_write(f'{root}/new.json') as f:
    f.write('partial')
    raise RuntimeError('interrupted')
  assert fileio.read_json(f'{root}/r.json') == {'old': True}
  assert fileio.listdir(root) == ['r.json']


def test_emulator_holds_the_objects(gcs):
  fileio.write_json('gs://vivit-test/seen/by/api.json', [1])
  assert 'seen/by/api.json' in gcs.objects('vivit-test')

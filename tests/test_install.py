"""`make install ACCEL=tpu|cuda12` resolves to the pinned jax and the plugin that pairs with it.

Nothing is installed: pip's resolver runs with --dry-run and reads only wheel metadata (PEP 658
files, or HTTP range requests with fast-deps where an index serves none), so a resolution takes
seconds instead of fetching the 3 GB of CUDA wheels. Each extra's requirement is resolved alone
under constraints.txt and constraints-accel.txt, so every package it shares with the CPU set is
held at the version `make test` installs. These tests need a package index, the only network
they use: when pip cannot reach one they skip, while a conflict between pins fails.
"""

import json
import platform
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ('tpu', 'cuda12')
# pip's words for a failed connection. A resolution that saw one proves nothing: with
# constraints, pip reports the candidates it could not fetch as ResolutionImpossible too.
_UNREACHABLE = re.compile(
  r'connection broken by|NewConnectionError|NameResolutionError|ConnectTimeoutError|'
  r'ProxyError|SSLError|Could not fetch URL|Max retries exceeded'
)
_LINUX_X86_64 = pytest.mark.skipif(
  sys.platform != 'linux' or platform.machine() != 'x86_64',
  reason='the accelerator pins are Linux x86_64 wheels (libtpu has no others)',
)


def _pins(name: str) -> dict[str, str]:
  """The `package==version` lines of constraints file `name`, by canonical package name."""
  pins = {}
  for line in (ROOT / name).read_text().splitlines():
    line = line.split('#')[0].strip()
    if line:
      package, version = line.split('==')
      pins[canonicalize_name(package)] = version
  return pins


def _extras() -> dict[str, list[str]]:
  with open(ROOT / 'pyproject.toml', 'rb') as f:
    return tomllib.load(f)['project']['optional-dependencies']


def _resolve(requirements: list[str], report_dir: Path, *pip_args: str) -> dict[str, str]:
  """What `pip install` would install for `requirements` under both constraints files.

  Returns:
    {canonical package name: version} of every package pip would install into an empty
    environment.

  Skips the test when pip cannot reach a package index; fails it when the pins conflict.
  """
  report = report_dir / 'report.json'
  command = [
    sys.executable, '-m', 'pip', 'install', '--dry-run', '--ignore-installed', '--quiet',
    # Lazy wheels: where an index serves no PEP 658 metadata, read METADATA by HTTP range
    # requests instead of downloading each wheel (nvidia-cudnn-cu12 alone is 700 MB).
    '--use-feature=fast-deps', '--retries=1', '--timeout=20', '--report', str(report),
    '-c', 'constraints.txt', '-c', 'constraints-accel.txt', *pip_args, *requirements,
  ]  # fmt: skip
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
  if result.returncode != 0:
    output = result.stdout + result.stderr
    unreachable = _UNREACHABLE.search(output)
    if unreachable:
      line = next(x for x in output.splitlines() if unreachable.group(0) in x)
      pytest.skip(f'pip cannot reach a package index: {line.strip()[:300]}')
    pytest.fail(f'pip cannot resolve {requirements}:\n{output}')
  installs = json.loads(report.read_text())['install']
  return {canonicalize_name(i['metadata']['name']): i['metadata']['version'] for i in installs}


@pytest.fixture(scope='module')
def resolved(tmp_path_factory):
  """resolved(extra): `_resolve` of the pyproject.toml extra's requirements, once per module."""
  cache = {}

  def resolve(extra: str) -> dict[str, str]:
    if extra not in cache:
      cache[extra] = _resolve(_extras()[extra], tmp_path_factory.mktemp(extra))
    return cache[extra]

  return resolve


def test_each_extra_is_the_jax_of_constraints_with_that_plugin():
  assert set(_extras()) == set(EXTRAS)
  for extra, requirements in _extras().items():
    (requirement,) = map(Requirement, requirements)
    assert (requirement.name, requirement.extras) == ('jax', {extra})
    assert str(requirement.specifier) == f'=={_pins("constraints.txt")["jax"]}'


@pytest.mark.skipif(shutil.which('make') is None, reason='needs make')
def test_makefile_installs_the_pyproject_extra_named_by_accel(tmp_path):
  def recipe(*args: str) -> subprocess.CompletedProcess:
    # A venv that does not exist: make prints the whole install recipe and runs none of it.
    command = ['make', '-n', 'install', f'VENV={tmp_path / "venv"}', *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True)

  makefile = (ROOT / 'Makefile').read_text()
  assert re.search(r'^ACCELERATORS := (.*)$', makefile, re.M).group(1).split() == list(EXTRAS)
  for args in ((), ('ACCEL=cpu',)):
    cpu = recipe(*args).stdout
    assert '-e . --no-deps' in cpu and 'constraints-accel' not in cpu
  for extra in EXTRAS:
    accel = recipe(f'ACCEL={extra}').stdout
    assert f"-e '.[{extra}]' -c constraints.txt -c constraints-accel.txt" in accel
    assert f'venv/.installed-{extra}' in accel
  unknown = recipe('ACCEL=gpu')
  assert unknown.returncode != 0 and 'ACCEL=gpu: use cpu (the default) or one of' in unknown.stderr


def test_no_index_skips_and_a_conflict_fails(tmp_path):
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    closed_port = s.getsockname()[1]
  with pytest.raises(pytest.skip.Exception, match='cannot reach a package index'):
    _resolve(['jax'], tmp_path, '--isolated', f'--index-url=http://127.0.0.1:{closed_port}/')
  # constraints.txt pins jax 0.10.2: pip sees the conflict before it asks any index.
  with pytest.raises(pytest.fail.Exception, match='ResolutionImpossible'):
    _resolve(['jax==0.10.1'], tmp_path, '--isolated', '--no-index')


@_LINUX_X86_64
@pytest.mark.parametrize('extra', EXTRAS)
def test_extra_resolves_to_pinned_jax_and_its_plugin(resolved, extra):
  versions = resolved(extra)
  assert versions['jax'] == versions['jaxlib'] == '0.10.2'
  if extra == 'tpu':
    # jax 0.10.2's tpu extra asks for libtpu==0.0.42.*.
    assert re.fullmatch(r'0\.0\.42(\.\d+)?', versions['libtpu'])
  else:
    assert versions['jax-cuda12-plugin'] == versions['jax-cuda12-pjrt'] == '0.10.2'
    assert versions['nvidia-cudnn-cu12'].startswith('9.')
  cpu, accel = _pins('constraints.txt'), _pins('constraints-accel.txt')
  unpinned = {p: v for p, v in versions.items() if p not in cpu and accel.get(p) != v}
  assert not unpinned, f'add to constraints-accel.txt: {unpinned}'


@_LINUX_X86_64
def test_constraints_accel_pins_only_what_the_extras_add(resolved):
  cpu = _pins('constraints.txt')
  added = {p for extra in EXTRAS for p in resolved(extra) if p not in cpu}
  assert set(_pins('constraints-accel.txt')) == added

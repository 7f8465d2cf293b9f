"""Each config in configs/ resolves to the values it was written for, and states them itself.

`tests/data/resolved_configs.json` holds every config resolved against the
schema (`resolve(load_config_file(...))`), as the configs stood before their
recipes were written out in full: a refactor of a config file must leave it
equal. When a recipe is meant to change, rewrite the snapshot with
`PYTHONPATH=. python tests/test_config_recipes.py` and review its diff.
"""

import ast
import glob
import importlib.util
import json
import os
import sys

import pytest

from vivit_jax.config import load_config_file, resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = os.path.join(ROOT, 'tests', 'data', 'resolved_configs.json')
# The file in configs/ that is not a config, and the options of the config that takes them.
NOT_CONFIGS = ('__init__.py',)
SYNTHETIC_OPTIONS = ('temporal_order', 'factorised', 'temporal_order,factorised')
# The paper's recipes: each must read whole in its own file.
PAPER_CONFIGS = sorted(
  os.path.basename(p)[:-3]
  for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
  if os.path.basename(p) not in (*NOT_CONFIGS, 'synthetic.py')
)
# The checkout's own path differs between machines: the snapshot stores it as this.
REPO_MARK = '<repo>'


def config_names() -> list[str]:
  """'name' for each config file, and 'synthetic:options' for each option set."""
  names = sorted(
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
    if os.path.basename(p) not in NOT_CONFIGS
  )
  return names + [f'synthetic:{options}' for options in SYNTHETIC_OPTIONS]


def resolved(name: str) -> dict:
  """The config `name` ('file' or 'file:options') resolved, as plain JSON values."""
  file, _, options = name.partition(':')
  path = os.path.join(ROOT, 'configs', f'{file}.py')
  if options:
    # As `--config=path:options` does: ml_collections passes the text after the colon.
    spec = importlib.util.spec_from_file_location(f'_recipe_{file}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(options)
  else:
    config = load_config_file(path)
  text = resolve(config).to_json_best_effort(sort_keys=True)
  return json.loads(text.replace(json.dumps(ROOT)[1:-1], REPO_MARK))


def _leaves(tree: dict, prefix: str = '') -> dict[str, str]:
  """Dotted key -> the leaf's JSON text, so that 1 and 1.0 differ."""
  out = {}
  for key, value in tree.items():
    path = f'{prefix}{key}'
    if isinstance(value, dict) and value:
      out.update(_leaves(value, f'{path}.'))
    else:
      out[path] = json.dumps(value, sort_keys=True)
  return out


def _snapshot() -> dict:
  with open(SNAPSHOT) as f:
    return json.load(f)


def test_every_config_has_a_snapshot():
  assert sorted(_snapshot()) == sorted(config_names())


@pytest.mark.parametrize('name', config_names())
def test_config_resolves_as_its_snapshot(name):
  want, got = _leaves(_snapshot()[name]), _leaves(resolved(name))
  differ = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
  assert not differ, f'{name} differs from its snapshot at: ' + '; '.join(
    f'{k}: {want.get(k, "<absent>")} -> {got.get(k, "<absent>")}' for k in differ
  )


def test_leaves_tell_ints_from_floats():
  assert _leaves({'a': {'b': 1}}) != _leaves({'a': {'b': 1.0}})


@pytest.mark.parametrize('name', PAPER_CONFIGS)
def test_paper_config_imports_no_other_config(name):
  """A paper recipe is read in one file: it imports no setter and no other config from configs/."""
  with open(os.path.join(ROOT, 'configs', f'{name}.py')) as f:
    tree = ast.parse(f.read())
  imported = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      imported.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      imported.add(node.module or '')
      imported.update(f'{node.module}.{alias.name}' for alias in node.names)
  assert not [m for m in imported if m == 'configs' or m.startswith('configs.')], (
    f'configs/{name}.py imports {sorted(imported)}: state the recipe in the file itself.'
  )


def test_paper_configs_are_found():
  assert 'k400_fe' in PAPER_CONFIGS and 'synthetic' not in PAPER_CONFIGS
  assert len(PAPER_CONFIGS) == 10


if __name__ == '__main__':
  sys.path.insert(0, ROOT)
  os.makedirs(os.path.dirname(SNAPSHOT), exist_ok=True)
  with open(SNAPSHOT, 'w') as f:
    json.dump({name: resolved(name) for name in config_names()}, f, indent=1, sort_keys=True)
    f.write('\n')
  print(f'Wrote {SNAPSHOT}: {len(config_names())} configs.')

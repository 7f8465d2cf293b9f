"""The import graph of the library: layers import downward only, and only tools define flags.

The allowed directions are written once, in `_LAYERS`: a module may import
from its own package and from any package of a lower rank. Packages of the
same rank (models and data) may not import each other. Every import counts, at
module level or inside a function, so a lazy import cannot hide an upward edge.
The graph is read from the source with `ast`, so the test needs no import of
the library and runs in well under a second.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

_ROOT = pathlib.Path(__file__).resolve().parents[1]
_PACKAGE = _ROOT / 'vivit_jax'

# Rank of each top-level part of the package, from the bottom. The error types
# sit below the config schema, which raises them. Ranks 0-5 are the library that
# trains, evaluates, loads and predicts; the harness (benchmarks, the fit check,
# the ablations, the end-of-run hints) sits above it, so nothing of the library
# can depend on what measures it.
_LAYERS = {
  '__init__': 0,
  'errors': 0,
  'fileio': 0,
  'task': 0,
  'config': 1,
  'models': 2,
  'data': 2,
  'checkpoints': 3,
  'train': 4,
  'inference': 5,
  'harness': 6,
  'tools': 7,
}
_FLAG_DEFINERS = ('DEFINE_', 'mark_flag')


def _part(module: str) -> str:
  """'vivit_jax.data.pipeline' -> 'data'; 'vivit_jax' -> '__init__'."""
  parts = module.split('.')
  return parts[1] if len(parts) > 1 else '__init__'


def _modules() -> dict[str, ast.Module]:
  trees = {}
  for path in sorted(_PACKAGE.rglob('*.py')):
    name = '.'.join(path.relative_to(_ROOT).with_suffix('').parts)
    trees[name.removesuffix('.__init__')] = ast.parse(path.read_text(), filename=str(path))
  return trees


def _imported(tree: ast.Module) -> set[str]:
  """Every vivit_jax module or attribute named by an import anywhere in `tree`."""
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      if node.module == 'vivit_jax':
        names.update(f'vivit_jax.{alias.name}' for alias in node.names)
      else:
        names.add(node.module)
  return {n for n in names if n == 'vivit_jax' or n.startswith('vivit_jax.')}


def test_every_part_of_the_package_has_a_layer():
  parts = {_part(name) for name in _modules()}
  assert parts <= set(_LAYERS), f'give these a rank in _LAYERS: {sorted(parts - set(_LAYERS))}'


def test_no_relative_imports():
  relative = [
    name
    for name, tree in _modules().items()
    if any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))
  ]
  assert not relative, f'use absolute vivit_jax imports in {relative}'


def test_imports_run_downward_only():
  wrong = []
  for name, tree in _modules().items():
    here = _part(name)
    for target in sorted(_imported(tree)):
      there = _part(target)
      if there != here and _LAYERS[there] >= _LAYERS[here]:
        wrong.append(
          f'{name} imports {target} ({here}: rank {_LAYERS[here]}, {there}: rank {_LAYERS[there]})'
        )
  assert not wrong, 'imports against the layering:\n' + '\n'.join(wrong)


def _defines_flags(tree: ast.Module) -> bool:
  for node in ast.walk(tree):
    if isinstance(node, ast.Call):
      func = node.func
      name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')
      if name.startswith(_FLAG_DEFINERS):
        return True
  return False


@pytest.mark.parametrize('layer', sorted(set(_LAYERS) - {'tools'}))
def test_only_tools_define_flags(layer):
  definers = [
    name for name, tree in _modules().items() if _part(name) == layer and _defines_flags(tree)
  ]
  assert not definers, f'library modules define absl flags (move them to a tool): {definers}'


def test_the_checker_sees_an_upward_import():
  tree = ast.parse('def f():\n  from vivit_jax.train import trainer\n')
  assert _imported(tree) == {'vivit_jax.train'}
  assert _defines_flags(ast.parse("flags.DEFINE_string('x', None, 'y')"))

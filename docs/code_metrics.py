"""Structure numbers of the library (issue 13): run from the repository root.

  python docs/code_metrics.py [package_dir]

Prints the longest functions, the files over 300 lines, the `.get(` and
string-key reads of configs and dataset metadata, the imports made inside
functions, and the lines of the library, the harness and the tools. A config
or metadata read is one whose receiver is rooted at a name the library uses
for them (config, dc, model, data, meta, aug, encoding, ...).
"""

from __future__ import annotations

import ast
import pathlib
import sys

_CONFIG_NAMES = {
  'config',
  'cfg',
  'dc',
  'data',
  'data_cfg',
  'model',
  'meta',
  'aug',
  'augmentation',
  'encoding',
  'attention',
  'saved',
  'extra',
  'spec',
  'm',
}


def _root(node: ast.AST) -> str | None:
  while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
    node = node.func if isinstance(node, ast.Call) else node.value
  return node.id if isinstance(node, ast.Name) else None


def _reads_config(node: ast.AST) -> bool:
  if isinstance(node, ast.Attribute) and node.attr == 'meta':
    return True
  if isinstance(node, ast.Attribute) and node.attr in ('config', 'dataset_configs', 'model'):
    return True
  return _root(node) in _CONFIG_NAMES


def main(root: pathlib.Path) -> None:
  funcs, big, gets, keyed, local = [], [], [], [], []
  for path in sorted(root.rglob('*.py')):
    text = path.read_text()
    lines = text.count('\n')
    if lines > 300:
      big.append((lines, str(path)))
    tree = ast.parse(text)
    for node in ast.walk(tree):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        funcs.append((node.end_lineno - node.lineno + 1, f'{path}:{node.name}'))
        for sub in ast.walk(node):
          if isinstance(sub, (ast.Import, ast.ImportFrom)):
            local.append(f'{path}:{sub.lineno}')
      elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == 'get' and _reads_config(node.func.value):
          gets.append(f'{path}:{node.lineno}')
      elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        if isinstance(node.slice.value, str) and _reads_config(node.value):
          keyed.append(f'{path}:{node.lineno}')
  funcs.sort(reverse=True)
  print('longest functions:', ', '.join(f'{name} ({n} lines)' for n, name in funcs[:3]))
  print(
    f'files over 300 lines: {len(big)}:',
    ', '.join(f'{p} ({n})' for n, p in sorted(big, reverse=True)),
  )
  print(f'.get( reads of configs and metadata: {len(gets)}:', ' '.join(gets))
  print(f"string-key reads of configs and metadata (x['key']): {len(keyed)}:", ' '.join(keyed))
  print(f'function-level imports: {len(set(local))}')
  sizes = {'library': 0, 'harness': 0, 'tools': 0}
  for path in root.rglob('*.py'):
    part = path.relative_to(root).parts[0]
    sizes[part if part in sizes else 'library'] += path.read_text().count('\n')
  print(
    f'lines: library {sizes["library"]} (everything but harness/ and tools/), '
    f'harness {sizes["harness"]}, tools {sizes["tools"]}'
  )


if __name__ == '__main__':
  main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else 'vivit_jax'))

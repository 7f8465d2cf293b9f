"""`run(main)`: what `main.py` and every tool use instead of `absl.app.run(main)`.

A mistake the user can fix (any `vivit_jax.errors.UserError`: a misspelt config
key, an unset data location, a missing checkpoint, ...) is printed as one line
on stderr and the command exits with status 1; `--verbose` or VIVIT_TRACEBACK=1
shows the traceback as well. Command-line config overrides and the config file
are checked here before ml_collections parses them: its own errors arrive as a
long chained traceback ending in an escaped message.
"""

from __future__ import annotations

import atexit
import gc
import os
import re
from collections.abc import Callable, Sequence

from absl import app, flags

from vivit_jax import config as config_lib
from vivit_jax import errors, fileio

_VERBOSE = flags.DEFINE_boolean(
  'verbose', False, f'Show the traceback of errors (as {errors.TRACEBACK_ENV}=1 does).'
)
_CONFIG_FLAG = 'config'


def _override_path(arg: str) -> str | None:
  """'model.hidden_size' for '--config.model.hidden_size=4' (or '--noconfig.x'), else None."""
  match = re.match(rf'^--?(?:no)?{_CONFIG_FLAG}\.([^=\s]+)', arg)
  return match[1] if match else None


def _config_file(args: Sequence[str]) -> str | None:
  for i, arg in enumerate(args):
    match = re.match(rf'^--?{_CONFIG_FLAG}(=(.*))?$', arg)
    if match:
      value = match[2] if match[1] else (args[i + 1] if i + 1 < len(args) else None)
      # `--config=file.py:argument` passes an argument to get_config.
      return value.split(':', 1)[0] if value else None
  return None


def check_command_line(argv: Sequence[str]) -> None:
  """Raises a UserError for a config file that is missing or an override of an unknown key."""
  args = list(argv[1:])
  if '--' in args:
    args = args[: args.index('--')]
  path = _config_file(args)
  if path and not os.path.isfile(path):
    raise errors.MissingFileError(
      f'Config file {path!r} does not exist (looked for in {os.getcwd()}). Run from the '
      'repository root, or give the path of a file in configs/.'
    )
  for arg in args:
    key = _override_path(arg)
    if key is not None:
      config_lib.check_key(key, given=arg)


def check_writable(flag: str, path: str, *, directory: bool) -> None:
  """Raises UnwritablePathError unless `--flag=path` can be written; nothing is created.

  Tools call it before their work, so a read-only output fails in the first second.

  Args:
    flag: the flag's name, e.g. 'output_dir'.
    path: its value, local or a URI.
    directory: the output is a directory (else a file).
  """
  problem = fileio.unwritable_reason(path, directory=directory)
  if problem:
    kind = 'directory' if directory else 'file'
    raise errors.UnwritablePathError(
      f'Cannot write --{flag}={path}: {problem}. Give a {kind} where you can write (--{flag}=...).'
    )


def _verbose_requested(argv: Sequence[str]) -> bool:
  return errors.want_traceback(any(a in ('--verbose', '-verbose') for a in argv))


def _parse(argv: list[str]) -> list[str]:
  try:
    check_command_line(argv)
  except errors.UserError as e:
    if _verbose_requested(argv):
      raise
    errors.exit_with(e)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    errors.exit_with(errors.UserError(f'{str(e).rstrip(".")} (--helpshort lists the flags).'))
  except Exception as e:  # ml_collections raises plain errors while it parses overrides.
    if _verbose_requested(argv):
      raise
    message = str(e).encode().decode('unicode_escape').strip('\'"').replace('\n', ' ')
    errors.exit_with(errors.UserError(f'Cannot parse the command line: {message}'))
  return []  # Not reached: exit_with exits.


def run(main: Callable[[list[str]], None]) -> None:
  """Runs `main` as absl's app.run does, reporting UserErrors in one line (see the module).

  The process exits a second sooner than it would: Python's last garbage collection at exit
  walks every object TensorFlow's import made (1.2 s of a 4.3 s `python -c 'import tensorflow'`
  on a 2-core machine). Registered first, `gc.freeze` runs after every other exit handler
  (JAX's, Orbax's, absl's), and the collection then skips what is frozen; the memory goes back
  with the process. What it skips is never finalized: objects kept alive only by reference
  cycles. Nothing that holds unwritten data is left to them here: the trainer closes its
  summary writers, checkpoint manager and input pipeline before returning, and the tools
  write through `fileio` in `with` blocks (or its atomic writes), closed as they end.
  """
  atexit.register(gc.freeze)

  def guarded(argv: list[str]) -> None:
    try:
      main(argv)
    except errors.UserError as e:
      if errors.want_traceback(_VERBOSE.value):
        raise
      errors.exit_with(e)

  app.run(guarded, flags_parser=_parse)

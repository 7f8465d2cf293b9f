"""The one base class of the errors a user can fix, and how a command reports them.

Every error vivit-jax raises for bad input (a config key, a data location, a
checkpoint, a batch size) derives from `UserError`, so `main.py` and the tools
catch exactly these and print their message instead of a traceback; any other
exception is a bug and keeps its traceback. `--verbose` or VIVIT_TRACEBACK=1
shows the traceback of a `UserError` too.
"""

from __future__ import annotations

import os
import sys

TRACEBACK_ENV = 'VIVIT_TRACEBACK'


class UserError(Exception):
  """Bad input the user can fix; the message names the thing and the fix."""


class MissingFileError(UserError, FileNotFoundError):
  """A file or directory the user named does not exist, or holds nothing usable."""


class UnwritablePathError(UserError):
  """A path a command must write (a workdir, an output) is read-only, or a file stands
  where a directory is expected (or the other way round)."""


def want_traceback(verbose: bool = False) -> bool:
  """True when `--verbose` was given or VIVIT_TRACEBACK is set to a true value."""
  return verbose or os.environ.get(TRACEBACK_ENV, '').lower() not in ('', '0', 'false', 'no')


def exit_with(error: BaseException, program: str | None = None) -> None:
  """Prints `error`'s message as one line on stderr and exits with status 1."""
  program = program or os.path.basename(sys.argv[0] or 'vivit')
  # A FileNotFoundError(errno, text) keeps its text in strerror; str() would add the errno.
  message = getattr(error, 'strerror', None) if isinstance(error, OSError) else None
  message = message or str(error)
  print(f'{program}: error: {message}', file=sys.stderr)
  print(f'(--verbose or {TRACEBACK_ENV}=1 shows the traceback.)', file=sys.stderr, flush=True)
  sys.exit(1)


def nearest_multiples(value: int, divisor: int) -> str:
  """'8 or 16': the multiples of `divisor` nearest to `value` (the positive ones)."""
  below = value // divisor * divisor
  above = below + divisor
  return f'{below} or {above}' if below > 0 else str(above)

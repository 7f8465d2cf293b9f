"""Shape adapters: one pretrained array -> the shape a ViViT parameter needs.

Each returns (array, how) where `how` says what was done, for the report.
Whatever cannot be adapted raises `ShapeError` naming the parameter and both
shapes; nothing is ever truncated to make it fit.
"""

from __future__ import annotations

import math

import numpy as np

from vivit_jax.errors import UserError

POSEMB_METHODS = ('tile', 'resize', 'resize_tile')
KERNEL_METHODS = (
  'central_frame_initializer',
  'average_frame_initializer',
  'average_arp_frame_initializer',
)
Grid = tuple[int, int, int]  # (t, h, w) tokens


class ShapeError(UserError, ValueError):
  """A checkpoint array cannot be adapted to the parameter's shape."""


def shape_error(name: str, source: tuple, target: tuple, why: str = '') -> ShapeError:
  why = f': {why}' if why else '.'
  return ShapeError(
    f"Cannot initialise parameter '{name}' of shape {tuple(target)} from the checkpoint's "
    f'array of shape {tuple(source)}{why}'
  )


def resize_axis(x: np.ndarray, axis: int, size: int) -> np.ndarray:
  """Linear interpolation of axis `axis` to `size` samples (half-pixel centres).

  Keeping the centres aligned means that a length-1 axis is repeated exactly
  and an unchanged length returns the input unchanged.
  """
  n = x.shape[axis]
  if n == size:
    return x
  pos = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
  lo = np.floor(pos).astype(np.int64)
  hi = np.minimum(lo + 1, n - 1)
  frac = (pos - lo).reshape([size if a == axis else 1 for a in range(x.ndim)])
  x = x.astype(np.float64)
  return np.take(x, lo, axis) * (1 - frac) + np.take(x, hi, axis) * frac


def arp_weights(t: int) -> np.ndarray:
  """Approximate rank pooling weights a_k = 2(t-k+1) - (t+1)(H_t - H_{k-1}), k = 1..t.

  H_k is the k-th harmonic number (Bilen et al., dynamic image networks). The
  weights sum to zero, so a static video gives the bias alone.
  """
  harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, t + 1))])
  k = np.arange(1, t + 1)
  return 2.0 * (t - k + 1) - (t + 1) * (harmonic[t] - harmonic[k - 1])


def inflate_kernel(
  name: str, source: np.ndarray, target_shape: tuple, method: str
) -> tuple[np.ndarray, str]:
  """A patch kernel [h, w, c, d] (or a tubelet [t', h, w, c, d]) -> target_shape.

  Args:
    method: how a 2D kernel becomes a tubelet [t, h, w, c, d]:
      'central_frame_initializer' (the 2D kernel on frame t // 2, zeros
      elsewhere), 'average_frame_initializer' (on every frame, divided by t),
      'average_arp_frame_initializer' (frame k weighted by `arp_weights(t)[k] / t`,
      Scenic's ARP inflation).
  """
  target_shape = tuple(target_shape)
  if source.shape == target_shape:
    return source, 'copied'
  if source.ndim == 5 and len(target_shape) == 4 and source.shape == (1,) + target_shape:
    return source[0], 'adapted: single-frame tubelet -> 2D patch kernel'
  if source.ndim != 4 or len(target_shape) != 5 or source.shape != target_shape[1:]:
    raise shape_error(
      name, source.shape, target_shape, 'patch sizes, channels or widths differ (or both are 3D)'
    )
  t = target_shape[0]
  if method == 'central_frame_initializer':
    kernel = np.zeros(target_shape, source.dtype)
    kernel[t // 2] = source
  elif method == 'average_frame_initializer':
    kernel = np.repeat(source[None], t, axis=0) / t
  elif method == 'average_arp_frame_initializer':
    # Divided by t like the average inflation, as Scenic's init_embedding does.
    kernel = (arp_weights(t) / t).reshape(t, 1, 1, 1, 1) * source[None]
  else:
    raise ValueError(
      f'init_from.kernel_init_method is {method!r}; expected one of {KERNEL_METHODS}.'
    )
  return kernel.astype(source.dtype), f'adapted: 2D kernel inflated to t={t} by {method}'


def _resize_grid(grid: np.ndarray, size: Grid, axes: tuple[int, ...]) -> np.ndarray:
  for axis in axes:
    grid = resize_axis(grid, axis, size[axis])
  return grid


def adapt_posemb(
  name: str,
  source: np.ndarray,
  init: np.ndarray,
  *,
  source_grid: Grid,
  target_grid: Grid,
  source_cls: bool,
  method: str,
) -> tuple[np.ndarray, str]:
  """Positional embedding [1, (1+) t'h'w', d] -> init's shape [1, (1+) thw, d].

  Tokens are time-major. 'tile' repeats the source's frames t / t' times (the
  spatial grids must agree), 'resize' interpolates (t', h', w') -> (t, h, w)
  linearly, 'resize_tile' interpolates the spatial grid and tiles time. A
  class-token row is copied when both have one, kept from `init` when only
  the model has one, and dropped when only the checkpoint has one.
  """
  d = init.shape[-1]
  target_cls = init.shape[1] - math.prod(target_grid)
  n_source = source.shape[1] - int(source_cls)
  if source.shape[-1] != d or n_source != math.prod(source_grid) or target_cls not in (0, 1):
    raise shape_error(
      name, source.shape, init.shape, f'token grid {source_grid} -> {target_grid}, widths differ'
    )
  grid = source[0, int(source_cls) :].reshape(*source_grid, d)
  how = 'copied'
  if tuple(source_grid) != tuple(target_grid):
    t, ts = target_grid[0], source_grid[0]
    if method == 'resize':
      grid = _resize_grid(grid, target_grid, (0, 1, 2))
    elif method in ('tile', 'resize_tile'):
      if method == 'resize_tile':
        grid = _resize_grid(grid, target_grid, (1, 2))
      elif source_grid[1:] != target_grid[1:]:
        raise shape_error(
          name,
          source.shape,
          init.shape,
          f"'tile' needs equal spatial grids, got {source_grid[1:]} and {target_grid[1:]}; "
          "use positional_embed_size_change='resize_tile' or 'resize'",
        )
      if t % ts:
        raise shape_error(
          name,
          source.shape,
          init.shape,
          f'{ts} temporal positions do not divide {t}; use positional_embed_size_change=resize',
        )
      grid = np.tile(grid, (t // ts, 1, 1, 1))
    else:
      raise ValueError(
        f'init_from.positional_embed_size_change is {method!r}; expected one of {POSEMB_METHODS}.'
      )
    how = f'adapted: {method} grid {tuple(source_grid)} -> {tuple(target_grid)}'
  tokens = grid.reshape(1, -1, d).astype(init.dtype)
  if target_cls:
    row = source[:, :1] if source_cls else init[:, :1]
    how += '; class-token row ' + ('copied' if source_cls else 'kept from init')
    tokens = np.concatenate([row.astype(init.dtype), tokens], axis=1)
  elif source_cls:
    how += '; class-token row dropped'
  return tokens, how

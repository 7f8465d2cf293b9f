"""TensorBoard summaries: one run per split, `<workdir>/train/`, `validation/`, `test/`.

As in Flax's examples, each split has its own clu metric writer (the logging
writer names the split as its collection). The trainer names metrics
`<split>/<metric>`; the split picks the run and the metric keeps its name
inside it, so TensorBoard draws `loss` or `top1` of every split on one chart,
one color per run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clu import metric_writers

SPLITS = ('train', 'validation', 'test')


class SplitWriters:
  """clu writers by split, opened on first use (a split never written leaves no run)."""

  def __init__(self, workdir: str, *, just_logging: bool = False):
    """Writes under `workdir`; with `just_logging` (non-chief hosts) only to the log."""
    self._workdir = workdir
    self._just_logging = just_logging
    self._writers: dict[str, metric_writers.MetricWriter] = {}

  def __getitem__(self, split: str) -> metric_writers.MetricWriter:
    """The writer of one split's run, `<workdir>/<split>/`."""
    if split not in SPLITS:
      raise KeyError(f'Unknown split {split!r}; summaries are written for {SPLITS}.')
    if split not in self._writers:
      self._writers[split] = metric_writers.create_default_writer(
        self._workdir, just_logging=self._just_logging, collection=split
      )
    return self._writers[split]

  def _by_split(self, values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
      split, sep, name = key.partition('/')
      if not sep or split not in SPLITS:
        raise KeyError(f'Summary {key!r} must be named <split>/<metric>, split in {SPLITS}.')
      out.setdefault(split, {})[name] = value
    return out

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """Writes `{'<split>/<metric>': value}`, each into its split's run as `<metric>`."""
    for split, values in self._by_split(scalars).items():
      self[split].write_scalars(step, values)

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    """Writes `{'<split>/<name>': f32[N, H, W, C]}`, each into its split's run as `<name>`."""
    for split, values in self._by_split(images).items():
      self[split].write_images(step, values)

  def flush(self) -> None:
    for writer in self._writers.values():
      writer.flush()

  def close(self) -> None:
    for writer in self._writers.values():
      writer.close()
    self._writers.clear()

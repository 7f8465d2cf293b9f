"""XLA_FLAGS for the suite's processes, the test workers and the subprocesses they start.

The suite's programs are tiny and most are compiled once, so compiling is most
of their time: they are compiled without LLVM's optimisations, which takes a
third less CPU (tests/test_models.py on 2 cores: 130 against 83 CPU seconds)
and leaves what XLA computes, its fusions and its buffers as they were. Every
process of the suite compiles this way, so results compared across processes
come from programs compiled alike. Speed figures are never taken here
(`vivit_jax.harness.perf` and docs/ are where they are measured).
"""

from __future__ import annotations

FAST_COMPILE = '--xla_backend_optimization_level=0'


def xla_flags(devices: int | None = None) -> str:
  """XLA_FLAGS with `devices` fake CPU devices (None: the one CPU device)."""
  if devices is None:
    return FAST_COMPILE
  return f'--xla_force_host_platform_device_count={devices} {FAST_COMPILE}'

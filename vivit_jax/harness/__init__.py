"""What measures, sweeps and advises around the library, kept apart from it.

The library (`config`, `models`, `data`, `checkpoints`, `train`, `inference`) trains,
evaluates, loads and predicts, and imports nothing from here; this package may import all of
it (tests/test_architecture.py holds both directions).

- `perf`: the trainer's compiled step timed against a measured matmul bound (`tools/benchmark`).
- `fit`: the train step compiled for a TPU slice without one: memory and FLOPs per chip
  (`tools/fit`, `tools/accelerator_check`, docs/fit_table.py).
- `variants`: the benchmark and ablation variants and the small ViViT-S base config.
- `ablation`: the paper's ablations as sweeps, their resumable runner and report (`tools/ablate`).
- `data_timing`: the input pipeline's clips per second against its decode bound
  (`tools/data_benchmark`).
- `next_steps`: the closing note of `main.py` (what a run wrote, commands to try next).
"""

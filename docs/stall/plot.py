"""Plots docs/stall/*.json (written by diagnose.py): train top-1 and per-module gradient norms.

python docs/stall/plot.py OUT.png RUN.json [RUN.json ...]
"""

import json
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def main(out, *paths):
  runs = [json.load(open(p)) for p in paths]
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
  for r in runs:
    steps = [e['step'] for e in r['log']]
    label = f'{r["name"]} (val {100 * r["val_top1"]:.0f}%)'
    axes[0].plot(steps, [e['train_top1'] for e in r['log']], label=label)
    axes[1].plot(steps, [e['loss'] for e in r['log']], label=label)
    body = [
      sum(v**2 for k, v in e['module_grad_norms'].items() if k != 'output_projection') ** 0.5
      for e in r['log']
    ]
    axes[2].semilogy(steps, body, label=label)
  axes[0].set_title('train top-1 (mean of 16 steps)')
  axes[1].set_title('train loss (label smoothing 0.1)')
  axes[2].set_title('gradient norm of everything but the head')
  for ax in axes:
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out, dpi=80)


if __name__ == '__main__':
  main(*sys.argv[1:])

"""A hand-written probe of the temporal-order data: is the class in the model's inputs?

  PYTHONPATH=. python docs/stall/order_probe.py

Reads the validation clips of `configs/synthetic.py:temporal_order` through the
same pipeline the trainer uses (float32, the model's inputs), estimates each
segment's horizontal and vertical motion with the Lucas-Kanade ratio
-sum(I_x I_t) / sum(I_x^2) (and the same for y), and predicts the class as the
segment that moves most to the right and the one that moves most downwards
(the third is the rotation). Prints the probe's top-1 on the whole split.
"""

import numpy as np

from configs import synthetic
from vivit_jax import config as config_lib
from vivit_jax.data import build_dataset

SEGMENTS = 3


def segment_motion(clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-segment (x, y) motion of f32[n, T, H, W, 3] clips: two f32[n, SEGMENTS]."""
  grey = clips.mean(-1)
  it = grey[:, 1:] - grey[:, :-1]
  ix = np.gradient(grey, axis=3)[:, :-1]
  iy = np.gradient(grey, axis=2)[:, :-1]
  per = grey.shape[1] // SEGMENTS
  # The frame differences inside each segment (none across a boundary).
  insides = [slice(k * per, (k + 1) * per - 1) for k in range(SEGMENTS)]

  def motion(grad: np.ndarray) -> np.ndarray:
    ratios = [
      -(grad[:, s] * it[:, s]).sum((1, 2, 3)) / (grad[:, s] ** 2).sum((1, 2, 3)) for s in insides
    ]
    return np.stack(ratios, 1)

  return motion(ix), motion(iy)


def main():
  config = config_lib.resolve(synthetic.get_config('temporal_order'))
  ds = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  names = [name.split('_then_') for name in ds.meta.label_names]
  hits = total = 0
  for batch in ds.eval_iter():
    keep = np.asarray(batch['batch_mask'][0]) > 0
    clips = np.asarray(batch['inputs'][0])[keep]
    labels = np.asarray(batch['label'][0]).argmax(-1)[keep]
    x, y = segment_motion(clips)
    for right, down, label in zip(x.argmax(1), y.argmax(1), labels):
      order = names[label]
      hits += order.index('move_right') == right and order.index('move_down') == down
    total += len(labels)
  chance = 1 / len(names)
  print(f'probe top-1 on {total} validation clips: {hits / total:.4f} (chance {chance:.4f})')


if __name__ == '__main__':
  main()

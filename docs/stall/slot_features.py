"""Does the motion-data baseline's encoder name each time slot's motion in temporal-order clips?

  PYTHONPATH=. python docs/stall/slot_features.py WORKDIR

WORKDIR: a training workdir of the average-pool baseline on the motion data
(e.g. workdirs/ablations_motion/variants/2_average_pool_baseline/seed_0).
Runs its per-tubelet spatial encoder on the validation clips of
configs/synthetic.py:temporal_order, pools each of the 6 time slots over space
(the features the factorised encoder's temporal transformer would read), and
prints how often a slot's motion (one of the three the variant uses) is named
(a) by the baseline's own head, restricted to those three motions, and (b) by
the nearest class mean of the slot features, fitted on the first half of the
clips and scored on the second.
"""

import sys

import numpy as np

from configs import synthetic
from vivit_jax import config as config_lib
from vivit_jax.checkpoints import formats
from vivit_jax.data import build_dataset
from vivit_jax.data import synthetic as synthetic_data
from vivit_jax.harness.ablation import sweeps
from vivit_jax.models import build_model

MOTIONS = np.array(synthetic_data.ORDER_MOTIONS)


def slot_features(workdir: str) -> tuple[np.ndarray, np.ndarray, dict]:
  """f32[n, t, d] space-pooled encoder features, int[n, t] slot motions, and the params."""
  base = synthetic.get_config('temporal_order')
  overrides = sweeps.variant_overrides(base, 'average_pool_baseline')
  config = config_lib.with_overrides(base, overrides)
  ds = build_dataset(config, num_local_devices=1, process_index=0, process_count=1)
  flat = formats.read_orbax(workdir)
  params = formats.unflatten(flat)
  module = build_model(config, flat['output_projection/bias'].shape[0])
  feats, motions = [], []
  for batch in ds.eval_iter():
    keep = np.asarray(batch['batch_mask'][0]) > 0
    clips = np.asarray(batch['inputs'][0])[keep]
    labels = np.asarray(batch['label'][0]).argmax(-1)[keep]
    _, state = module.apply(
      {'params': params}, clips, train=False, capture_intermediates=True, mutable=['intermediates']
    )
    out = state['intermediates']['SpatialTransformer']['encoder_norm']['__call__'][0]
    feats.append(np.asarray(out).mean(2))  # [b, t, s, d] -> [b, t, d]
    t = out.shape[1]
    per = t // len(MOTIONS)
    orders = [synthetic_data.segment_order(int(label)) for label in labels]
    motions.append(np.array([[MOTIONS[o[k // per]] for k in range(t)] for o in orders]))
  return np.concatenate(feats), np.concatenate(motions), flat


def main(workdir: str):
  feats, motions, flat = slot_features(workdir)
  logits = feats @ np.asarray(flat['output_projection/kernel'])
  logits = logits + np.asarray(flat['output_projection/bias'])
  by_head = MOTIONS[logits[..., MOTIONS].argmax(-1)]
  x, y = feats.reshape(-1, feats.shape[-1]), motions.reshape(-1)
  half = len(feats) // 2 * feats.shape[1]
  means = np.stack([x[:half][y[:half] == m].mean(0) for m in MOTIONS])
  nearest = MOTIONS[((x[half:, None] - means[None]) ** 2).sum(-1).argmin(1)]
  print(f'{len(feats)} clips x {feats.shape[1]} slots; chance 0.333')
  print(f"the baseline's head, three motions: {(by_head == motions).mean():.3f}")
  print(f'nearest class mean (second half):  {(nearest == y[half:]).mean():.3f}')


if __name__ == '__main__':
  main(*sys.argv[1:])

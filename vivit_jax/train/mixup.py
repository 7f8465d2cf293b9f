"""On-device mixup and CutMix for video clips.

Both pair every clip with a partner chosen by a random permutation of the
(per-device) batch and mix the labels with the same weight as the pixels.
CutMix pastes one box, the same for every frame of a clip, so the pasted
region moves with the clip rather than flickering.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _cutmix_box(rng: jax.Array, lam: jax.Array, height: int, width: int):
  """A box covering about (1 - lam) of the frame; returns (mask f32[H, W], area fraction)."""
  ry, rx = jax.random.split(rng)
  cut = jnp.sqrt(1.0 - lam)
  box_h = jnp.round(cut * height).astype(jnp.int32)
  box_w = jnp.round(cut * width).astype(jnp.int32)
  cy = jax.random.randint(ry, (), 0, height)
  cx = jax.random.randint(rx, (), 0, width)
  y0 = jnp.clip(cy - box_h // 2, 0, height)
  y1 = jnp.clip(cy - box_h // 2 + box_h, 0, height)
  x0 = jnp.clip(cx - box_w // 2, 0, width)
  x1 = jnp.clip(cx - box_w // 2 + box_w, 0, width)
  ys = jnp.arange(height)[:, None]
  xs = jnp.arange(width)[None, :]
  mask = ((ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)).astype(jnp.float32)
  return mask, jnp.sum(mask) / (height * width)


def mix_batch(
  rng: jax.Array,
  inputs: jax.Array,
  labels: jax.Array,
  *,
  alpha: float | None,
  cutmix_alpha: float | None = None,
  cutmix_switch_prob: float = 0.5,
  lam_rng: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
  """Applies mixup or CutMix to a batch of clips.

  With only `alpha` set: mixup, x = lam * x + (1 - lam) * x[perm], lam ~
  Beta(alpha, alpha). With only `cutmix_alpha`: CutMix, a box of area about
  (1 - lam) taken from the partner, lam ~ Beta(cutmix_alpha, cutmix_alpha),
  then lam is set to the exact unpasted fraction. With both: CutMix with
  probability `cutmix_switch_prob`, else mixup. Labels are always
  lam * y + (1 - lam) * y[perm].

  Args:
    rng: key for the permutation, the box and the switch.
    inputs: f32[B, T, H, W, C] clips.
    labels: f32[B, K] targets.
    alpha: mixup Beta parameter, or None / 0 for no mixup.
    cutmix_alpha: CutMix Beta parameter, or None / 0 for no CutMix.
    cutmix_switch_prob: probability of CutMix when both are enabled.
    lam_rng: key for lam (defaults to `rng`); pass a key shared by all devices
      to draw one lam per step.

  Returns:
    (inputs f32[B, T, H, W, C], labels f32[B, K], aux) where aux holds 'lam'
    (the label weight of the original clip), 'perm' i32[B] and 'cutmix' (bool).
  """
  use_mixup, use_cutmix = bool(alpha), bool(cutmix_alpha)
  if not use_mixup and not use_cutmix:
    raise ValueError('mix_batch needs mixup.alpha or mixup.cutmix_alpha.')
  perm_rng, box_rng, switch_rng = jax.random.split(rng, 3)
  lam_mix_rng, lam_cut_rng = jax.random.split(rng if lam_rng is None else lam_rng)
  batch, _, height, width, _ = inputs.shape
  perm = jax.random.permutation(perm_rng, batch)
  partner = inputs[perm]

  if use_cutmix and use_mixup:
    do_cutmix = jax.random.bernoulli(switch_rng, cutmix_switch_prob)
  else:
    do_cutmix = jnp.asarray(use_cutmix)

  lam_mix = jax.random.beta(lam_mix_rng, alpha, alpha) if use_mixup else jnp.float32(1.0)
  mixed = lam_mix * inputs + (1.0 - lam_mix) * partner
  if use_cutmix:
    lam_cut = jax.random.beta(lam_cut_rng, cutmix_alpha, cutmix_alpha)
    mask, pasted = _cutmix_box(box_rng, lam_cut, height, width)
    boxed = inputs + mask[None, None, :, :, None] * (partner - inputs)
    mixed = jnp.where(do_cutmix, boxed, mixed)
    lam = jnp.where(do_cutmix, 1.0 - pasted, lam_mix)
  else:
    lam = lam_mix
  lam = lam.astype(jnp.float32)
  mixed_labels = lam * labels + (1.0 - lam) * labels[perm]
  return mixed, mixed_labels, {'lam': lam, 'perm': perm, 'cutmix': do_cutmix}

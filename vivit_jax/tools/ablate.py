"""Reproduce the shape of the paper's ablations: `python -m vivit_jax.tools.ablate`.

  python -m vivit_jax.tools.ablate --sweep=variants --config=configs/synthetic.py \
      --workdir=workdirs/ablations --seeds=3 [--config.num_training_steps=512 ...]

Sweeps: variants, variants_pretrained, temporal_layers, tubelet_init,
regularisers, frames (vivit_jax/harness/ablation/sweeps.py). variants_pretrained starts
every row from an average-pool baseline pre-trained per seed on
--pretrain_config (or given by --checkpoint), its per-tubelet parts frozen:

  python -m vivit_jax.tools.ablate --sweep=variants_pretrained \
      --config=configs/synthetic.py:temporal_order,factorised \
      --pretrain_config=configs/synthetic.py:factorised --workdir=workdirs/ablations --seeds=3

`--config.key=value` overrides apply to every row (`--pretrain_config.key=value`
to the pre-training). Each row and seed trains through `train_and_evaluate` (the code path of
main.py) in `WORKDIR/<sweep>/<row>/seed_<i>`; rerunning the same command skips
finished rows and resumes an interrupted one from its checkpoint. Writes
`WORKDIR/<sweep>.md` and `WORKDIR/<sweep>.png`.
"""

from absl import app, flags
from ml_collections import config_flags

from vivit_jax.harness import ablation
from vivit_jax.tools import cli
from vivit_jax.train.checkpointing import quiet_orbax_logging

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Base experiment config file.', lock_config=True)
config_flags.DEFINE_config_file(
  'pretrain_config',
  None,
  'variants_pretrained: the config the average-pool baseline is pre-trained on, per seed '
  '(e.g. configs/synthetic.py:factorised); not needed with --checkpoint.',
  lock_config=True,
)
flags.DEFINE_enum('sweep', None, list(ablation.SWEEPS), 'Which ablation to run.')
flags.DEFINE_string('workdir', None, 'Root directory of the sweep.')
flags.DEFINE_integer('seeds', 1, 'Seeds per row (added to config.rng_seed).')
flags.DEFINE_list('values', None, 'Swept values for `frames` and `temporal_layers`, e.g. 0,1,2,4.')
flags.DEFINE_string(
  'checkpoint',
  None,
  'tubelet_init: image model (ViT .npz or Scenic msgpack); default: pre-train one. '
  'variants_pretrained: a directory of seed_<i> workdirs of the average-pool baseline (or one '
  'checkpoint for every seed); default: pre-train them on --pretrain_config.',
)
flags.DEFINE_integer(
  'pretrain_steps',
  None,
  "tubelet_init, variants_pretrained: steps of the pre-training (default: its config's).",
)
flags.DEFINE_bool('costs', True, "Measure each row's train-step time with vivit_jax.harness.perf.")
flags.DEFINE_bool('report_only', False, 'Write the report from finished seeds; train nothing.')
flags.DEFINE_string('header', '', 'A line for the top of the report (e.g. how it was shortened).')
flags.mark_flags_as_required(['config', 'sweep', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')

  quiet_orbax_logging()
  paths = ablation.ablate(
    FLAGS.sweep,
    FLAGS.config,
    FLAGS.workdir,
    seeds=FLAGS.seeds,
    values=[int(v) for v in FLAGS.values] if FLAGS.values else None,
    checkpoint=FLAGS.checkpoint,
    pretrain_steps=FLAGS.pretrain_steps,
    costs=FLAGS.costs,
    header=FLAGS.header,
    report_only=FLAGS.report_only,
    pretrain_config=FLAGS.pretrain_config,
  )
  if paths is None:
    print('Preempted: rerun the same command to continue.', flush=True)
  else:
    print(f'Table: {paths[0]}\nPlot: {paths[1]}', flush=True)


if __name__ == '__main__':
  cli.run(main)

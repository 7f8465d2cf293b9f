"""Train and evaluate ViViT: `python main.py --config=configs/k400_fe.py --workdir=DIR`.

Override any config key on the command line, e.g. `--config.batch_size=32`
(the config is locked, so a misspelt key is an error). The same command runs
on this CPU, a GPU, or every host of a TPU pod; for GPU/CPU clusters give
`--coordinator_address`, `--num_processes` and `--process_id` on each host.
Rerunning the same command resumes from the latest checkpoint in the workdir.
"""

import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from vivit_jax.harness import next_steps
from vivit_jax.tools import cli
from vivit_jax.train import trainer
from vivit_jax.train.checkpointing import quiet_orbax_logging

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, TensorBoard logs and results.')
flags.DEFINE_enum(
  'distributed',
  'auto',
  ['auto', 'on', 'off'],
  'Call jax.distributed.initialize(): auto = when --coordinator_address is given or a '
  'TPU pod / SLURM / Open MPI environment is detected.',
)
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (GPU/CPU clusters).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (GPU/CPU clusters).')
flags.DEFINE_integer('process_id', None, 'This process (0..num_processes-1).')
flags.mark_flags_as_required(['config', 'workdir'])

# Environment variables that mean "one of several processes" to JAX's
# cluster auto-detection.
_CLUSTER_ENV = ('TPU_WORKER_HOSTNAMES', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE')


def _initialise_distributed() -> None:
  if FLAGS.coordinator_address:
    # CPU clusters need a collectives backend for cross-process psum.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
      coordinator_address=FLAGS.coordinator_address,
      num_processes=FLAGS.num_processes,
      process_id=FLAGS.process_id,
    )
  elif FLAGS.distributed == 'on' or (
    FLAGS.distributed == 'auto' and any(os.environ.get(k) for k in _CLUSTER_ENV)
  ):
    jax.distributed.initialize()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  quiet_orbax_logging()
  if FLAGS.distributed != 'off':
    _initialise_distributed()
  logging.info(
    'JAX process %d of %d, devices: %s', jax.process_index(), jax.process_count(), jax.devices()
  )
  results = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  if jax.process_index() == 0:
    for split in ('validation', 'test'):
      if split in results:
        print(f'{split}: ' + ', '.join(f'{k} {v:.4f}' for k, v in sorted(results[split].items())))
    note = next_steps.closing_note(
      FLAGS.config,
      workdir=FLAGS.workdir,
      config_file=config_flags.get_config_filename(FLAGS['config']),
      overrides=config_flags.get_override_values(FLAGS['config']),
    )
    print(note, flush=True)


if __name__ == '__main__':
  cli.run(main)

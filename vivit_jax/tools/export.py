r"""Exports a trained ViViT as a TensorFlow SavedModel (jax2tf, polymorphic batch).

  python -m vivit_jax.tools.export --config=configs/k400_fe.py --checkpoint=/tmp/workdir \
      --output=/tmp/vivit_savedmodel

The SavedModel's `serving_default` signature maps `video`: f32[b, T, S, S, 3]
(one preprocessed view per row, values as the pipeline makes them) to
`logits`: f32[b, C], for any batch size b. The forward pass is serialised as
StableHLO (`native_serialization=True`), so TensorFlow runs the exact program
JAX compiles; the parameters are tf.Variables rather than constants in the
graph, which keeps the file under protobuf's 2 GB limit for large models.
Reload with `tf.saved_model.load(DIR).signatures['serving_default'](video=x)`
or `tf.saved_model.load(DIR).predict(x)`.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags
from ml_collections import config_flags

from vivit_jax import fileio
from vivit_jax.inference import VideoClassifier
from vivit_jax.inference.export import export_saved_model
from vivit_jax.tools import cli

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Workdir, Orbax step dir or msgpack file.')
_STEP = flags.DEFINE_integer('step', None, 'Step of a training workdir; default: the latest.')
_OUTPUT = flags.DEFINE_string('output', None, 'SavedModel directory to write.')
flags.mark_flags_as_required([_CONFIG, _CHECKPOINT, _OUTPUT])


def main(argv: Sequence[str]) -> None:
  del argv
  cli.check_writable('output', _OUTPUT.value, directory=True)
  classifier = VideoClassifier.from_checkpoint(_CONFIG.value, _CHECKPOINT.value, step=_STEP.value)
  export_saved_model(
    classifier.module, classifier.params, classifier.input_shape, fileio.absolute(_OUTPUT.value)
  )
  print(f'Wrote the SavedModel {_OUTPUT.value}: video f32[b, {classifier.input_shape}] -> logits')


if __name__ == '__main__':
  cli.run(main)

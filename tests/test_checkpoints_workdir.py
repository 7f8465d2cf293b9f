"""The one parameter-layout diff that the trainer's resume and inference's check share."""

import jax
import numpy as np

from vivit_jax.checkpoints import workdir


def test_param_layout_names_every_leaf_with_its_shape():
  tree = {'b': {'kernel': np.zeros((2, 3)), 'bias': np.zeros(3)}, 'a': np.float32(1.0)}
  abstract = jax.eval_shape(lambda: tree)
  expected = {'a': (), 'b/bias': (3,), 'b/kernel': (2, 3)}
  assert workdir.param_layout(tree) == expected
  assert workdir.param_layout(abstract) == expected
  assert workdir.param_layout({'steps': [np.zeros(2), np.zeros(4)]}) == {
    'steps/0': (2,),
    'steps/1': (4,),
  }


def test_layout_differences_in_the_callers_order_and_words():
  saved = {'z': (1,), 'k': (2, 3), 'extra': (5,), 'other': (1,)}
  wanted = {'k': (3, 3), 'm': (4,), 'z': (1,)}
  assert workdir.layout_differences(saved, wanted, limit=10) == [
    'k has shape (2, 3) in the checkpoint but (3, 3) in the model',
    'm is missing from the checkpoint',
    'extra is in the checkpoint but not in the model',
    'other is in the checkpoint but not in the model',
  ]
  assert workdir.layout_differences(saved, wanted) == [
    'k has shape (2, 3) in the checkpoint but (3, 3) in the model',
    'm is missing from the checkpoint',
    'extra is in the checkpoint but not in the model',
    'and 1 more differences',
  ]
  assert workdir.layout_differences(wanted, dict(wanted)) == []

"""Config validation: typos and bad values fail before any compile, with the fix."""

import pytest
from test_models import tiny_config

from vivit_jax.config import ConfigError, get_defaults, resolve
from vivit_jax.models import build_model


def test_misspelt_key_names_the_closest_known_key():
  with pytest.raises(
    ConfigError,
    match=r"'dataset_configs.one_hot_label'. Did you mean 'dataset_configs.one_hot_labels'",
  ):
    resolve({'dataset_configs': {'one_hot_label': True}})
  with pytest.raises(ConfigError, match=r"'model.num_head'. Did you mean 'model.num_heads'"):
    build_model(dict(tiny_config(), model={**tiny_config()['model'], 'num_head': 4}))


def test_key_at_the_wrong_level_names_where_it_belongs():
  with pytest.raises(ConfigError, match=r"Did you mean 'dataset_configs.num_frames'"):
    resolve({'num_frames': 8})


def test_wrong_type_is_rejected():
  with pytest.raises(ConfigError, match=r"'model.hidden_size' must be of type int"):
    resolve({'model': {'hidden_size': '768'}})
  with pytest.raises(ConfigError, match='bool'):
    resolve({'model': {'hidden_size': True}})


def test_scenic_keys_are_known_and_ints_pass_for_floats():
  config = resolve(
    {
      'datset_configs': {},  # A typo in Scenic's own config files.
      'max_grad_norm': 1,
      'l2_decay_factor': 0,
      'label_smoothing': None,
      'lr_configs': {'warmup_steps': 2.5 * 100},
      'init_from': {'model_config': None, 'checkpoint_format': 'scenic'},
      'dataset_configs': {'tables': {'train': 'train.tfrecord@1024'}},
      'model': {'temporal_encoding_config': {'n_sampled_frames': 4}},
    }
  )
  assert config.max_grad_norm == 1
  assert config.dataset_configs.tables.train == 'train.tfrecord@1024'


def test_variant_specific_keys_are_accepted_for_other_variants():
  config = tiny_config('spacetime', temporal_encoding_config={'n_sampled_frames': 4})
  config['model']['attention_config']['attention_order'] = 'space_time'
  build_model(config)  # spatial_transformer etc. are set too and ignored.


def test_resolve_fills_every_default():
  assert resolve({}).to_dict() == get_defaults().to_dict()


@pytest.mark.parametrize(
  'change,message',
  [
    ({'dataset_configs': {'crop_size': 10}}, 'crop_size=10 is not divisible'),
    ({'dataset_configs': {'num_frames': 5}}, 'num_frames=5 is not divisible by the tubelet'),
    ({'model': {'attention_config': {'type': 'axial'}}}, "expected one of 'spacetime'"),
    ({'model': {'classifier': 'cls'}}, "'model.classifier' is 'cls'"),
    ({'model': {'num_heads': 3}}, 'not divisible by .model.num_heads.=3'),
    ({'model': {'hidden_size': None}}, "'model.hidden_size' must be set"),
    ({'model': {'patches': {'size': (16, 16)}}}, r'must be \(h, w, t\)'),
    ({'model': {'dropout_rate': 1.0}}, r'must be in \[0, 1\)'),
    ({'model_dtype_str': 'float16'}, "'model_dtype_str' is 'float16'"),
    ({'dataset_configs': {'class_splits': (2, 2)}}, 'sum to 4, but the model has 5'),
    (
      {'model': {'temporal_encoding_config': {'method': 'temporal_sampling'}}},
      'n_sampled_frames. must be set',
    ),
  ],
)
def test_bad_values_raise_clear_errors(change, message):
  config = tiny_config()
  for section, values in change.items():
    if isinstance(values, dict):
      for key, value in values.items():
        if isinstance(value, dict):
          config[section].setdefault(key, {}).update(value)
        else:
          config[section][key] = value
    else:
      config[section] = values
  with pytest.raises(ConfigError, match=message):
    build_model(config)


def test_token_classifier_rejected_for_models_3_and_4():
  for attention_type in ('factorized_self_attention_block', 'factorized_dot_product_attention'):
    with pytest.raises(ConfigError, match="classifier='token' is not supported"):
      build_model(tiny_config(attention_type, 'token'))


def test_model_4_needs_an_even_number_of_heads():
  config = tiny_config('factorized_dot_product_attention', num_heads=1)
  with pytest.raises(ConfigError, match='must be even'):
    build_model(config)

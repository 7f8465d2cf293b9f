"""The four ViViT models: shapes, parameter trees, numerics against Scenic's definition."""

import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scenic_reference

from vivit_jax.config import ConfigError
from vivit_jax.models import attention, build_model, build_module, describe_model

VARIANTS = [
  ('spacetime', 'token'),
  ('spacetime', 'gap'),
  ('spacetime', 'gmp'),
  ('spacetime', 'gsp'),
  ('factorized_encoder', 'token'),
  ('factorized_encoder', 'gap'),
  ('factorized_self_attention_block', 'gap'),
  ('factorized_dot_product_attention', 'gap'),
]
VIDEO_SHAPE = (2, 4, 8, 8, 3)  # [b, T, H, W, 3]: 2 temporal x 4 spatial tokens.


def tiny_config(attention_type='spacetime', classifier='gap', **model):
  enc = {'num_heads': 4, 'mlp_dim': 32, 'num_layers': 2}
  config = {
    'model': {
      'hidden_size': 16,
      **enc,
      'spatial_transformer': dict(enc),
      'temporal_transformer': dict(enc, num_layers=1),
      'patches': {'size': (4, 4, 2)},
      'attention_config': {'type': attention_type},
      'classifier': classifier,
      **model,
    },
    'dataset_configs': {'num_classes': 5, 'num_frames': 4, 'crop_size': 8},
  }
  return config


def video(seed=0, shape=VIDEO_SHAPE):
  return jnp.asarray(np.random.RandomState(seed).uniform(-1, 1, shape), jnp.float32)


def random_params(module, x, seed=0):
  """Initialised, then every leaf perturbed so zero-initialised heads/cls matter."""
  params = module.init({'params': jax.random.key(seed)}, x, train=False)['params']
  leaves, tree = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  leaves = [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  return jax.tree_util.tree_unflatten(tree, leaves)


def jitted(module):
  """module.apply compiled once: f(params, video, train, dropout_key)."""

  def apply(params, x, train=False, key=None):
    rngs = {'dropout': key} if train else None
    return module.apply({'params': params}, x, train=train, rngs=rngs)

  return jax.jit(apply, static_argnames='train')


def flat_shapes(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flat_shapes(v, f'{prefix}{k}/'))
    else:
      out[f'{prefix}{k}'] = tuple(v.shape)
  return out


@pytest.mark.parametrize('attention_type,classifier', VARIANTS)
def test_matches_scenic_definition(attention_type, classifier):
  module = build_model(tiny_config(attention_type, classifier))
  x = video()
  params = random_params(module, x)
  logits = jitted(module)(params, x)
  assert logits.shape == (2, 5) and logits.dtype == jnp.float32
  expected = scenic_reference.forward(
    jax.device_get(params), x, attention_type=attention_type, classifier=classifier
  )
  np.testing.assert_allclose(logits, expected, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize(
  'extra',
  [
    {
      'attention_config': {
        'type': 'factorized_self_attention_block',
        'attention_order': 'space_time',
      }
    },
    {'attention_config': {'type': 'factorized_encoder', 'spatial_only_baseline': True}},
    {'representation_size': 8},
  ],
  ids=['fsa_space_time', 'fe_baseline', 'pre_logits'],
)
def test_options_match_scenic_definition(extra):
  config = tiny_config(**extra)
  attention = config['model']['attention_config']
  module = build_model(config)
  x = video(1)
  params = random_params(module, x)
  logits = module.apply({'params': params}, x, train=False)
  expected = scenic_reference.forward(
    jax.device_get(params),
    x,
    attention_type=attention['type'],
    classifier='gap',
    attention_order=attention.get('attention_order', 'time_space'),
    spatial_only_baseline=attention.get('spatial_only_baseline', False),
  )
  np.testing.assert_allclose(logits, expected, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize('attention_type', ['spacetime', 'factorized_encoder'])
def test_uniform_frame_sampling_matches_scenic_definition(attention_type):
  config = tiny_config(
    attention_type,
    'gap',
    patches={'size': (4, 4)},
    temporal_encoding_config={'method': 'temporal_sampling', 'n_sampled_frames': 2},
  )
  config['dataset_configs']['num_frames'] = 5
  module = build_model(config)
  x = video(2, (2, 5, 8, 8, 3))
  params = random_params(module, x)
  assert params['embedding']['kernel'].shape == (4, 4, 3, 16)
  logits = module.apply({'params': params}, x, train=False)
  expected = scenic_reference.forward(
    jax.device_get(params), x, attention_type=attention_type, classifier='gap', n_sampled_frames=2
  )
  np.testing.assert_allclose(logits, expected, rtol=2e-4, atol=2e-4)


def test_spacetime_parameter_tree_is_scenics():
  module = build_model(tiny_config('spacetime', 'token', representation_size=8))
  shapes = flat_shapes(module.init({'params': jax.random.key(0)}, video(), train=False)['params'])
  block = 'Transformer/encoderblock_0/'
  attn = block + 'MultiHeadDotProductAttention_0/'
  expected = {
    'embedding/kernel': (2, 4, 4, 3, 16),
    'embedding/bias': (16,),
    'cls': (1, 1, 16),
    'Transformer/posembed_input/pos_embedding': (1, 9, 16),
    block + 'LayerNorm_0/scale': (16,),
    block + 'LayerNorm_0/bias': (16,),
    attn + 'query/kernel': (16, 4, 4),
    attn + 'query/bias': (4, 4),
    attn + 'key/kernel': (16, 4, 4),
    attn + 'key/bias': (4, 4),
    attn + 'value/kernel': (16, 4, 4),
    attn + 'value/bias': (4, 4),
    attn + 'out/kernel': (4, 4, 16),
    attn + 'out/bias': (16,),
    block + 'LayerNorm_1/scale': (16,),
    block + 'LayerNorm_1/bias': (16,),
    block + 'MlpBlock_0/Dense_0/kernel': (16, 32),
    block + 'MlpBlock_0/Dense_0/bias': (32,),
    block + 'MlpBlock_0/Dense_1/kernel': (32, 16),
    block + 'MlpBlock_0/Dense_1/bias': (16,),
    'Transformer/encoder_norm/scale': (16,),
    'Transformer/encoder_norm/bias': (16,),
    'pre_logits/kernel': (16, 8),
    'pre_logits/bias': (8,),
    'output_projection/kernel': (8, 5),
    'output_projection/bias': (5,),
  }
  expected.update(
    {k.replace('encoderblock_0', 'encoderblock_1'): v for k, v in expected.items() if block in k}
  )
  assert shapes == expected


def test_factorised_encoder_parameter_tree_is_scenics():
  module = build_model(tiny_config('factorized_encoder', 'token'))
  shapes = flat_shapes(module.init({'params': jax.random.key(0)}, video(), train=False)['params'])
  top = sorted({k.split('/')[0] for k in shapes})
  assert top == [
    'SpatialTransformer',
    'TemporalTransformer',
    'cls_SpatialTransformer',
    'cls_TemporalTransformer',
    'embedding',
    'output_projection',
  ]
  # One frame's 4 tokens + CLS; 2 frame tokens + CLS.
  assert shapes['SpatialTransformer/posembed_input/pos_embedding'] == (1, 5, 16)
  assert shapes['TemporalTransformer/posembed_input/pos_embedding'] == (1, 3, 16)
  assert 'SpatialTransformer/encoderblock_1/MlpBlock_0/Dense_1/kernel' in shapes
  assert 'TemporalTransformer/encoderblock_1/LayerNorm_0/scale' not in shapes  # 1 temporal layer


def test_factorised_self_attention_block_names_are_scenics():
  module = build_model(tiny_config('factorized_self_attention_block'))
  shapes = flat_shapes(module.init({'params': jax.random.key(0)}, video(), train=False)['params'])
  block = {k.split('/', 2)[2].split('/')[0] for k in shapes if 'encoderblock_0' in k}
  assert block == {
    'LayerNorm_time',
    'MultiHeadDotProductAttention_time',
    'LayerNorm_space',
    'MultiHeadDotProductAttention_space',
    'LayerNorm_mlp',
    'MlpBlock',
  }


def test_zero_init_temporal_out_starts_identity_over_time_and_still_trains():
  x = video()

  def init(**attention):
    config = tiny_config('factorized_self_attention_block')
    config['model']['attention_config'].update(attention)
    module = build_model(config)
    init_fn = jax.jit(lambda key: module.init({'params': key}, x, train=False)['params'])
    return module, init_fn(jax.random.key(0))

  _, scenic = init()
  module, params = init(zero_init_temporal_out=True)
  flat, flat_scenic = (jax.tree_util.tree_leaves_with_path(p) for p in (params, scenic))
  assert [k for k, _ in flat] == [k for k, _ in flat_scenic]  # The same tree.
  for (path, value), (_, reference) in zip(flat, flat_scenic):
    name = jax.tree_util.keystr(path)
    if 'MultiHeadDotProductAttention_time' in name and "['out']['kernel']" in name:
      np.testing.assert_array_equal(value, 0.0)
      assert np.abs(reference).max() > 0
    else:
      np.testing.assert_array_equal(value, reference, err_msg=name)

  # A non-zero head, so that the loss reaches the body.
  params['output_projection']['kernel'] = jax.random.normal(
    jax.random.key(1), params['output_projection']['kernel'].shape
  )

  def perturb_time_qkv(p, seed):
    out = copy.deepcopy(p)
    for layer in ('encoderblock_0', 'encoderblock_1'):
      attention = out['Transformer'][layer]['MultiHeadDotProductAttention_time']
      for name in ('query', 'key', 'value'):
        k = attention[name]['kernel']
        attention[name]['kernel'] = k + jax.random.normal(jax.random.key(seed), k.shape)
    return out

  apply = jitted(module)
  # Identity over time: the temporal attentions' query, key and value do not matter yet.
  np.testing.assert_allclose(apply(perturb_time_qkv(params, 2), x), apply(params, x), atol=1e-6)

  def loss(p):
    return jnp.sum(module.apply({'params': p}, x, train=False) ** 2)

  grads = jax.jit(jax.grad(loss))(params)['Transformer']['encoderblock_0']
  time_out = grads['MultiHeadDotProductAttention_time']['out']['kernel']
  assert float(jnp.abs(time_out).max()) > 1e-4  # It trains, unlike 'zero' kernels.


def test_output_projection_is_zero_initialised():
  module = build_model(tiny_config())
  params = module.init({'params': jax.random.key(0)}, video(), train=False)['params']
  np.testing.assert_array_equal(params['output_projection']['kernel'], 0.0)
  np.testing.assert_array_equal(module.apply({'params': params}, video(), train=False), 0.0)


@pytest.mark.parametrize('attention_type,classifier', [VARIANTS[i] for i in (0, 2, 4, 5, 6, 7)])
def test_dropout_and_stochastic_depth_only_in_training(attention_type, classifier):
  config = tiny_config(
    attention_type,
    classifier,
    dropout_rate=0.1,
    attention_dropout_rate=0.1,
    stochastic_droplayer_rate=0.5,
  )
  module = build_model(config)
  x = video()
  params = random_params(module, x)
  apply = jitted(module)
  evaluate = lambda: apply(params, x)
  np.testing.assert_array_equal(evaluate(), evaluate())
  no_reg = build_model(tiny_config(attention_type, classifier))
  np.testing.assert_allclose(evaluate(), jitted(no_reg)(params, x), atol=1e-6)
  train = lambda seed: apply(params, x, True, jax.random.key(seed))
  assert not np.allclose(train(0), evaluate(), atol=1e-4)
  assert not np.allclose(train(0), train(1), atol=1e-4)
  np.testing.assert_array_equal(train(3), train(3))


@pytest.mark.parametrize('attention_type', ['spacetime', 'factorized_self_attention_block'])
def test_stochastic_depth_alone_changes_training_output(attention_type):
  # Model 3 included: Scenic's version silently ignores the rate there.
  module = build_model(tiny_config(attention_type, stochastic_droplayer_rate=0.5))
  x = video()
  params = random_params(module, x)
  apply = jitted(module)
  outs = [apply(params, x, True, jax.random.key(s)) for s in range(4)]
  assert len({np.asarray(o).round(4).tobytes() for o in outs}) > 1


@pytest.mark.parametrize(
  'attention_type,classifier', [VARIANTS[0], VARIANTS[4], VARIANTS[6], VARIANTS[7]]
)
def test_bfloat16_runs_and_stays_close(attention_type, classifier):
  config = tiny_config(attention_type, classifier)
  f32 = build_model(config)
  config['model_dtype_str'] = 'bfloat16'
  bf16 = build_model(config)
  x = video()
  params = random_params(f32, x)
  out = jax.jit(lambda p: bf16.apply({'params': p}, x, train=False))(params)
  assert out.dtype == jnp.float32
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params))
  ref = jitted(f32)(params, x)
  scale = float(jnp.abs(ref).max())
  np.testing.assert_allclose(out, ref, atol=0.1 * scale)


@pytest.mark.parametrize('attention_type', ['spacetime', 'factorized_dot_product_attention'])
def test_remat_and_xla_attention_give_the_same_logits(attention_type):
  module = build_model(tiny_config(attention_type))
  x = video()
  params = random_params(module, x)
  ref = jitted(module)(params, x)
  xla = build_model(tiny_config(attention_type, attention_implementation='xla'))
  np.testing.assert_allclose(jitted(xla)(params, x), ref, atol=1e-5)
  # Off a TPU, 'splash' is XLA's attention (the kernel itself: test_splash_attention_*).
  splash = build_model(tiny_config(attention_type, attention_implementation='splash'))
  np.testing.assert_allclose(jitted(splash)(params, x), ref, atol=1e-5)
  remat = build_model(tiny_config(attention_type, remat=True))
  value_and_grad = lambda m: jax.jit(
    jax.value_and_grad(lambda p: m.apply({'params': p}, x, train=False).sum())
  )(params)
  (value, grads), (ref_value, ref_grads) = value_and_grad(remat), value_and_grad(module)
  np.testing.assert_allclose(value, ref_value, atol=1e-5)
  for g, r in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref_grads)):
    np.testing.assert_allclose(g, r, atol=1e-4)


def test_splash_attention_kernel_matches_xla_attention():
  # Pallas's interpreter runs the TPU kernel here. 130 tokens: one full block of
  # 128 and one of 2 tokens + 126 of padding, which no query may see.
  q, k, v = jax.random.normal(jax.random.key(0), (3, 2, 130, 2, 16))
  kernel = functools.partial(attention.splash_attention, interpret=True)
  reference = functools.partial(jax.nn.dot_product_attention, implementation='xla')
  np.testing.assert_allclose(kernel(q, k, v), reference(q, k, v), atol=1e-5)
  # 'splash' runs it where it holds less than XLA's probabilities: Model 1's 3137
  # tokens, not the 197 or 17 of the factorised models (compiled: docs/fitting.md).
  assert attention.splash_pays(3137, 64) and attention.splash_pays(130, 16)
  assert not attention.splash_pays(197, 64) and not attention.splash_pays(17, 64)
  # The gradients go through the kernel's own backward pass (its dq and dkv kernels).
  squares = lambda f: jax.grad(lambda q, k, v: (f(q, k, v) ** 2).sum(), argnums=(0, 1, 2))
  for got, want in zip(squares(kernel)(q, k, v), squares(reference)(q, k, v)):
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_splash_attention_runs_on_each_devices_rows_over_a_mesh():
  # The trainer's mesh step maps its per-device function over rows with vmap's
  # spmd_axis_name under jax.set_mesh; XLA cannot split the kernel, so it runs in
  # shard_map, each device on its own rows.
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ('data', 'fsdp'))
  q, k, v = jax.random.normal(jax.random.key(1), (3, 4, 1, 130, 2, 16))
  kernel = functools.partial(attention.splash_attention, interpret=True)
  rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(('data', 'fsdp')))
  mapped = jax.jit(jax.vmap(kernel, spmd_axis_name=('data', 'fsdp')), in_shardings=rows)
  with jax.set_mesh(mesh):
    out = mapped(q, k, v)
  reference = jax.vmap(functools.partial(jax.nn.dot_product_attention, implementation='xla'))
  np.testing.assert_allclose(out, reference(q, k, v), atol=1e-5)
  assert out.sharding.spec == rows.spec


def test_multi_head_output_concatenates_heads():
  config = tiny_config('factorized_encoder', 'token')
  config['dataset_configs'].update(num_classes=7, class_splits=(4, 3), split_names=('noun', 'verb'))
  module = build_model(config)
  params = module.init({'params': jax.random.key(0)}, video(), train=False)['params']
  assert params['output_projection']['kernel'].shape == (16, 7)
  assert module.apply({'params': params}, video(), train=False).shape == (2, 7)


def test_return_prelogits_and_preclassifier():
  config = tiny_config('spacetime', 'token', representation_size=8, return_prelogits=True)
  module = build_model(config)
  params = module.init({'params': jax.random.key(0)}, video(), train=False)['params']
  assert module.apply({'params': params}, video(), train=False).shape == (2, 8)
  config = tiny_config('spacetime', 'token', return_preclassifier=True)
  module = build_model(config)
  params = module.init({'params': jax.random.key(0)}, video(), train=False)['params']
  assert module.apply({'params': params}, video(), train=False).shape == (2, 9, 16)


def test_batch_elements_are_independent():
  module = build_model(tiny_config('factorized_dot_product_attention'))
  x = video()
  params = random_params(module, x)
  both = module.apply({'params': params}, x, train=False)
  first = module.apply({'params': params}, x[:1], train=False)
  np.testing.assert_allclose(both[:1], first, atol=1e-5)


def test_config_is_not_mutated_by_build():
  config = tiny_config()
  before = copy.deepcopy(config)
  build_model(config)
  assert config == before


BASELINE = {'attention_config': {'type': 'factorized_encoder', 'spatial_only_baseline': True}}
SAMPLED = {
  'patches': {'size': (4, 4)},
  'temporal_encoding_config': {'method': 'temporal_sampling', 'n_sampled_frames': 8},
}


@pytest.mark.parametrize(
  'attention_type,classifier,extra',
  [(a, c, {}) for a, c in VARIANTS]
  + [('factorized_encoder', 'token', BASELINE), ('spacetime', 'token', SAMPLED)],
)
def test_description_names_the_modules_and_shapes_of_the_parameter_tree(
  attention_type, classifier, extra
):
  config = tiny_config(attention_type, classifier, **extra)
  model = describe_model(config)
  assert model.input_shape == (4, 8, 8, 3) and model.attention.type == attention_type
  assert model.tokens.hidden_size == 16 and model.head.num_classes == 5
  assert model.head.classifier == classifier
  assert model.spatial_only_baseline == (extra is BASELINE)
  # 8 sampled frames of a 4-frame clip are its 4 frames; tubelets of 2 frames give 2 steps.
  sampled = extra is SAMPLED
  assert model.tokens.method == ('temporal_sampling' if sampled else '3d_conv')
  assert model.token_grid == ((4 if sampled else 2), 2, 2)
  assert model.tokens.patch_size == ((4, 4, 1) if sampled else (4, 4, 2))
  clip = jax.ShapeDtypeStruct((1, *model.input_shape), jnp.float32)
  init = lambda module: jax.eval_shape(
    lambda x: module.init({'params': jax.random.key(0)}, x, train=False), clip
  )['params']
  params = init(build_module(model))
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
    init(build_model(config))
  )
  assert set(params) - {'embedding', 'output_projection'} == set(model.encoders) | set(
    model.class_tokens
  )
  t, h, w = model.token_grid
  for name, size in model.encoders.items():
    tokens = {'SpatialTransformer': h * w, 'TemporalTransformer': t}.get(name, t * h * w)
    tokens += int(bool(model.class_tokens))
    assert params[name]['posembed_input']['pos_embedding'].shape == (1, tokens, 16)
    assert f'encoderblock_{size.num_layers - 1}' in params[name]
    assert f'encoderblock_{size.num_layers}' not in params[name]


def test_description_without_classes_builds_no_model():
  config = tiny_config()
  del config['dataset_configs']['num_classes']
  assert describe_model(config).head.num_classes is None
  assert describe_model(config, 3).head.num_classes == 3
  with pytest.raises(ConfigError, match='dataset_configs.num_classes'):
    build_model(config)

"""The fit check: slice names, and the trainer's step compiled for a TPU slice (and for
H100s) without one.

The compile runs in a subprocess: loading libtpu into a test worker would leave
its TPU plugin beside the CPU backend for every later test there. libtpu comes
from `make libtpu` and JAX's CUDA plugin from `make cuda-plugin` (`make test` runs
both); without them the compile tests skip.
"""

import fcntl
import json
import os
import subprocess
import sys
import tempfile

import pytest

from vivit_jax.harness import fit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'configs', 'synthetic.py')
needs_libtpu = pytest.mark.skipif(
  fit.libtpu_path() is None, reason='libtpu is not installed (make libtpu)'
)

# Every compile of the test below, in one subprocess (each start loads libtpu and the
# project: seconds of CPU). Its last line is {'compare': ..., 'splash': ...}.
#
# compare: the same step for a v5e slice of 4 chips, for 4 local CPU devices and (with JAX's
# CUDA plugin) for 4 H100s, 8 clips each; and for the slice over a mesh with every array
# split 4 ways.
#
# splash: a spacetime model of 257 tokens (3 blocks of 128 for the kernel), its gradient
# compiled for one v5e chip with each attention implementation (at this size XLA's own
# attention keeps its scores on chip too; what the kernel saves at ViViT's sizes is in
# docs/fitting.md), and the trainer's mesh step with the kernel (XLA cannot split it: it must
# run per device).
COMPILES = """
import dataclasses, json, sys
import jax, jax.numpy as jnp
from vivit_jax.harness import fit
from vivit_jax.config import load_config_file
from vivit_jax.models import build_model
v5e = fit.slice_devices(fit.parse_slice('v5litepod-4'))

config = load_config_file(sys.argv[1])
compare = {'tpu': fit.compile_step(config, v5e, 8)}
compare['cpu'] = fit.compile_step(config, jax.local_devices()[:4], 8)
if fit.has_cuda_plugin():
  h100 = fit.parse_slice('4xh100')
  compare['gpu'] = fit.compile_step(config, fit.slice_devices(h100), 8, h100.compiler_options)
config.parallelism, config.mesh.fsdp, config.mesh.min_sharded_size = 'mesh', 4, 0
compare['mesh'] = fit.compile_step(config, v5e, 8)

one_chip = jax.sharding.SingleDeviceSharding(v5e[0])
x = jax.ShapeDtypeStruct((2, 8, 32, 32, 3), jnp.float32, sharding=one_chip)
splash = {}
for implementation in ('xla', 'splash'):
  tiny = {'model': {'hidden_size': 64, 'num_heads': 2, 'mlp_dim': 64, 'num_layers': 1,
                    'patches': {'size': (4, 4, 2)}, 'attention_config': {'type': 'spacetime'},
                    'classifier': 'token', 'attention_implementation': implementation},
          'dataset_configs': {'num_classes': 5, 'num_frames': 8, 'crop_size': 32}}
  module = build_model(tiny)
  params = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(x.shape), train=False))
  loss = lambda p, v: module.apply(p, v, train=False).sum()
  compiled = jax.jit(jax.grad(loss)).lower(params, x).compile()
  splash[implementation] = 'tpu_custom_call' in compiled.as_text()
config = load_config_file(sys.argv[1])
config.dataset_configs.update(crop_size=48, min_resize=48)  # 217 tokens
config.model.attention_implementation = 'splash'
config.parallelism, config.mesh.fsdp, config.mesh.min_sharded_size = 'mesh', 4, 0
mesh = fit.compile_step(config, v5e, 2)
splash['mesh'] = [mesh.error, mesh.kernel_flops_uncounted]
compare = {k: dataclasses.asdict(v) for k, v in compare.items()}
print(json.dumps({'compare': compare, 'splash': splash}))
"""


def _run(args):
  """Runs python `args`; one of these at a time, as each holds a whole TPU compile in memory.

  XLA's own flags, not the suite's (tests/cpu_env.py): what is compiled here is what the
  fit check compiles.

  (libtpu itself refuses a second process unless ALLOW_MULTIPLE_LIBTPU_LOAD is set, which
  `fit.tpu_devices` does: a fit check running beside the suite does not fail it.)
  """
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS='--xla_force_host_platform_device_count=4')
  with open(os.path.join(tempfile.gettempdir(), 'vivit_jax_tests_libtpu.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Test workers run these tests side by side.
    return subprocess.run(
      [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_splash_kernel_is_suggested_where_it_would_run():
  from vivit_jax.tools import fit as tool

  load = lambda name: fit.config_lib.load_config_file(os.path.join(REPO, 'configs', name))
  assert fit.splash_would_run(load('k400_spacetime.py'))  # 3137 tokens
  assert not fit.splash_would_run(load('k400_fsa.py'))  # 196 spatial, 16 temporal
  assert not fit.splash_would_run(load('k400_fe.py'))
  labels = lambda name, on_tpu: [label for label, _ in tool._suggestions(load(name), 8, on_tpu)]
  assert labels('k400_spacetime.py', True) == [
    'bf16',
    'splash attention',
    'remat',
    'bf16 + remat',
    'bf16 + remat + splash attention',
    'bf16 + remat + FSDP over all chips',
  ]
  assert 'splash attention' not in labels('k400_spacetime.py', False)  # a GPU: no kernel
  assert 'splash attention' not in labels('k400_fe.py', True)
  # What each suggestion changes (the keys exist: with_overrides refuses any other).
  changed = fit.config_lib.with_overrides(
    load('k400_spacetime.py'),
    dict(tool._suggestions(load('k400_spacetime.py'), 8, True))['bf16 + remat + splash attention'],
  )
  assert changed.model.attention_implementation == 'splash' and changed.model.remat
  assert changed.model_dtype_str == 'bfloat16'


def test_slice_names(monkeypatch):
  v5e = fit.parse_slice('v5litepod-16')
  assert (v5e.chip.name, v5e.num_chips) == ('v5e', 16)
  assert v5e.topology_kwargs['topology_name'] == 'v5e:4x4'
  assert v5e.topology_kwargs['chips_per_host_bounds'] == (2, 2, 1)
  single_host = fit.parse_slice('v5e-8').topology_kwargs
  assert (single_host['topology_name'], single_host['chips_per_host_bounds']) == (
    'v5e:2x4',
    (2, 4, 1),
  )
  v4 = fit.parse_slice('v4-32')  # v4 names count TensorCores: 16 megacore chips
  assert v4.num_chips == 16 and v4.topology_kwargs['topology_name'] == 'v4:2x2x4'
  assert v4.topology_kwargs['chip_config_name'] == 'megacore'
  assert fit.parse_slice('v5p-8').topology_kwargs['topology_name'] == 'v5:2x2x1'
  assert fit.parse_slice('v6e-8').chip.hbm_bytes == 32 * fit.GIB
  with pytest.raises(fit.FitError, match=r'--topology=v4-6: no v4 slice of 6 here; use one of'):
    fit.parse_slice('v4-6')
  with pytest.raises(fit.FitError, match=r'--topology=tpu7 is no slice name this check knows'):
    fit.parse_slice('tpu7')
  # GPUs: up to 8 on a host, then hosts of 8; the share of memory JAX's allocator takes.
  h100 = fit.parse_slice('8xH100')
  assert (h100.chip.platform, h100.num_chips) == ('cuda', 8)
  assert h100.topology_kwargs['topology'] == '1x1x8'
  assert fit.parse_slice('16xh100').topology_kwargs['topology'] == '1x2x8'
  assert h100.compiler_options == {'xla_gpu_enable_triton_gemm': False}
  assert fit.parse_slice('v4-8').compiler_options == {}
  monkeypatch.delenv('XLA_PYTHON_CLIENT_MEM_FRACTION', raising=False)
  assert h100.chip.limit_bytes == 0.75 * h100.chip.hbm_bytes
  monkeypatch.setenv('XLA_PYTHON_CLIENT_MEM_FRACTION', '.9')  # as the user's run would use
  assert h100.chip.limit_bytes == 0.9 * h100.chip.hbm_bytes
  with pytest.raises(fit.FitError, match=r'--topology=3xh100: no such GPU count here'):
    fit.parse_slice('3xh100')


@needs_libtpu
def test_tpu_and_h100_compiles_agree_with_a_local_compile_and_splash_is_the_tpu_kernel():
  # One test, so that the one subprocess runs once (the suite's workers split a module).
  done = _run(['-c', COMPILES, CONFIG])
  assert done.returncode == 0, done.stderr[-3000:]
  compiled = json.loads(done.stdout.strip().splitlines()[-1])
  # The fused TPU attention kernel is what a TPU compile runs, also in the mesh step.
  assert compiled['splash'] == {'xla': False, 'splash': True, 'mesh': [None, True]}
  result = compiled['compare']
  tpu, cpu = result['tpu'], result['cpu']
  assert tpu['error'] is None and cpu['error'] is None
  # What the step holds is the model's, whatever compiles it.
  assert tpu['state_bytes'] == cpu['state_bytes'] > 0
  assert tpu['batch_bytes'] == cpu['batch_bytes'] > 0
  # The chip's buffers for the inputs are the state and the batch (layouts may pad them).
  for r in (tpu, cpu):
    assert r['state_bytes'] + r['batch_bytes'] <= r['argument_bytes'] * 1.001
    assert r['argument_bytes'] < 2 * (r['state_bytes'] + r['batch_bytes'])
    assert r['argument_bytes'] + r['temp_bytes'] <= r['peak_bytes']
  # The same arithmetic: within 5% of each other and of 3x the paper's forward count.
  assert abs(tpu['flops'] / cpu['flops'] - 1) < 0.05
  assert abs(tpu['flops'] / tpu['paper_flops'] - 1) < 0.05
  # Over the mesh each chip holds a quarter of the state (the few arrays no 4 divides whole)
  # and does the same work.
  mesh = result['mesh']
  assert mesh['error'] is None
  assert tpu['state_bytes'] / 4 <= mesh['state_bytes'] < 0.3 * tpu['state_bytes']
  assert abs(mesh['flops'] / tpu['flops'] - 1) < 0.05
  # The same step for 4 H100s (`make test` installs the plugin; elsewhere this part is left
  # out, as the TPU compiles are without libtpu).
  assert ('gpu' in result) == fit.has_cuda_plugin()
  if 'gpu' not in result:
    return
  gpu = result['gpu']
  assert gpu['error'] is None
  assert (gpu['state_bytes'], gpu['batch_bytes']) == (cpu['state_bytes'], cpu['batch_bytes'])
  # A GPU lays out the inputs as the host does: the arguments are the state and the batch.
  assert gpu['argument_bytes'] == gpu['state_bytes'] + gpu['batch_bytes']
  assert gpu['argument_bytes'] + gpu['temp_bytes'] <= gpu['peak_bytes']
  # The same program's temporaries: XLA's GPU and CPU compilers fuse differently (40 and 45
  # MB here), not by a factor of 2.
  assert 0.5 < gpu['temp_bytes'] / cpu['temp_bytes'] < 2
  assert gpu['flops'] != gpu['flops']  # XLA's GPU compiler counts none: the tool says so


@needs_libtpu
def test_the_tool_reports_a_fit_and_an_out_of_memory_as_one_line():
  # A one-layer model of width 16: the tool's output is what is checked here (the compile of
  # the synthetic config itself is checked above), and each of its 8 compiles is quicker.
  tiny = ['--config.model.num_layers=1', '--config.model.hidden_size=16']
  tiny += ['--config.model.num_heads=2', '--config.model.mlp_dim=32']
  base = ['-m', 'vivit_jax.tools.fit', f'--config={CONFIG}', '--nosearch', *tiny]
  fits = _run([*base, '--topology=v5litepod-4'])
  assert fits.returncode == 0, fits.stderr[-3000:]
  lines = fits.stdout.strip().splitlines()
  assert lines[0].startswith('synthetic.py on v5litepod-4: 4 v5e chips (float32')
  assert lines[1].startswith('8 clips per chip: fits: peak ')
  assert 'GiB of 16.00' in lines[1] and 'at peak (a bound)' in lines[1]
  # A batch no chip holds: XLA's out-of-memory, one line, then what would make it fit.
  huge = _run([*base, '--topology=v5litepod-4', '--per_chip_batch=200000'])
  assert huge.returncode == 0, huge.stderr[-3000:]
  lines = huge.stdout.strip().splitlines()
  assert lines[1].startswith('200000 clips per chip: does not fit: ')
  assert 'RESOURCE_EXHAUSTED' in lines[1] or 'over the HBM' in lines[1]
  assert any(line.startswith('with bf16 + remat: ') for line in lines)
  assert any(line.startswith('with bf16 + remat + FSDP over all chips: ') for line in lines)
  if not fit.has_cuda_plugin():
    return
  # H100s: memory against JAX's share of it; a bound from the paper's count, said as such.
  gpus = _run([*base, '--topology=2xh100'])
  assert gpus.returncode == 0, gpus.stderr[-3000:]
  lines = gpus.stdout.strip().splitlines()
  assert lines[0].startswith(
    "synthetic.py on 2xh100: 2 NVIDIA H100 80GB HBM3 GPUs, 59.32 of each one's 79.10 GiB for JAX"
  )
  assert lines[1].startswith('16 clips per chip: fits: peak ') and 'GiB of 59.32' in lines[1]
  assert lines[1].endswith(
    "from 3x the paper's forward count (a bound; the compiler counts no FLOPs here)"
  )

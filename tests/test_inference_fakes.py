"""Helpers of the inference tests: a tiny config, its checkpoints and mp4 files.

Holds no tests; the other test_inference_* files import it.
"""

import os

import av
import jax
import ml_collections
import numpy as np

from vivit_jax.checkpoints import formats
from vivit_jax.models import build_model, input_shape
from vivit_jax.train.checkpointing import Checkpointer
from vivit_jax.train.state import TrainState

NUM_CLASSES = 3
LABELS = ['cat', 'dog', 'eel']


def tiny_config(attention: str = 'spacetime', **data) -> ml_collections.ConfigDict:
  """A ~10k-parameter ViViT on 4 frames of 16x16; 2 test clips at 8 fps."""
  c = ml_collections.ConfigDict()
  c.rng_seed = 0
  d = ml_collections.ConfigDict()
  d.num_classes = NUM_CLASSES
  d.num_frames = 4
  d.stride = 2
  d.fps = 8
  d.min_resize = 16
  d.crop_size = 16
  d.num_test_clips = 2
  d.do_three_spatial_crops = False
  d.update(data)
  c.dataset_configs = d
  m = ml_collections.ConfigDict()
  m.hidden_size = 16
  m.patches = ml_collections.ConfigDict({'size': (8, 8, 2)})
  m.attention_config = ml_collections.ConfigDict({'type': attention})
  if attention == 'factorized_encoder':
    for name in ('spatial_transformer', 'temporal_transformer'):
      m[name] = ml_collections.ConfigDict({'num_heads': 2, 'mlp_dim': 32, 'num_layers': 1})
  else:
    m.num_heads, m.mlp_dim, m.num_layers = 2, 32, 2
  m.classifier = 'token'
  c.model = m
  return c


def random_params(config: ml_collections.ConfigDict, seed: int = 0) -> dict:
  """Random params, with a random (not zero) output projection so classes differ."""
  module = build_model(config)
  video = np.zeros((1, *input_shape(config)), np.float32)
  params = jax.device_get(module.init(jax.random.key(seed), video, train=False)['params'])
  head = params['output_projection']
  rng = np.random.default_rng(seed)
  head['kernel'] = rng.normal(0, 1, head['kernel'].shape).astype(np.float32)
  head['bias'] = rng.normal(0, 1, head['bias'].shape).astype(np.float32)
  return params


def write_orbax_workdir(workdir: str, params: dict, step: int = 5) -> None:
  """A trainer-style workdir: WORKDIR/checkpoints/<step> with a full train state."""
  state = TrainState(
    step=np.int32(step),
    params=params,
    opt_state={'mu': jax.tree_util.tree_map(np.ones_like, params)},
    rng=np.zeros(2, np.uint32),
    # Only written, never stepped: no model, optimiser or schedule (not in checkpoints).
    apply_fn=None,
    tx=None,
    schedule=None,
  )
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'))
  checkpointer.save(state, to_host=jax.device_get)
  checkpointer.close()


def write_msgpack(directory: str, params: dict) -> str:
  """DIR/checkpoint as `convert_checkpoint` writes it."""
  path = os.path.join(directory, 'checkpoint')
  formats.write_scenic(path, params)
  return path


def moving_frames(num_frames: int, size=(24, 32), seed: int = 0) -> np.ndarray:
  """u8[N, H, W, 3]: a textured background with a bright square moving right."""
  rng = np.random.default_rng(seed)
  background = rng.integers(0, 120, (*size, 3), dtype=np.uint8)
  frames = np.repeat(background[None], num_frames, axis=0)
  for i in range(num_frames):
    x = (3 * i) % (size[1] - 6)
    frames[i, 4:10, x : x + 6] = (250, 200, 50)
  return frames


def write_mp4(path, frames: np.ndarray, fps: int = 8, grey: bool = False) -> str:
  """Writes u8[N, H, W, 3] frames as an mp4 (odd sizes work: yuv444p)."""
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('libx264', rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = 'gray' if grey else 'yuv444p'
    stream.options = {'crf': '0', 'preset': 'ultrafast'}
    for frame in frames:
      if grey:
        video_frame = av.VideoFrame.from_ndarray(frame[..., 0], format='gray')
      else:
        video_frame = av.VideoFrame.from_ndarray(frame, format='rgb24')
      container.mux(stream.encode(video_frame))
    container.mux(stream.encode())
  return str(path)

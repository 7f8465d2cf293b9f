"""Pretrained checkpoints: ViT .npz (vision_transformer, big_vision), Scenic
msgpack train states and HF ViViT directories, and surgery into ViViT."""

from vivit_jax.checkpoints.adapters import ShapeError
from vivit_jax.checkpoints.formats import FORMATS, detect_format, read_checkpoint, write_scenic
from vivit_jax.checkpoints.load import convert, load_pretrained
from vivit_jax.checkpoints.surgery import Entry, format_report

__all__ = [
  'FORMATS',
  'Entry',
  'ShapeError',
  'convert',
  'detect_format',
  'format_report',
  'load_pretrained',
  'read_checkpoint',
  'write_scenic',
]

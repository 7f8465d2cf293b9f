"""The safetensors file format, read and written with numpy (no pickle, no torch).

Layout: 8-byte little-endian header length, a JSON header mapping each tensor
name to {dtype, shape, data_offsets: [begin, end]} (offsets into the data that
follows the header), then the raw little-endian bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping

import ml_dtypes
import numpy as np

from vivit_jax import fileio

_DTYPES = {
  'F64': np.dtype('<f8'),
  'F32': np.dtype('<f4'),
  'F16': np.dtype('<f2'),
  'BF16': np.dtype(ml_dtypes.bfloat16),
  'I64': np.dtype('<i8'),
  'I32': np.dtype('<i4'),
  'I16': np.dtype('<i2'),
  'I8': np.dtype('i1'),
  'U8': np.dtype('u1'),
  'BOOL': np.dtype('?'),
}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


def load(path: str) -> dict[str, np.ndarray]:
  """Reads every tensor of a .safetensors file as numpy arrays (copies)."""
  with fileio.open_file(path, 'rb') as f:
    data = f.read()
  (size,) = struct.unpack('<Q', data[:8])
  header = json.loads(data[8 : 8 + size])
  header.pop('__metadata__', None)
  body = memoryview(data)[8 + size :]
  out = {}
  for name, info in header.items():
    if info['dtype'] not in _DTYPES:
      raise ValueError(f'{path}: tensor {name!r} has unsupported dtype {info["dtype"]}.')
    begin, end = info['data_offsets']
    array = np.frombuffer(body[begin:end], dtype=_DTYPES[info['dtype']])
    out[name] = array.reshape(info['shape']).copy()
  return out


def save(path: str, tensors: Mapping[str, np.ndarray], metadata: dict | None = None) -> None:
  """Writes tensors (in sorted name order) as a .safetensors file."""
  header: dict = {'__metadata__': dict(metadata or {'format': 'pt'})}
  chunks, offset = [], 0
  for name in sorted(tensors):
    array = np.ascontiguousarray(tensors[name])
    dtype = array.dtype.newbyteorder('<') if array.dtype.byteorder == '>' else array.dtype
    if dtype not in _NAMES:
      raise ValueError(f'Tensor {name!r} has dtype {array.dtype}, which safetensors cannot hold.')
    raw = array.astype(dtype).tobytes()
    header[name] = {
      'dtype': _NAMES[dtype],
      'shape': list(array.shape),
      'data_offsets': [offset, offset + len(raw)],
    }
    chunks.append(raw)
    offset += len(raw)
  encoded = json.dumps(header, separators=(',', ':')).encode()
  encoded += b' ' * (-len(encoded) % 8)  # The data starts 8-byte aligned.
  with fileio.atomic_write(path, 'wb') as f:
    f.write(struct.pack('<Q', len(encoded)))
    f.write(encoded)
    for raw in chunks:
      f.write(raw)

"""Video input: DMVR-format TFRecords, TFDS, and a synthetic motion dataset.

`build_dataset(config)` is the entry point; see docs/data.md for the format and
the pipeline's behaviour.
"""

from vivit_jax.data.dataset import Dataset, build_dataset
from vivit_jax.data.prefetch import prefetch_to_device
from vivit_jax.data.sources import DataError
from vivit_jax.data.synthetic import ensure_synthetic

__all__ = ['DataError', 'Dataset', 'build_dataset', 'ensure_synthetic', 'prefetch_to_device']

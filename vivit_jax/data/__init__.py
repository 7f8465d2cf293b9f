"""Video input: DMVR-format TFRecords, video files, TFDS, and a synthetic motion dataset.

`build_dataset(config)` is the entry point; see docs/data.md for the format and
the pipeline's behaviour. Where each concern lives:

- `dataset.py`: the config -> a `Dataset` (its `meta.py` metadata and iterators);
- `sources.py`: the `Source` protocol every reader implements, `SplitData`,
  `DataError`, and TFRecord tables; the readers are `tfrecord_source.py`,
  `tfds_source.py` and `video_files.py` (decoding in `video_io.py`);
- `clip_spec.py`: the clip and augmentation settings, read once from the config;
- `pipeline.py`: records -> clips -> batches, with `sampling.py`, `video_ops.py`,
  `augment.py`, `rand_augment.py` and `labels.py` as its per-clip ops;
- `records.py` (the DMVR record format), `conversion.py` (videos -> shards),
  `synthetic.py`, `prefetch.py` (batches onto the devices).
"""

from vivit_jax.data.dataset import Dataset, build_dataset
from vivit_jax.data.prefetch import prefetch_to_device
from vivit_jax.data.sources import DataError
from vivit_jax.data.synthetic import ensure_synthetic

__all__ = ['DataError', 'Dataset', 'build_dataset', 'ensure_synthetic', 'prefetch_to_device']

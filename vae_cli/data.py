"""The data layer's public names, kept importable from ``vae_cli.data``; the code lives in ``vae_cli.datasets``."""

from vae_cli.datasets import (
    BUILDERS,
    BatchPreprocess,
    DatasetInfo,
    ImageSplits,
    IndexBatches,
    MappedImages,
    RawSplits,
    StreamingBatches,
    eval_batches,
    load_dataset,
    make_train_batches,
    splits_to,
    to_unit_float,
)

__all__ = [
    "BUILDERS",
    "BatchPreprocess",
    "DatasetInfo",
    "ImageSplits",
    "IndexBatches",
    "MappedImages",
    "RawSplits",
    "StreamingBatches",
    "eval_batches",
    "load_dataset",
    "make_train_batches",
    "splits_to",
    "to_unit_float",
]

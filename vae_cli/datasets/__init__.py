"""Datasets: files -> uint8 tensors (decoded once) -> batches on the training device.

Modules, one job each: ``idx`` (MNIST family), ``cifar``, ``svhn`` + ``matlab``, ``celeba``, ``image_folder``
+ ``decode`` + ``cache`` (image files), ``synthetic``, ``download`` (torchvision downloads), ``splits`` (the
data types), ``loader`` (config -> splits), ``preprocess`` (binarization, dequantization, flips) and ``batches``
(what the trainer iterates), ``factor_sets`` (the factor grids as splits; any dataset's ground-truth factors). Which
dataset a name means, and which builder reads it, is the dataset catalog's (config/datasets.py). docs/datasets.md
has the on-disk layout of every dataset.
"""

from vae_cli.datasets.batches import (
    Batch,
    IndexBatches,
    StreamingBatches,
    eval_batches,
    labelled_batches,
    make_train_batches,
)
from vae_cli.datasets.loader import load_dataset
from vae_cli.datasets.preprocess import BatchPreprocess, to_unit_float
from vae_cli.datasets.splits import DatasetInfo, ImageSplits, MappedImages, RawSplits, splits_to

__all__ = [
    "Batch",
    "BatchPreprocess",
    "DatasetInfo",
    "ImageSplits",
    "IndexBatches",
    "MappedImages",
    "RawSplits",
    "StreamingBatches",
    "eval_batches",
    "labelled_batches",
    "load_dataset",
    "make_train_batches",
    "splits_to",
    "to_unit_float",
]

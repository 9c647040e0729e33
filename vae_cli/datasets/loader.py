"""``load_dataset``: a config -> the train/val/test splits, preprocessed and ready for the device.

Steps: the dataset's builder (its spec's ``build`` in the dataset catalog, config/datasets.py) reads its files ->
shape check -> a seeded validation split carved
from the official training split -> optional subset -> static binarization -> in memory, or left on disk to be
streamed when the training split exceeds dataset.memory_budget_mb. The official test split is never shuffled,
subset or mixed into training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from vae_cli.config.catalog import load_attribute
from vae_cli.config.datasets import DATASETS, DatasetCatalog, DatasetConfig
from vae_cli.config.enums import Binarize, SubsetMode, TrainSplit
from vae_cli.datasets.preprocess import FIXED_SAMPLE_DOMAIN, binarize_static, mix_seed
from vae_cli.datasets.splits import ImageSplits, MappedImages, Parts, RawSplits, materialize, take
from vae_cli.process.errors import DataError

log = logging.getLogger(__name__)


def builder(name: str) -> Callable[[DatasetConfig, Parts], RawSplits]:
    """The function that reads dataset ``name``'s files: it reads the official splits it is asked for (``Parts``)
    and returns the others empty."""
    if name not in DATASETS:
        raise DataError(
            f"Unknown dataset.name '{name}'. Choose one of: {', '.join(sorted(DATASETS.names()))} (e.g. dataset=mnist)."
        )
    return load_attribute(DATASETS[name].build, DatasetCatalog.packages)


def carve_indices(n: int, cfg: DatasetConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) row numbers of the official training split: val is a seeded random slice, then the subset."""
    if cfg.val_size >= n:
        raise DataError(
            f"dataset.val_size={cfg.val_size} leaves no training images: the training split of '{cfg.name}' has "
            f"{n}. Use a smaller dataset.val_size."
        )
    if cfg.val_size == 0:
        # No validation split: model selection then uses the training loss; keep the order untouched.
        train_idx, val_idx = torch.arange(n), torch.arange(0)
    else:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        # Both splits in file order. A mask instead of sort(): sorting 60k indices costs ~0.3 s on a busy CPU.
        is_val = torch.zeros(n, dtype=torch.bool)
        is_val[perm[: cfg.val_size]] = True
        val_idx, train_idx = is_val.nonzero().flatten(), (~is_val).nonzero().flatten()
    if cfg.subset is not None and cfg.subset < len(train_idx):
        if SubsetMode(cfg.subset_mode) == SubsetMode.random:
            g = torch.Generator().manual_seed(mix_seed(seed, 7))
            keep = torch.zeros(len(train_idx), dtype=torch.bool)
            keep[torch.randperm(len(train_idx), generator=g)[: cfg.subset]] = True
            train_idx = train_idx[keep]
        else:
            train_idx = train_idx[: cfg.subset]
    return train_idx, val_idx


SPLITS = ("train", "val", "test")


def load_dataset(cfg: DatasetConfig, seed: int, splits: tuple[str, ...] = SPLITS) -> ImageSplits:
    """Build the splits of ``cfg``; ``seed`` (the trainer seed) draws the val split and subset.

    Only the files the asked ``splits`` come from are read: evaluating the test split needs no training files.
    ``dataset.train_split=test`` trains (and validates) on the official test split; its test split is then empty.
    """
    build = builder(cfg.name)
    from_test = TrainSplit(cfg.train_split) == TrainSplit.test
    source = "test" if from_test else "train"
    parts = set()
    if {"train", "val"} & set(splits):
        parts.add(source)
    if "test" in splits and not from_test:
        parts.add("test")
    raw = build(cfg, frozenset(parts))
    expected = (cfg.channels, cfg.image_size, cfg.image_size)
    if from_test:  # the official test split stands in for the training split; no held-out test numbers
        empty = torch.zeros((0, *expected), dtype=torch.uint8)
        raw = RawSplits(raw.test, raw.test_labels, empty, torch.zeros(0, dtype=torch.long), raw.class_names)
    for images in (raw.train, raw.test):
        if images.shape[0] and tuple(images.shape[1:]) != expected:
            raise DataError(
                f"Dataset '{cfg.name}' holds images of shape {tuple(images.shape[1:])} but the config says "
                f"{expected} (dataset.channels, dataset.image_size); fix those two keys to match the files."
            )
    if raw.train.shape[0]:
        train_idx, val_idx = carve_indices(raw.train.shape[0], cfg, seed)
    else:
        train_idx = val_idx = torch.zeros(0, dtype=torch.long)
    everything = len(train_idx) == raw.train.shape[0]  # val_size=0, no subset: the rows in order, no copy
    train = raw.train if everything else take(raw.train, train_idx)
    train_bytes = int(torch.Size(train.shape).numel())
    stream = isinstance(train, MappedImages) and train_bytes > cfg.memory_budget_mb * 2**20
    if stream:
        if Binarize(cfg.binarize) == Binarize.static_sample:
            raise DataError(
                f"dataset.binarize=static_sample needs the training images in memory, but '{cfg.name}' "
                f"({train_bytes / 2**20:.0f} MiB) is above dataset.memory_budget_mb={cfg.memory_budget_mb} and is "
                f"streamed. Use dataset.binarize=dynamic or static_threshold, or raise dataset.memory_budget_mb."
            )
        log.info(
            "training split %.0f MiB > memory budget %d MiB: streaming it", train_bytes / 2**20, cfg.memory_budget_mb
        )
    else:
        train = binarize_static(materialize(train), cfg, mix_seed(FIXED_SAMPLE_DOMAIN, 0), for_training=True)
    val = binarize_static(materialize(take(raw.train, val_idx)), cfg, mix_seed(FIXED_SAMPLE_DOMAIN, 1), False)
    test = binarize_static(materialize(raw.test), cfg, mix_seed(FIXED_SAMPLE_DOMAIN, 2), False)
    test_labels = raw.test_labels
    val_labels = raw.train_labels[val_idx]
    if cfg.eval_subset is not None:  # quick checks: the first N of each held-out split (after binarization, so
        n = cfg.eval_subset  # those N images are exactly the whole split's first N)
        val, val_labels, test, test_labels = val[:n], val_labels[:n], test[:n], test_labels[:n]
    return ImageSplits(
        name=cfg.name,
        train=train,
        train_labels=raw.train_labels[train_idx],
        val=val,
        val_labels=val_labels,
        test=test,
        test_labels=test_labels,
        class_names=tuple(raw.class_names),
    )

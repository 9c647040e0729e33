"""Datasets with ground-truth factors: the factor grids (``dataset=shapes2d | xyobject | dsprites``) as train/test
splits, and the ground truth of any dataset config that has one, for the disentanglement metrics.

A grid is split once with a constant seed (the same whatever trainer.seed): ``dataset.num_test`` grid points are
the test split, then ``dataset.num_train`` others (null: all the rest) the training split, from which the loader
carves the validation split as for any dataset. The label of each image is one factor (its spec's
``label_factor``), so the latent scatter is coloured by it and a conditional model can use it. The metrics do not
use these splits: they draw fresh observations from the whole grid (``vae_cli.factors``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from vae_cli.config.catalog import load_attribute
from vae_cli.config.datasets import DATASETS, DatasetCatalog, DatasetConfig
from vae_cli.datasets.splits import BOTH, Parts, RawSplits, empty_images
from vae_cli.factors.ground_truth import FactorData, FactorGrid
from vae_cli.process.errors import DataError

log = logging.getLogger(__name__)

GRID_SPLIT_SEED = 20_261_201  # constant: the test grid points must not change with trainer.seed


def grid_split(size: int, num_train: int | None, num_test: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) grid indices, each in grid order."""
    if num_test >= size:
        raise DataError(
            f"dataset.num_test={num_test} leaves no training images: '{name}' has {size} grid points. Use a smaller "
            f"dataset.num_test."
        )
    wanted = size - num_test if num_train is None else num_train
    if num_test + wanted > size:
        raise DataError(
            f"dataset.num_train={num_train} and dataset.num_test={num_test} ask for more than the {size} grid points "
            f"of '{name}'; use dataset.num_train=null (all the rest) or smaller numbers."
        )
    order = np.random.default_rng(GRID_SPLIT_SEED).permutation(size)
    return np.sort(order[num_test : num_test + wanted]), np.sort(order[:num_test])


def grid_splits(grid: FactorGrid, cfg: DatasetConfig, parts: Parts) -> RawSplits:
    spec = DATASETS[cfg.name].grid
    assert spec is not None
    train_idx, test_idx = grid_split(grid.size, cfg.num_train, cfg.num_test, cfg.name)
    label = grid.factor_names.index(spec.label_factor)
    rng = np.random.default_rng(0)  # unused by grids (each combination is one image)
    shape = (cfg.channels, cfg.image_size, cfg.image_size)

    def split(indices: np.ndarray, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        if part not in parts:
            return empty_images(shape)
        factors = grid.factors_of(indices)
        if len(indices) > 50_000:
            log.info("%s: making %d images of the %s split", cfg.name, len(indices), part)
        images = grid.observations(factors, rng)
        return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(factors[:, label].copy())

    train, train_labels = split(train_idx, "train")
    test, test_labels = split(test_idx, "test")
    return RawSplits(train, train_labels, test, test_labels, spec.class_names)


def load_grid_dataset(cfg: DatasetConfig, parts: Parts = BOTH) -> RawSplits:
    """The builder of every factor-grid dataset: its grid (``ground_truth``), split."""
    grid = ground_truth_for(cfg)
    assert isinstance(grid, FactorGrid)
    return grid_splits(grid, cfg, parts)


# ----- the ground truth of each dataset that has one (DatasetSpec.ground_truth) -----------------------------------
def factors_csv_path(cfg: DatasetConfig) -> Path:
    """``dataset.factors_csv``: an absolute path, or a path relative to ``dataset.root`` (the folder it describes;
    never the folder vae-train or vae-eval happens to be started in)."""
    root = Path(cfg.root).expanduser()
    given = Path(cfg.factors_csv).expanduser()
    path = given if given.is_absolute() else root / given
    if not path.is_file():
        raise DataError(
            f"dataset.factors_csv={cfg.factors_csv} is not a file{'' if given.is_absolute() else f' in dataset.root ({root})'}; "
            f"give the path of the CSV that lists each image's factors (relative to dataset.root, or absolute)."
        )
    return path


def read_factor_table(cfg: DatasetConfig) -> tuple[list[Path], np.ndarray, tuple[str, ...], list[np.ndarray]]:
    """The factors CSV of an image folder, read and checked whole, and the image files it lists (each must exist):
    what training checks before its first step, without decoding an image."""
    from vae_cli.factors.table import read_factors_csv

    csv_path = factors_csv_path(cfg)
    files, factors, names, values = read_factors_csv(csv_path)
    root = Path(cfg.root).expanduser()
    paths = [root / f for f in files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) the factors CSV {csv_path} lists do not exist, e.g. {missing[0]}. File paths "
            f"in the CSV are relative to dataset.root ({root})."
        )
    return paths, factors, names, values


def folder_with_factors(cfg: DatasetConfig) -> FactorData:
    """The images listed in the factors CSV, decoded as the run decodes the folder, with their factors."""
    from vae_cli.datasets.decode import decode_files
    from vae_cli.datasets.image_folder import decode_spec
    from vae_cli.factors.table import FactorTable

    paths, factors, names, values = read_factor_table(cfg)
    images = np.zeros((len(paths), cfg.channels, cfg.image_size, cfg.image_size), dtype=np.uint8)
    decode_files(paths, decode_spec(cfg), images, cfg.num_workers, skip_bad=False, root=Path(cfg.root).expanduser())
    return FactorTable(images, factors, names, values)


def check_ground_truth(cfg: DatasetConfig) -> None:
    """Before training: what scoring the run's factors will read is there and usable (a factors CSV read and checked
    whole, its images present), so a run is not refused after its first epoch. (A factor grid is the dataset
    itself: loading the data, before the first step, reads it.)"""
    spec = DATASETS.get(cfg.name)
    if spec is None or not spec.has_factors(cfg):
        ground_truth_for(cfg)  # raises the message
    if spec is not None and spec.factors_from_csv:
        read_factor_table(cfg)


def ground_truth_for(cfg: DatasetConfig) -> FactorData:
    """The ground-truth factors of a run's ``dataset`` config (its spec's ``ground_truth``), or a DataError."""
    spec = DATASETS.get(cfg.name)
    if spec is None or not spec.has_factors(cfg):
        grids = ", ".join(DATASETS.with_factors())
        raise DataError(
            f"dataset '{cfg.name}' has no ground-truth factors, so disentanglement cannot be measured on it. Use a "
            f"factor dataset ({grids}), or an image folder with a factors CSV "
            f"(dataset=image_folder dataset.factors_csv=factors.csv, see docs/disentanglement.md)."
        )
    assert spec.ground_truth is not None
    return load_attribute(spec.ground_truth, DatasetCatalog.packages)(cfg)

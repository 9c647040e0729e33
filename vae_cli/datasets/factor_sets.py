"""``dataset=shapes2d | xyobject | dsprites``: the ground-truth factor datasets as train/test splits.

The grid is split once with a constant seed (the same whatever trainer.seed): ``dataset.num_test`` grid points
are the test split, then ``dataset.num_train`` others (null: all the rest) the training split, from which the
loader carves the validation split as for any dataset. The label of each image is one factor (shape, colour), so
the latent scatter is coloured by it and a conditional model can use it. The metrics do not use these splits:
they draw fresh observations from the whole grid (``vae_cli.factors``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from vae_cli.config import DatasetConfig
from vae_cli.datasets.splits import BOTH, Parts, RawSplits, empty_images
from vae_cli.errors import DataError
from vae_cli.factors.ground_truth import FactorGrid

log = logging.getLogger(__name__)

GRID_SPLIT_SEED = 20_261_201  # constant: the test grid points must not change with trainer.seed
# Which factor is each dataset's class label.
LABEL_FACTOR = {"shapes2d": "shape", "dsprites": "shape", "xyobject": "colour"}
CLASS_NAMES = {
    "shapes2d": ("square", "ellipse", "heart"),
    "dsprites": ("square", "ellipse", "heart"),
    "xyobject": ("red", "yellow", "green", "cyan", "blue", "magenta"),
}


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
    train_idx, test_idx = grid_split(grid.size, cfg.num_train, cfg.num_test, cfg.name)
    label = grid.factor_names.index(LABEL_FACTOR[cfg.name])
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
    return RawSplits(train, train_labels, test, test_labels, CLASS_NAMES[cfg.name])


def load_shapes2d(cfg: DatasetConfig, parts: Parts = BOTH) -> RawSplits:
    from vae_cli.factors.shapes2d import Shapes2D

    return grid_splits(Shapes2D(), cfg, parts)


def load_xyobject(cfg: DatasetConfig, parts: Parts = BOTH) -> RawSplits:
    from vae_cli.factors.xyobject import XYObject

    return grid_splits(XYObject(), cfg, parts)


def load_dsprites_splits(cfg: DatasetConfig, parts: Parts = BOTH) -> RawSplits:
    from vae_cli.factors.dsprites import load_dsprites

    return grid_splits(load_dsprites(Path(cfg.root).expanduser(), cfg.download), cfg, parts)

"""``dataset=svhn``: Street View House Numbers, cropped 32x32 digits, from the official ``.mat`` files.

Layout: ``<root>/SVHN/{train,test}_32x32.mat`` (MATLAB level-5 files: ``X`` uint8 [32, 32, 3, N], ``y`` [N, 1]
with the digit 0 labelled 10). They are read by ``matlab.py``, so neither scipy nor the md5 of the official file
is needed; ``dataset.download=true`` fetches them through torchvision's SVHN class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vae_cli.config.datasets import DatasetConfig
from vae_cli.datasets.download import torchvision_download
from vae_cli.datasets.matlab import MatFileError, read_mat
from vae_cli.datasets.splits import BOTH, Parts, RawSplits, empty_images
from vae_cli.process.errors import DataError

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        arrays = read_mat(path)
    except (OSError, MatFileError) as exc:
        raise DataError(
            f"{path} could not be read as an SVHN MATLAB file: {exc}. It is truncated or corrupt; delete it and "
            f"download it again (dataset.download=true, or by hand from http://ufldl.stanford.edu/housenumbers/)."
        ) from exc
    x, y = arrays.get("X"), arrays.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        shapes = {k: v.shape for k, v in arrays.items()}
        raise DataError(
            f"{path} holds {shapes or 'no numeric arrays'}, not X [32, 32, 3, N] and y [N, 1]: it is not an SVHN "
            f"cropped-digits file (format 2). Replace it with train_32x32.mat / test_32x32.mat."
        )
    labels = y.reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path} has labels outside 1-10: it is not an SVHN file. Replace it.")
    labels[labels == 10] = 0  # SVHN labels the digit 0 as 10
    images = np.ascontiguousarray(x.astype(np.uint8).transpose(3, 2, 0, 1))  # [H, W, C, N] -> [N, C, H, W]
    return torch.from_numpy(images), torch.from_numpy(labels)


def load_svhn(cfg: DatasetConfig, parts: Parts = BOTH) -> RawSplits:
    base = Path(cfg.root).expanduser().resolve() / "SVHN"
    files = {split: name for split, name in SVHN_FILES.items() if split in parts}
    if cfg.download:
        for split, name in files.items():
            if not (base / name).is_file():
                torchvision_download("svhn", "SVHN", base, split=split)
    missing = [n for n in files.values() if not (base / n).is_file()]
    if missing:
        raise DataError(
            f"SVHN was not found: {', '.join(missing)} missing from {base}/. Run once with dataset.download=true "
            f"where there is internet, or download them from http://ufldl.stanford.edu/housenumbers/ into "
            f"{base}/, or set dataset.root to the folder that holds SVHN/ (docs/datasets.md)."
        )
    empty = empty_images((3, 32, 32))
    train, train_labels = read_svhn_mat(base / files["train"]) if "train" in files else empty
    test, test_labels = read_svhn_mat(base / files["test"]) if "test" in files else empty
    return RawSplits(train, train_labels, test, test_labels, tuple("0123456789"))

"""``dataset=cifar10``: the CIFAR-10 "python version" batches, read directly (no md5 check of the archive).

Layout (torchvision's): ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``. Each batch is
a pickle of ``{data: uint8 [N, 3072], labels: [N]}``. The files are unpickled with an allow-list of the numpy
types they contain, so a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vae_cli.config.datasets import DatasetConfig
from vae_cli.datasets.download import torchvision_download
from vae_cli.datasets.splits import BOTH, Parts, RawSplits, empty_images
from vae_cli.process.errors import DataError

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"the pickle wants {module}.{name}, which a CIFAR batch never contains")
        return super().find_class(module, name)


def read_batch(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            entry = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(
            f"{path} could not be read as a CIFAR python batch ({type(exc).__name__}: {exc}). It is truncated or "
            f"corrupt; delete the cifar-10-batches-py folder and download it again (dataset.download=true, or "
            f"unpack cifar-10-python.tar.gz there by hand)."
        ) from exc
    if not isinstance(entry, dict):
        raise DataError(f"{path} holds a {type(entry).__name__}, not a CIFAR batch dict; replace the file.")
    return entry


def _images_and_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    entry = read_batch(path)
    data = np.asarray(entry.get("data"))
    labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise DataError(
            f"{path} holds data of shape {data.shape} ({data.dtype}) and {labels.shape} labels, not uint8 "
            f"[N, 3072] with N labels: it is not a CIFAR-10 batch. Replace it with the original file."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise DataError(f"{path} has labels outside 0-9: it is not a CIFAR-10 batch (CIFAR-100?). Replace it.")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(cfg: DatasetConfig, parts: Parts = BOTH) -> RawSplits:
    root = Path(cfg.root).expanduser().resolve()
    base = root / "cifar-10-batches-py"
    needed = (*(TRAIN_FILES if "train" in parts else ()), *(TEST_FILES if "test" in parts else ()))
    if cfg.download and not all((base / n).is_file() for n in needed):
        torchvision_download("cifar10", "CIFAR10", root)
    missing = [n for n in needed if not (base / n).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 was not found: {base}/ should hold {', '.join(needed)} and {META_FILE}; missing: "
            f"{', '.join(missing)}. Run once with dataset.download=true where there is internet, or unpack "
            f"cifar-10-python.tar.gz into {root}/ yourself, or set dataset.root to the folder that holds "
            f"cifar-10-batches-py/ (docs/datasets.md)."
        )
    names = CIFAR10_CLASSES
    if (base / META_FILE).is_file():
        meta = read_batch(base / META_FILE)
        names = tuple(meta.get("label_names", names))
    read = {split: empty_images((3, 32, 32)) for split in ("train", "test")}
    for split, files in (("train", TRAIN_FILES), ("test", TEST_FILES)):
        if split not in parts:
            continue
        pairs = [_images_and_labels(base / n) for n in files]
        read[split] = (
            torch.from_numpy(np.concatenate([p[0] for p in pairs])),
            torch.from_numpy(np.concatenate([p[1] for p in pairs])),
        )
    return RawSplits(read["train"][0], read["train"][1], read["test"][0], read["test"][1], names)

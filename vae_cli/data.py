"""Datasets: files -> uint8 tensors in memory -> batches by index on the training device.

MNIST-size data fits in memory many times over, so every split is decoded once into a ``uint8`` tensor of shape
``[N, C, H, W]``; an epoch is a seeded ``randperm`` sliced into index batches, with no per-sample Python work
(the per-sample PIL + ``ToTensor`` DataLoader path costs more than the model on CPU).

Files are read through torchvision's dataset classes, so ``dataset.download=true`` uses torchvision's real
download where there is internet. Offline, known system install locations (Debian's ``dataset-fashion-mnist``)
and gzipped IDX files are staged into the layout torchvision expects.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from vae_cli.config import DatasetConfig
from vae_cli.errors import DataError


@dataclass
class ImageSplits:
    """All splits of one dataset as uint8 image tensors ``[N, C, H, W]`` and int64 labels ``[N]``."""

    name: str
    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])  # type: ignore[return-value]


@dataclass
class RawSplits:
    """What a dataset builder returns: the official train and test splits, before the val split."""

    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor


IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Places where an operating system package puts a dataset's gzipped IDX files.
SYSTEM_LOCATIONS: dict[str, tuple[Path, ...]] = {
    "fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),),
    "mnist": (),
}

HOW_TO_GET: dict[str, str] = {
    "fashion_mnist": (
        "install Debian's package (apt-get install dataset-fashion-mnist, found automatically in "
        "/usr/share/datasets/fashion-mnist), or "
    ),
    "mnist": "",
}


def stage_idx_files(raw_dir: Path, search_dirs: tuple[Path, ...]) -> None:
    """Make each IDX file exist uncompressed in ``raw_dir``, decompressing a ``.gz`` copy if one is found.

    Looks in ``raw_dir`` itself first (a manual download leaves ``.gz`` files), then in ``search_dirs``.
    Each file is written to a temporary name and renamed, so an interrupted run never leaves half a file.
    """
    for name in IDX_FILES:
        target = raw_dir / name
        if target.exists():
            continue
        for folder in (raw_dir, *search_dirs):
            source = folder / f"{name}.gz"
            if source.is_file():
                raw_dir.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=raw_dir, prefix=f".{name}.")
                try:
                    with gzip.open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    os.replace(tmp, target)
                except (OSError, EOFError) as exc:
                    Path(tmp).unlink(missing_ok=True)
                    raise DataError(
                        f"Could not decompress {source} into {target}: {exc}. The file is corrupt or the "
                        f"folder is not writable; re-download the file or point dataset.root at a writable "
                        f"folder."
                    ) from exc
                break


def _torchvision_idx_dataset(cfg: DatasetConfig, class_name: str) -> RawSplits:
    """Read an MNIST-format dataset through torchvision's class of that name."""
    import torchvision.datasets as tvd

    dataset_class = getattr(tvd, class_name)
    root = Path(cfg.root).expanduser().resolve()
    raw_dir = root / class_name / "raw"
    if not cfg.download:
        stage_idx_files(raw_dir, SYSTEM_LOCATIONS.get(cfg.name, ()))
    try:
        train = dataset_class(str(root), train=True, download=cfg.download)
        test = dataset_class(str(root), train=False, download=cfg.download)
    except (RuntimeError, OSError, ValueError) as exc:
        missing = [n for n in IDX_FILES if not (raw_dir / n).exists()]
        if missing:
            raise DataError(
                f"Dataset '{cfg.name}' was not found: torchvision expects the IDX files {', '.join(IDX_FILES)} "
                f"(uncompressed or .gz) in {raw_dir}/ and {len(missing)} of them are missing "
                f"({', '.join(missing)}). To fix it, {HOW_TO_GET.get(cfg.name, '')}run once with "
                f"dataset.download=true where there is internet, or copy the files there yourself, or set "
                f"dataset.root to the folder that holds {class_name}/raw/."
            ) from exc
        raise DataError(
            f"Dataset '{cfg.name}' in {raw_dir} could not be read ({exc}). A file is probably truncated or "
            f"corrupt; delete the uncompressed files there and run again (they are re-staged from the .gz "
            f"copies), or re-download them with dataset.download=true."
        ) from exc
    return RawSplits(
        train=train.data.unsqueeze(1).contiguous(),
        train_labels=train.targets.long(),
        test=test.data.unsqueeze(1).contiguous(),
        test_labels=test.targets.long(),
    )


def _synthetic(cfg: DatasetConfig) -> RawSplits:
    """Ten classes of smooth random patterns plus pixel noise: tiny, learnable, and needs no files.

    Deterministic for a given config (fixed generator seed), so tests get the same data every time.
    """
    g = torch.Generator().manual_seed(1234)
    c, s = cfg.channels, cfg.image_size
    coarse = torch.rand(10, c, max(2, s // 4), max(2, s // 4), generator=g)
    templates = torch.nn.functional.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=False)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, 10, (n,), generator=g)
        images = templates[labels] + 0.1 * torch.randn(n, c, s, s, generator=g)
        return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels

    train, train_labels = make(cfg.num_train)
    test, test_labels = make(cfg.num_test)
    return RawSplits(train, train_labels, test, test_labels)


BUILDERS: dict[str, Callable[[DatasetConfig], RawSplits]] = {
    "mnist": lambda cfg: _torchvision_idx_dataset(cfg, "MNIST"),
    "fashion_mnist": lambda cfg: _torchvision_idx_dataset(cfg, "FashionMNIST"),
    "synthetic": _synthetic,
}


def load_dataset(cfg: DatasetConfig, seed: int) -> ImageSplits:
    """Build the train/val/test splits: val is a seeded random slice of the official training split."""
    if cfg.name not in BUILDERS:
        raise DataError(
            f"Unknown dataset.name '{cfg.name}'. Choose one of: {', '.join(sorted(BUILDERS))} "
            f"(e.g. dataset=fashion_mnist)."
        )
    raw = BUILDERS[cfg.name](cfg)
    expected = (cfg.channels, cfg.image_size, cfg.image_size)
    if tuple(raw.train.shape[1:]) != expected:
        raise DataError(
            f"Dataset '{cfg.name}' holds images of shape {tuple(raw.train.shape[1:])} but the config says "
            f"{expected} (dataset.channels, dataset.image_size); fix those two keys to match the files."
        )
    n = raw.train.shape[0]
    if cfg.val_size >= n:
        raise DataError(
            f"dataset.val_size={cfg.val_size} leaves no training images: the training split of "
            f"'{cfg.name}' has {n}. Use a smaller dataset.val_size."
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[: cfg.val_size], perm[cfg.val_size :]
    if cfg.val_size == 0:
        # No validation split: model selection then uses the training loss; keep the order untouched.
        train_idx = torch.arange(n)
    train_idx = train_idx.sort().values
    if cfg.subset is not None:
        train_idx = train_idx[: cfg.subset]
    return ImageSplits(
        name=cfg.name,
        train=raw.train[train_idx],
        train_labels=raw.train_labels[train_idx],
        val=raw.train[val_idx.sort().values],
        val_labels=raw.train_labels[val_idx.sort().values],
        test=raw.test,
        test_labels=raw.test_labels,
    )


def splits_to(data: ImageSplits, device: torch.device) -> ImageSplits:
    """The same splits with every tensor moved to ``device`` (done once, before training)."""
    return ImageSplits(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(data).items()})


def to_unit_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]."""
    return batch.to(torch.float32).div_(255.0)


def eval_batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Float batches in [0, 1] of a uint8 tensor, in order (evaluation: no shuffling)."""
    for start in range(0, images.shape[0], batch_size):
        yield to_unit_float(images[start : start + batch_size])


class IndexBatches:
    """Batches of a uint8 tensor kept on the training device, drawn by index.

    The order of epoch ``e`` comes from a generator seeded with ``(seed, e)``, so any epoch, and any batch in
    it, can be reproduced after a resume without saving generator state.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int, shuffle: bool = True) -> None:
        self.images = images
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle

    def __len__(self) -> int:
        return -(-self.images.shape[0] // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        n = self.images.shape[0]
        if not self.shuffle:
            return torch.arange(n, device=self.images.device)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=g).to(self.images.device)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[torch.Tensor]:
        """Yield float batches in [0, 1] for one epoch, starting at batch ``start_batch``."""
        order = self.order(epoch)
        for i in range(start_batch, len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield to_unit_float(self.images[idx])

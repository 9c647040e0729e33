"""What every dataset builder hands over, and the train/val/test splits the rest of the tool sees.

Images are always ``uint8`` ``[N, C, H, W]``; labels ``int64`` ``[N]``, ``-1`` where a dataset has no classes.
Large decoded folders arrive as :class:`MappedImages` (rows of a memory-mapped array on disk), so carving the
validation split or a subset never reads the pixels; only what is kept in memory is materialized.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class DatasetInfo:
    """What other code needs to know about a dataset without touching its pixels."""

    name: str
    image_shape: tuple[int, int, int]  # (channels, height, width)
    class_names: tuple[str, ...] = ()  # label i is class_names[i]; empty = unlabelled (labels are -1)

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class MappedImages:
    """Selected rows of a uint8 ``[N, C, H, W]`` array that stays on disk (``np.memmap``).

    Indexing with a tensor of row numbers returns a new view (no pixels read); :meth:`read` returns a tensor.
    ``shape`` and ``device`` let it stand where a CPU tensor would in size checks.
    """

    def __init__(self, array: np.ndarray, rows: torch.Tensor | None = None) -> None:
        self.array = array
        self.rows = torch.arange(array.shape[0]) if rows is None else rows

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.array.shape[1:]))

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def select(self, idx: torch.Tensor) -> MappedImages:
        return MappedImages(self.array, self.rows[idx])

    def read(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """The pixels of rows ``idx`` (all rows if None) as a uint8 tensor, in that order."""
        rows = self.rows if idx is None else self.rows[idx]
        rows_np = rows.numpy()
        if len(rows_np) < 2 or bool(np.all(rows_np[1:] >= rows_np[:-1])):
            return torch.from_numpy(self.array[rows_np])  # already in file order: a single copy (CelebA: 2 GB)
        # Sorted reads walk the file forwards (page cache friendly); then put the rows back in the asked order.
        order = np.argsort(rows_np, kind="stable")
        out = np.empty((len(rows_np), *self.array.shape[1:]), dtype=np.uint8)
        out[order] = self.array[rows_np[order]]
        return torch.from_numpy(out)

    def __getitem__(self, key: slice) -> torch.Tensor:
        return self.read(torch.arange(len(self.rows))[key])


Images = torch.Tensor | MappedImages


def take(images: Images, idx: torch.Tensor) -> Images:
    """Rows ``idx`` of a tensor (a copy) or of mapped images (a view)."""
    if isinstance(images, MappedImages):
        return images.select(idx)
    return images.index_select(0, idx.to(images.device))  # several times faster than images[idx] on CPU


def materialize(images: Images) -> torch.Tensor:
    return images.read() if isinstance(images, MappedImages) else images


@dataclass
class RawSplits:
    """What a dataset builder returns: the official train and test splits, before the val split."""

    train: Images
    train_labels: torch.Tensor
    test: Images
    test_labels: torch.Tensor
    class_names: tuple[str, ...] = ()


@dataclass
class ImageSplits:
    """All splits of one dataset as uint8 image tensors ``[N, C, H, W]`` and int64 labels ``[N]``.

    ``train`` is a :class:`MappedImages` when the dataset is streamed (larger than dataset.memory_budget_mb).
    """

    name: str
    train: Images
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...] = field(default=())

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])  # type: ignore[return-value]

    @property
    def streamed(self) -> bool:
        return isinstance(self.train, MappedImages)

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(self.name, self.image_shape, self.class_names)


def splits_to(data: ImageSplits, device: torch.device) -> ImageSplits:
    """The same splits with every in-memory tensor moved to ``device`` (done once, before training).

    A streamed training split stays on disk; its batches are moved as they are read.
    """
    moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(data).items()}
    return ImageSplits(**moved)

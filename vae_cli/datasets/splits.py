"""What every dataset builder hands over, and the train/val/test splits the rest of the tool sees.

Images are always ``uint8`` ``[N, C, H, W]``; labels ``int64`` ``[N]``, ``-1`` where a dataset has no classes.
Large decoded folders arrive as :class:`MappedImages` (rows of a memory-mapped array on disk), so carving the
validation split or a subset never reads the pixels; only what is kept in memory is materialized.
"""

from __future__ import annotations

import errno
import os
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

    Rows are read with ``pread`` into a fresh buffer, not through the memory map: pages touched through a map count
    in the resident size of every process that touched them (each DataLoader worker), so a streamed epoch over a
    200k-image cache grew the workers' RSS by gigabytes. Read this way, only the batch being built is resident;
    the kernel's page cache (reclaimable, shared, outside every process) still keeps hot rows fast.
    """

    def __init__(self, array: np.ndarray, rows: torch.Tensor | None = None) -> None:
        self.array = array
        self.rows = torch.arange(array.shape[0]) if rows is None else rows
        self._fd: int | None = None
        self._fd_pid = -1  # the process that opened _fd: a forked worker opens its own

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
        rows = (self.rows if idx is None else self.rows[idx]).numpy()
        out = np.empty((len(rows), *self.array.shape[1:]), dtype=np.uint8)
        if len(rows) == 0:
            return torch.from_numpy(out)
        # Sorted reads walk the file forwards, and runs of consecutive rows become one read each.
        in_order = len(rows) < 2 or bool(np.all(rows[1:] >= rows[:-1]))
        order = None if in_order else np.argsort(rows, kind="stable")
        sorted_rows = rows if order is None else rows[order]
        buf = out if order is None else np.empty_like(out)
        fd = self._file()
        if fd is None:  # an in-memory array (tests) or an anonymous map: plain indexing
            buf[...] = self.array[sorted_rows]
        else:
            read_rows(fd, int(self.array.offset), int(np.prod(self.array.shape[1:])), sorted_rows, buf)
        if order is not None:
            out[order] = buf
        return torch.from_numpy(out)

    def _file(self) -> int | None:
        filename = getattr(self.array, "filename", None)
        if filename is None or not hasattr(os, "preadv"):
            return None
        if self._fd is None or self._fd_pid != os.getpid():
            self._fd, self._fd_pid = os.open(filename, os.O_RDONLY), os.getpid()
        return self._fd

    def __getstate__(self) -> dict:  # a spawned worker opens its own file
        return {**self.__dict__, "_fd": None, "_fd_pid": -1}

    def __del__(self) -> None:
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)

    def __getitem__(self, key: slice) -> torch.Tensor:
        return self.read(torch.arange(len(self.rows))[key])


def read_rows(fd: int, offset: int, row_bytes: int, sorted_rows: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` (C-contiguous, ``len(sorted_rows)`` rows) with those rows of the file, one ``preadv`` per run of
    consecutive rows."""
    view = memoryview(out.reshape(-1))
    breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
    for a, b in zip(np.concatenate(([0], breaks)), np.concatenate((breaks, [len(sorted_rows)])), strict=True):
        target = view[int(a) * row_bytes : int(b) * row_bytes]
        position = offset + int(sorted_rows[a]) * row_bytes
        while len(target):  # a single read returns at most ~2 GiB, or less near a signal
            n = os.preadv(fd, [target], position)
            if n == 0:
                raise OSError(errno.EIO, f"the file ends before byte {position}")
            target, position = target[n:], position + n


Images = torch.Tensor | MappedImages


def take(images: Images, idx: torch.Tensor) -> Images:
    """Rows ``idx`` of a tensor (a copy) or of mapped images (a view)."""
    if isinstance(images, MappedImages):
        return images.select(idx)
    return images.index_select(0, idx.to(images.device))  # several times faster than images[idx] on CPU


def materialize(images: Images) -> torch.Tensor:
    return images.read() if isinstance(images, MappedImages) else images


# The official splits a builder is asked to read ("train", "test"); what it is not asked for it returns empty.
Parts = frozenset[str]
BOTH: Parts = frozenset({"train", "test"})


def empty_images(shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """An empty split: ``uint8 [0, C, H, W]`` images and ``int64 [0]`` labels."""
    return torch.zeros((0, *shape), dtype=torch.uint8), torch.zeros(0, dtype=torch.long)


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

    @property
    def num_classes(self) -> int:
        """Classes of the labels (0: unlabelled): the named classes, or the largest label + 1."""
        if self.class_names:
            return len(self.class_names)
        largest = max((int(t.max()) for t in (self.train_labels, self.test_labels) if t.numel()), default=-1)
        return largest + 1


def splits_to(data: ImageSplits, device: torch.device) -> ImageSplits:
    """The same splits with every in-memory tensor moved to ``device`` (done once, before training).

    A streamed training split stays on disk; its batches are moved as they are read.
    """
    moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(data).items()}
    return ImageSplits(**moved)

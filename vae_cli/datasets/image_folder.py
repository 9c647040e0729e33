"""``dataset=image_folder``: any folder tree of PNG/JPEG/WebP/BMP images at ``dataset.root``.

Layouts (docs/datasets.md):
- ``root/<class>/*.png``: one sub-folder per class gives the labels;
- ``root/*.png`` (or images both at the top and in sub-folders): unlabelled (labels -1);
- ``root/train/...`` and ``root/test/...``: the official split, each with optional class sub-folders.
Without train/ and test/, a fixed ``dataset.test_fraction`` is held out as the test split with a constant seed,
so it is the same whatever the trainer seed. Hidden files and folders (the cache lives in one) are ignored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vae_cli.config.datasets import DatasetConfig
from vae_cli.config.enums import ResizeMode
from vae_cli.datasets.cache import cache_key, cached_decode
from vae_cli.datasets.decode import IMAGE_SUFFIXES, DecodeSpec, decode_files
from vae_cli.datasets.splits import BOTH, MappedImages, Parts, RawSplits
from vae_cli.process.errors import DataError

log = logging.getLogger(__name__)

TEST_SPLIT_SEED = 20_240_601  # constant: the held-out test images must not change with trainer.seed


def decode_spec(cfg: DatasetConfig, crop_size: int | None = None) -> DecodeSpec:
    return DecodeSpec(
        image_size=cfg.image_size,
        channels=cfg.channels,
        resize=ResizeMode(cfg.resize).value,
        crop_size=cfg.crop_size if cfg.crop_size is not None else crop_size,
        background=cfg.background,
        max_pixels=cfg.max_image_pixels,
    )


def cache_folder(cfg: DatasetConfig, root: Path) -> Path | None:
    if not cfg.cache:
        return None
    return Path(cfg.cache_dir).expanduser().resolve() if cfg.cache_dir else root / ".vae-cli-cache"


@dataclass
class FileTable:
    """Image files (paths relative to the root, '/'-separated) with their labels (-1 = none) and split
    (True = test), in a fixed order. Plain strings: pathlib costs tens of microseconds per call, which adds up
    to seconds for CelebA's 200k files on every start."""

    files: list[str]
    labels: np.ndarray
    is_test: np.ndarray
    class_names: tuple[str, ...]


def decode_table(cfg: DatasetConfig, root: Path, table: FileTable, spec: DecodeSpec) -> RawSplits:
    """Decode every file of ``table`` (through the cache) and split the rows that decoded into train/test."""
    n = len(table.files)
    shape = (n, spec.channels, spec.image_size, spec.image_size)
    in_memory = n * spec.channels * spec.image_size**2 <= cfg.memory_budget_mb * 2**20

    def decode(out: np.ndarray) -> np.ndarray:
        paths = [root / f for f in table.files]
        return decode_files(paths, spec, out, cfg.num_workers, cfg.skip_bad_files, root)

    key = cache_key(cfg.name, root, table.files, spec)
    images, ok = cached_decode(cache_folder(cfg, root), key, shape, decode, in_memory)
    if not ok.any():
        raise DataError(f"None of the {n} image files under {root} could be read; see the warnings above.")
    mapped = MappedImages(images)
    labels = torch.from_numpy(table.labels.astype(np.int64))
    train_idx = torch.from_numpy(np.flatnonzero(ok & ~table.is_test))
    test_idx = torch.from_numpy(np.flatnonzero(ok & table.is_test))
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise DataError(
            f"The images under {root} leave an empty {'training' if len(train_idx) == 0 else 'test'} split "
            f"({len(train_idx)} train / {len(test_idx)} test readable images). Add images (a VAE needs hundreds), "
            f"or change dataset.test_fraction."
        )
    return RawSplits(
        mapped.select(train_idx), labels[train_idx], mapped.select(test_idx), labels[test_idx], table.class_names
    )


def scan_images(root: Path) -> list[str]:
    """Every image file under ``root`` (recursively, skipping hidden entries), relative, '/'-separated, sorted.

    Links are followed, but every directory is entered once and every file counted once, by its (device, inode):
    a link back to a parent folder (a loop) is not walked again, and two names of one file (links) are one image,
    kept under the first name in sorted order.
    """
    found: list[tuple[str, tuple[int, int]]] = []
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    pending = [("", str(root))]
    while pending:
        prefix, folder = pending.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:  # a dangling link to a folder
            log.warning("skipping %s: %s", folder, exc.strerror or exc)
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            log.warning("skipping folder %s: %s", folder, exc.strerror or exc)
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:
                continue
            if is_dir:
                subfolders.append((prefix + entry.name + "/", entry.path))
            elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                try:
                    fst = entry.stat()
                except OSError as exc:
                    log.warning("skipping %s: %s", entry.path, exc.strerror or exc)  # a dangling link
                    continue
                found.append((prefix + entry.name, (fst.st_dev, fst.st_ino)))
        pending.extend(reversed(subfolders))
    unique = []
    for name, ident in sorted(found):
        if ident not in seen_files:
            seen_files.add(ident)
            unique.append(name)
    return unique


def _labels_from_subfolders(files: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Label = the first folder of each relative path; no labels if any file sits at the top."""
    if not files or any("/" not in f for f in files):
        return np.full(len(files), -1), ()
    tops = [f.split("/", 1)[0] for f in files]
    names = tuple(sorted(set(tops)))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[t] for t in tops]), names


def build_table(root: Path, test_fraction: float) -> FileTable:
    files = scan_images(root)
    if not files:
        others = [
            name
            for folder, dirs, names in os.walk(root)  # links not followed: this only lists a few names
            for name in names
            if not name.startswith(".")
            and not any(part.startswith(".") for part in Path(folder).relative_to(root).parts)
        ][:100]
        what = f"; it holds {len(others)} other files (e.g. {', '.join(others[:3])})" if others else " (it is empty)"
        raise DataError(
            f"dataset=image_folder found no images under {root}{what}. Supported files: "
            f"{', '.join(IMAGE_SUFFIXES)} (any case). Put your images there (optionally one sub-folder per class), "
            f"or point dataset.root at the folder that holds them."
        )
    tops = [f.split("/", 1)[0] if "/" in f else "" for f in files]
    if {t.lower() for t in tops} == {"train", "test"}:
        is_test = np.array([t.lower() == "test" for t in tops])
        # Class folders inside train/ and test/: one class list shared by both.
        labels, names = _labels_from_subfolders([f.split("/", 1)[1] for f in files])
        return FileTable(files, labels, is_test, names)
    labels, names = _labels_from_subfolders(files)
    perm = np.random.default_rng(TEST_SPLIT_SEED).permutation(len(files))
    n_test = max(1, round(test_fraction * len(files))) if len(files) > 1 else 0
    is_test = np.zeros(len(files), dtype=bool)
    is_test[perm[:n_test]] = True
    return FileTable(files, labels, is_test, names)


def load_image_folder(cfg: DatasetConfig, parts: Parts = BOTH) -> RawSplits:
    """Both splits come from one scan and one decoded cache, so ``parts`` changes nothing here."""
    root = Path(cfg.root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(
            f"dataset=image_folder needs dataset.root to be a folder of images, but {root} "
            f"{'is a file' if root.exists() else 'does not exist'}. Set dataset.root=/path/to/your/images "
            f"(relative paths start from the directory vae-train is run in)."
        )
    return decode_table(cfg, root, build_table(root, cfg.test_fraction), decode_spec(cfg))

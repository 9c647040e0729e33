"""``dataset=celeba``: CelebA aligned-and-cropped faces at 64x64, the standard VAE preprocessing.

Layout (torchvision's, docs/datasets.md): ``<root>/celeba/img_align_celeba/*.jpg`` (178x218),
``<root>/celeba/list_eval_partition.txt`` and, for labels, ``<root>/celeba/list_attr_celeba.txt``.
Each face is centre-cropped to 148x148 and resized to 64x64. The official partitions 0 (train) and 1 (valid)
form the training pool (dataset.val_size is carved from it like every dataset); partition 2 is the test split.
Decoding ~200k JPEGs takes minutes once; the uint8 result is cached (see ``cache.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vae_cli.config.datasets import DatasetConfig
from vae_cli.datasets.download import torchvision_download
from vae_cli.datasets.image_folder import FileTable, decode_spec, decode_table
from vae_cli.datasets.splits import BOTH, Parts, RawSplits
from vae_cli.process.errors import DataError

CELEBA_CROP = 148  # centre square of the 178x218 aligned faces that holds the face


def read_partition(path: Path) -> dict[str, int]:
    """``list_eval_partition.txt``: lines ``000001.jpg 0`` -> {file name: partition}."""
    out: dict[str, int] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(
                f"{path} line {n} reads {line!r}, not '<image>.jpg <0|1|2>'. The file is corrupt or not CelebA's "
                f"list_eval_partition.txt; download it again (docs/datasets.md)."
            )
        out[fields[0]] = int(fields[1])
    return out


def read_attribute(path: Path, attribute: str) -> dict[str, int]:
    """One column of ``list_attr_celeba.txt`` (count line, header line, then ``name v1 v2 ...`` with +-1)."""
    if not path.is_file():
        raise DataError(f"dataset.label_attribute needs {path}; copy CelebA's list_attr_celeba.txt there.")
    lines = path.read_text().splitlines()
    header = lines[1].split() if len(lines) > 1 else []
    if attribute not in header:
        raise DataError(
            f"dataset.label_attribute={attribute} is not a column of {path}; choose one of: {', '.join(header)}."
        )
    col = header.index(attribute) + 1
    out = {}
    for line in lines[2:]:
        fields = line.split()
        if len(fields) == len(header) + 1:
            out[fields[0]] = 1 if fields[col] == "1" else 0
    return out


def load_celeba(cfg: DatasetConfig, parts: Parts = BOTH) -> RawSplits:
    """Both splits come from one decoded table (cached), so ``parts`` changes nothing here."""
    root = Path(cfg.root).expanduser().resolve()
    base = root / "celeba"
    images_dir, partition_file = base / "img_align_celeba", base / "list_eval_partition.txt"
    if cfg.download and not (images_dir.is_dir() and partition_file.is_file()):
        torchvision_download("celeba", "CelebA", root, split="all", target_type=[])
    if not images_dir.is_dir() or not partition_file.is_file():
        missing = [str(p) for p in (images_dir, partition_file) if not p.exists()]
        raise DataError(
            f"CelebA was not found: {' and '.join(missing)} missing. Download img_align_celeba.zip and "
            f"list_eval_partition.txt (and list_attr_celeba.txt) from the CelebA page or its Google Drive by hand "
            f"(torchvision's download often fails on Drive quotas), unzip the images to {images_dir}/ and put the "
            f"text files in {base}/, or set dataset.root to the folder that holds celeba/ (docs/datasets.md)."
        )
    partition = read_partition(partition_file)
    present = set(os.listdir(images_dir))  # one listing instead of 200k stat calls
    names_listed = sorted(partition)
    absent = [n for n in names_listed if n not in present]
    if absent and not cfg.skip_bad_files:
        raise DataError(
            f"{len(absent)} of the {len(names_listed)} images listed in {partition_file} are missing from "
            f"{images_dir} (e.g. {absent[0]}): the unzip was incomplete. Unzip img_align_celeba.zip again, or set "
            f"dataset.skip_bad_files=true to train on the images that are there."
        )
    kept = [n for n in names_listed if n in present]
    if cfg.label_attribute:
        attr = read_attribute(base / "list_attr_celeba.txt", cfg.label_attribute)
        labels = np.array([attr.get(n, -1) for n in kept])
        classes: tuple[str, ...] = (f"not {cfg.label_attribute}", cfg.label_attribute)
    else:
        labels, classes = np.full(len(kept), -1), ()
    is_test = np.array([partition[n] == 2 for n in kept])
    files = [f"celeba/img_align_celeba/{n}" for n in kept]
    table = FileTable(files, labels, is_test, classes)
    return decode_table(cfg, root, table, decode_spec(cfg, crop_size=CELEBA_CROP))

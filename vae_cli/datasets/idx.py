"""The MNIST family (mnist, fashion_mnist, kmnist, emnist): IDX files read directly, gzipped or not.

IDX is a tiny format (magic, dimensions, raw big-endian data), so it is parsed here rather than through
torchvision: that gives one code path for files torchvision downloaded, files copied by hand and files an
operating system package installed, and an error that names the file and what is wrong with it (torchvision
only checks that the files exist). ``dataset.download=true`` still downloads through torchvision's classes.
"""

from __future__ import annotations

import gzip
import logging
import string
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from vae_cli.config.datasets import DATASETS, DatasetConfig
from vae_cli.datasets.download import torchvision_download
from vae_cli.datasets.splits import BOTH, Parts, RawSplits, empty_images
from vae_cli.process.atomic import atomic_write
from vae_cli.process.errors import DataError

log = logging.getLogger(__name__)

# Type codes of the IDX format: the third byte of the magic number.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_bytes(path: Path) -> np.ndarray:
    """The bytes of ``path`` (decompressed if ``.gz``) as a writable uint8 array that owns its memory."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return np.frombuffer(bytearray(f.read()), dtype=np.uint8)
        return np.fromfile(path, dtype=np.uint8)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"Could not read {path}: {exc}. The file is corrupt or truncated (an interrupted download?); delete it "
            f"and download it again (dataset.download=true where there is internet) or copy a good copy there."
        ) from exc


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (``.gz`` is decompressed on the fly); every defect is a DataError naming the file."""
    return parse_idx(read_bytes(path), path)


def parse_idx(blob: np.ndarray, path: Path) -> np.ndarray:
    """The array in the IDX bytes ``blob`` (uint8); ``path`` only names the file in errors."""
    head = blob[:4].tobytes()
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES or head[3] == 0:
        raise DataError(
            f"{path} is not an IDX file (its first bytes are {head.hex() or 'missing'}, not 0000xxnn). It was "
            f"probably saved as an HTML error page or another format; replace it with the original IDX file."
        )
    dtype, ndim = IDX_DTYPES[head[2]], head[3]
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DataError(f"{path} is truncated inside its header; delete it and download it again.")
    dims = struct.unpack(f">{ndim}I", blob[4:header].tobytes())
    expected = int(np.prod(dims)) * dtype.itemsize
    actual = len(blob) - header
    if actual != expected:
        raise DataError(
            f"{path} is truncated or corrupt: its header promises {'x'.join(map(str, dims))} values "
            f"({expected} bytes) but {actual} bytes follow. Delete it and download it again "
            f"(dataset.download=true), or copy a complete file there."
        )
    values = blob[header:].view(dtype).reshape(dims)
    return values if dtype.itemsize == 1 else values.astype(dtype.newbyteorder("="))


def stage_uncompressed(source: Path, raw_dir: Path, blob: np.ndarray) -> None:
    """Keep an uncompressed copy of a ``.gz`` IDX file in ``raw_dir`` (torchvision's layout), so later runs skip
    the decompression (the slowest part of loading MNIST). Written atomically; skipped if not writable."""
    target = raw_dir / source.name.removesuffix(".gz")
    try:
        with atomic_write(target, durable=False) as f:
            f.write(blob.tobytes())
    except OSError as exc:
        log.info("not keeping an uncompressed copy of %s (%s)", source, exc)


def read_idx_staged(path: Path, raw_dir: Path) -> np.ndarray:
    """``read_idx``; a ``.gz`` is validated, then also kept uncompressed in ``raw_dir`` for the next run."""
    blob = read_bytes(path)
    array = parse_idx(blob, path)
    if path.suffix == ".gz":
        stage_uncompressed(path, raw_dir, blob)
    return array


def emnist_classes(split: str) -> tuple[str, ...]:
    """torchvision's class list per EMNIST split (label i is entry i; 'letters' labels start at 1)."""
    merged = set("cijklmopsuvwxyz")
    everything = sorted(set(string.digits + string.ascii_letters))
    return {
        "byclass": tuple(everything),
        "bymerge": tuple(c for c in everything if c not in merged),
        "balanced": tuple(c for c in everything if c not in merged),
        "letters": ("N/A", *string.ascii_lowercase),
        "digits": tuple(string.digits),
        "mnist": tuple(string.digits),
    }[split]


def file_names(per_split: bool, split: str) -> dict[str, str]:
    """The four IDX file names (without .gz) of a dataset: keys train_images, train_labels, test_*; EMNIST's
    (``per_split``) name the split."""
    if per_split:
        return {
            f"{part}_{kind}": f"emnist-{split}-{part}-{kind}-{'idx3' if kind == 'images' else 'idx1'}-ubyte"
            for part in ("train", "test")
            for kind in ("images", "labels")
        }
    prefix = {"train": "train", "test": "t10k"}
    return {
        f"{part}_{kind}": f"{prefix[part]}-{kind}-{'idx3' if kind == 'images' else 'idx1'}-ubyte"
        for part in ("train", "test")
        for kind in ("images", "labels")
    }


def find_file(name: str, dirs: list[Path]) -> Path | None:
    """The first of ``name``, ``name.gz`` (and the dotted ``*.idx3-ubyte`` spelling) found in ``dirs``."""
    spellings = (name, name.replace("-idx", ".idx"))
    for folder in dirs:
        for spelling in spellings:
            plain, packed = folder / spelling, folder / f"{spelling}.gz"
            if plain.is_file() and not (packed.is_file() and packed.stat().st_mtime > plain.stat().st_mtime):
                return plain  # an uncompressed copy older than its .gz is stale (the .gz was replaced)
            if packed.is_file():
                return packed
    return None


def load_idx_dataset(cfg: DatasetConfig, parts: Parts = BOTH) -> RawSplits:
    """Read an IDX dataset (the MNIST family) from ``<root>/<folder>/raw/`` (or a known system location; its spec's
    ``reader``: ``folder``, the torchvision class of the same name, ``system_dirs``, ``how_to_get``, ``per_split``);
    only the files of the official splits in ``parts`` are needed."""
    spec = DATASETS[cfg.name]
    folder, per_split = spec.reader["folder"], bool(spec.reader.get("per_split"))
    how_to_get = spec.reader.get("how_to_get", "")
    split = getattr(cfg.split, "value", cfg.split)
    root = Path(cfg.root).expanduser().resolve()
    raw_dir = root / folder / "raw"
    names = {k: v for k, v in file_names(per_split, split).items() if k.split("_")[0] in parts}
    search = [raw_dir, raw_dir.parent, root, *(Path(d) for d in spec.reader.get("system_dirs", ()))]
    if cfg.download and any(find_file(n, search) is None for n in names.values()):
        kwargs = {"split": split} if per_split else {}
        torchvision_download(cfg.name, folder, root, **kwargs)
    found = {key: find_file(n, search) for key, n in names.items()}
    missing = [names[k] for k, p in found.items() if p is None]
    if missing:
        absent = {k for k, p in found.items() if p is None}
        only_training_missing = all(k.startswith("train") for k in absent) and any(
            p is not None for k, p in found.items() if k.startswith("test")
        )
        hint = (
            " Only the training files are missing: to train on the test split alone (a copy that holds only the "
            "test files), set dataset.train_split=test (the run then has no held-out test numbers)."
            if only_training_missing
            else ""
        )
        raise DataError(
            f"Dataset '{cfg.name}' was not found: the IDX files {', '.join(names.values())} (uncompressed or .gz) "
            f"are expected in {raw_dir}/ and {len(missing)} of them are missing ({', '.join(missing)}). To fix it, "
            f"{how_to_get}run once with dataset.download=true where there is internet, or copy the files "
            f"there yourself, or set dataset.root to the folder that holds {folder}/raw/ "
            f"(docs/datasets.md).{hint}"
        )
    arrays = {key: read_idx_staged(path, raw_dir) for key, path in found.items()}  # type: ignore[arg-type]
    class_names = emnist_classes(split) if per_split else spec.classes
    out = {part: empty_images((1, 28, 28)) for part in ("train", "test")}
    for part in sorted(parts):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        img_path, lbl_path = found[f"{part}_images"], found[f"{part}_labels"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(
                f"{img_path} holds {images.dtype} values of shape {images.shape}, not uint8 images [N, H, W]: it "
                f"is not an image file of this dataset (images and labels swapped?). Replace it with the right file."
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{lbl_path} holds {labels.shape} labels but {img_path} holds {images.shape[0]} images; the two "
                f"files do not belong together. Replace them with a matching pair."
            )
        if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise DataError(
                f"{lbl_path} has labels from {labels.min()} to {labels.max()}, but '{cfg.name}' has "
                f"{len(class_names)} classes; it belongs to another dataset or split (dataset.split?)."
            )
        tensor = torch.from_numpy(images).unsqueeze(1)  # read_idx returns arrays that own writable memory
        if per_split:
            # EMNIST's IDX files store each image transposed; turn them upright like MNIST.
            tensor = tensor.transpose(2, 3)
        out[part] = (tensor.contiguous(), torch.from_numpy(labels.astype(np.int64)))
    return RawSplits(out["train"][0], out["train"][1], out["test"][0], out["test"][1], class_names)

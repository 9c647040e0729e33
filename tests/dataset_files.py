"""Writers of small files in each dataset's real on-disk format, for tests (written independently of the readers).

- IDX (MNIST family): big-endian magic 0x0000<type><ndim>, dims, raw data; optionally gzipped.
- CIFAR-10 python batches: pickles (protocol 2, like the originals) of {data: uint8 [N, 3072], labels: [N]}, and
  batches.meta with label_names.
- SVHN: MATLAB level-5 .mat files with X uint8 [32, 32, 3, N] and y double [N, 1] (digit 0 labelled 10),
  compressed (miCOMPRESSED, like the originals) or not.
- CelebA: img_align_celeba/*.jpg (178x218), list_eval_partition.txt, list_attr_celeba.txt.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i4"): 0x0C}
    array = np.asarray(array)
    if array.dtype not in codes:
        array = array.astype(">i4")
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(blob))
    else:
        path.write_bytes(blob)
    return path


def pattern_images(n: int, h: int = 28, w: int = 28, c: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 images [n, h, w] (c=1) or [n, h, w, c] of 10 learnable classes (a bright square whose place is
    the class), with labels 0-9."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 40, (n, h, w, c), dtype=np.uint8)
    for i, y in enumerate(labels):
        r, q = divmod(int(y), 5)
        top, left = r * h // 2, q * w // 5
        images[i, top : top + h // 2, left : left + max(1, w // 5)] = 230
    return (images[..., 0] if c == 1 else images), labels


def write_mnist_like(raw: Path, n_train: int = 300, n_test: int = 100, prefix: str = "", gz: bool = True) -> None:
    """train-*/t10k-* IDX files (or emnist-<split>-train/test-* with ``prefix``) of pattern images."""
    for part, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = pattern_images(n, seed=seed)
        stem = f"{prefix}{part}" if prefix else ("train" if part == "train" else "t10k")
        write_idx(raw / f"{stem}-images-idx3-ubyte", images, gz)
        write_idx(raw / f"{stem}-labels-idx1-ubyte", labels.astype(np.uint8), gz)


def arrange_shared_mnist(root: Path) -> Path:
    """A root holding the real MNIST test split in torchvision's layout; it stands in for the train split too
    (only t10k is shipped in ../shared)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for kind in ("images-idx3", "labels-idx1"):
        shutil.copy(SHARED_MNIST / f"t10k-{kind}-ubyte.gz", raw / f"t10k-{kind}-ubyte.gz")
        shutil.copy(SHARED_MNIST / f"t10k-{kind}-ubyte.gz", raw / f"train-{kind}-ubyte.gz")
    return root


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path, per_batch: int = 60, n_test: int = 100) -> Path:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        images, labels = pattern_images(n, 32, 32, 3, seed=k)
        entry = {
            "batch_label": f"batch {k}",
            "labels": [int(y) for y in labels],
            "data": np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(n, 3072),  # channel planes
            "filenames": [f"img_{k}_{i}.png" for i in range(n)],
        }
        with open(base / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}, f, protocol=2)
    return base


def _mat_element(mi_type: int, data: bytes) -> bytes:
    return struct.pack("<II", mi_type, len(data)) + data + b"\0" * (-len(data) % 8)


def _mat_matrix(name: str, array: np.ndarray, stored_as_uint8: bool = False) -> bytes:
    classes = {np.dtype(np.uint8): (9, 2), np.dtype(np.float64): (6, 9)}  # mxCLASS, miTYPE
    mx_class, mi_type = classes[array.dtype]
    body = _mat_element(6, struct.pack("<II", mx_class, 0))  # array flags (miUINT32)
    body += _mat_element(5, struct.pack(f"<{array.ndim}i", *array.shape))  # dimensions (miINT32)
    body += _mat_element(1, name.encode())  # name (miINT8)
    if stored_as_uint8:  # MATLAB stores small whole numbers of a double array as miUINT8 to save space
        mi_type, array = 2, array.astype(np.uint8)
    body += _mat_element(mi_type, array.astype(array.dtype.newbyteorder("<")).tobytes(order="F"))  # column-major
    return _mat_element(14, body)  # miMATRIX


def write_mat(path: Path, arrays: dict[str, np.ndarray], compress: bool = True, small_storage: bool = False) -> Path:
    text = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: test writer"
    out = text.ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    for name, array in arrays.items():
        element = _mat_matrix(name, array, small_storage and array.dtype == np.float64)
        if compress:
            packed = zlib.compress(element)
            out += struct.pack("<II", 15, len(packed)) + packed  # miCOMPRESSED (not padded)
        else:
            out += element
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out)
    return path


def write_svhn(root: Path, n_train: int = 300, n_test: int = 100, compress: bool = True) -> Path:
    base = root / "SVHN"
    for name, n, seed in (("train_32x32.mat", n_train, 0), ("test_32x32.mat", n_test, 1)):
        images, labels = pattern_images(n, 32, 32, 3, seed=seed)
        y = np.where(labels == 0, 10, labels).astype(np.float64).reshape(n, 1)
        write_mat(base / name, {"X": np.ascontiguousarray(images.transpose(1, 2, 3, 0)), "y": y}, compress)
    return base


CELEBA_ATTRS = ["5_o_Clock_Shadow", "Smiling", "Young"]


def write_celeba(root: Path, n: int = 40, partitions: tuple[int, ...] = (0, 0, 0, 0, 0, 0, 1, 2)) -> Path:
    """n 178x218 JPEG 'faces' (a bright disc on a dark field, so the centre crop matters) and the text files."""
    base = root / "celeba"
    images = base / "img_align_celeba"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    part_lines, attr_lines = [], [str(n), " ".join(CELEBA_ATTRS)]
    yy, xx = np.mgrid[0:218, 0:178]
    for i in range(1, n + 1):
        name = f"{i:06d}.jpg"
        pixels = rng.integers(0, 30, (218, 178, 3), dtype=np.uint8)
        pixels[(yy - 109) ** 2 + (xx - 89) ** 2 < 50**2] = (220, 180, 150)
        Image.fromarray(pixels).save(images / name, quality=90)
        part_lines.append(f"{name} {partitions[i % len(partitions)]}")
        attr_lines.append(name + " " + " ".join(rng.choice(["-1", "1"], len(CELEBA_ATTRS))))
    (base / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")
    (base / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    return base

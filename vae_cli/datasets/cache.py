"""The decoded-image cache: a folder of image files decoded once into a uint8 ``.npy`` array on disk.

The key hashes the file list with each file's size and modification time, plus every setting that changes the
decoded pixels (``DecodeSpec``), so editing, adding or removing one image, or asking for another size, makes a
new entry instead of serving stale pixels. Entries are written into a temporary folder and renamed into place,
so a run killed mid-decode never leaves a half-written entry, and two runs decoding at once both end up reading
one complete entry. The array is opened memory-mapped: reading it is as fast as the disk, and a dataset larger
than the memory budget can be streamed from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vae_cli.datasets.decode import DecodeSpec
from vae_cli.process.atomic import dir_mode
from vae_cli.process.errors import DataError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the decoding code changes what pixels it produces


def cache_key(name: str, root: Path, files: Sequence[str], spec: DecodeSpec) -> str:
    """Hash of the decoding settings and of every file's relative path, size and modification time."""
    h = hashlib.sha256()
    # max_pixels only refuses files; it changes no pixel, so it is not part of the key.
    pixels = {k: v for k, v in dataclasses.asdict(spec).items() if k != "max_pixels"}
    h.update(json.dumps({"format": CACHE_FORMAT, "name": name, "spec": pixels}).encode())
    top = str(root)
    for f in files:
        st = os.stat(os.path.join(top, f))
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"{name}-{h.hexdigest()[:24]}"


Decoder = Callable[[np.ndarray], np.ndarray]  # fills the given [N, C, H, W] array; returns the ok-mask [N]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return os.access(folder, os.W_OK)
    except OSError:
        return False


def cached_decode(
    cache_dir: Path | None, key: str, shape: tuple[int, int, int, int], decode: Decoder, in_memory: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The decoded images ``[N, C, H, W]`` (memory-mapped from the cache) and the mask of files that decoded.

    With no usable ``cache_dir`` the images are decoded every run, into memory (``in_memory``) or into an
    anonymous temporary file that is mapped like a cache entry.
    """
    entry = cache_dir / key if cache_dir is not None else None
    if entry is not None and entry.exists():
        try:
            hit = _read_entry(entry, key, shape)
            log.info("decoded images from the cache %s", entry)
            return hit
        except (OSError, ValueError, EOFError, KeyError, json.JSONDecodeError) as exc:
            log.warning("the cache entry %s is damaged (%s): discarding it and decoding the images again", entry, exc)
            _discard(entry)
    if entry is None or not _writable(cache_dir):  # type: ignore[arg-type]
        if entry is not None:
            log.warning("cache folder %s is not writable: decoding without a cache (set dataset.cache_dir)", cache_dir)
        return _decode_uncached(shape, decode, in_memory)
    try:
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{key}.tmp-"))
        os.chmod(tmp, dir_mode())  # mkdtemp makes it 0700; the entry should be shared as the user's umask says
    except OSError as exc:  # e.g. a read-only file system, which os.access does not see for root
        log.warning("cannot write in the cache folder %s (%s): decoding without a cache", cache_dir, exc)
        return _decode_uncached(shape, decode, in_memory)

    started = time.perf_counter()
    try:
        images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=shape)
        _reserve(tmp / "images.npy")
        ok = decode(images)
        images.flush()
        del images
        np.save(tmp / "ok.npy", ok)
        (tmp / "meta.json").write_text(json.dumps({"key": key, "shape": shape, "decoded": int(ok.sum())}) + "\n")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        # An OSError here means another run finished the same entry first; both hold the same pixels.
        with contextlib.suppress(OSError):
            os.rename(tmp, entry)  # type: ignore[arg-type]
    except OSError as exc:
        raise DataError(
            f"Could not write the decoded images ({np.prod(shape) / 2**20:.0f} MiB) into the cache folder "
            f"{cache_dir}: {exc}. Free some space there, move the cache with dataset.cache_dir=/a/bigger/disk, or "
            f"turn it off with dataset.cache=false."
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("decoded %d images into the cache %s in %.1f s", shape[0], entry, time.perf_counter() - started)
    return np.load(entry / "images.npy", mmap_mode="r"), np.load(entry / "ok.npy")


def _read_entry(entry: Path, key: str, shape: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A complete, matching entry's arrays; any truncation, bad header or mismatch raises (never unpickled:
    ``np.load`` refuses object arrays)."""
    meta = json.loads((entry / "meta.json").read_text())
    if meta.get("key") != key or tuple(meta.get("shape", ())) != tuple(shape):
        raise ValueError(f"meta.json describes {meta.get('key')} {meta.get('shape')}, not {key} {list(shape)}")
    images = np.load(entry / "images.npy", mmap_mode="r", allow_pickle=False)
    ok = np.load(entry / "ok.npy", allow_pickle=False)
    if images.shape != tuple(shape) or images.dtype != np.uint8:
        raise ValueError(f"images.npy holds {images.dtype} {images.shape}, not uint8 {tuple(shape)}")
    if ok.shape != (shape[0],) or ok.dtype != np.bool_:
        raise ValueError(f"ok.npy holds {ok.dtype} {ok.shape}, not bool ({shape[0]},)")
    return images, ok


def _discard(entry: Path) -> None:
    """Move a damaged entry out of the way at once (a rename), then delete it; another run may be reading the
    name."""
    doomed = entry.with_name(f".{entry.name}.damaged-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(entry, doomed)
    except OSError:
        doomed = entry
    shutil.rmtree(doomed, ignore_errors=True)


def _reserve(path: Path) -> None:
    """Allocate the whole file now: a full disk then fails here with ENOSPC, instead of killing the process with
    SIGBUS when a page of the memory map is first written."""
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise


def _decode_uncached(
    shape: tuple[int, int, int, int], decode: Decoder, in_memory: bool
) -> tuple[np.ndarray, np.ndarray]:
    if in_memory:
        images = np.empty(shape, dtype=np.uint8)
    else:
        # The map must outlive this function (it is the training data); the file vanishes when it is closed.
        backing = tempfile.TemporaryFile()  # noqa: SIM115
        images = np.memmap(backing, dtype=np.uint8, mode="w+", shape=shape)
    return images, decode(images)

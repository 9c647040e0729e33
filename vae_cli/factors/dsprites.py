"""``dataset=dsprites``: the official dSprites file, ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``.

Read from ``<root>/dsprites/`` or ``<root>/`` (``dataset.download=true`` fetches it from DeepMind's repository
into ``<root>/dsprites/``). The file holds ``imgs`` (737,280 binary 64x64 images, in the row-major order of the
factor grid) and ``latents_classes`` (each image's factor values). Its first factor, colour, has one value and is
dropped, as disentanglement_lib does: shape, scale, orientation, x, y.
"""

from __future__ import annotations

import logging
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from vae_cli.factors.ground_truth import ImageGrid
from vae_cli.process.errors import DataError

log = logging.getLogger(__name__)

FILENAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
URL = f"https://github.com/google-deepmind/dsprites-dataset/raw/master/{FILENAME}"
NAMES = ("color", "shape", "scale", "orientation", "x", "y")


def find_file(root: Path) -> Path | None:
    for candidate in (root / "dsprites" / FILENAME, root / FILENAME):
        if candidate.is_file():
            return candidate
    return None


def download(root: Path, url: str = URL) -> Path:
    """Fetch the file into ``<root>/dsprites/`` (through a temporary name, so an interrupted download leaves no
    truncated file under the real name)."""
    target = root / "dsprites" / FILENAME
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    log.info("downloading dSprites (26 MB) from %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"Downloading dSprites from {url} failed ({exc}). Check the internet connection, or download {FILENAME} "
            f"by hand into {target.parent} and run with dataset.download=false."
        ) from exc
    partial.replace(target)
    return target


def load_dsprites(root: Path, allow_download: bool) -> ImageGrid:
    path = find_file(root)
    if path is None:
        if not allow_download:
            raise DataError(
                f"dSprites is not under {root}: expected {root / 'dsprites' / FILENAME}. Run with "
                f"dataset.download=true to fetch it (26 MB), put the file there by hand, or point dataset.root at "
                f"the folder that holds it."
            )
        path = download(root)
    bad = (
        f"{path} is not a readable dSprites file ({{why}}); a truncated or interrupted download looks like this. "
        f"Delete it and run again with dataset.download=true, or fetch it again from {URL}."
    )
    try:
        with np.load(path, allow_pickle=False) as npz:  # the official file's metadata entry is a pickle: skipped
            if "imgs" not in npz.files or "latents_classes" not in npz.files:
                raise DataError(
                    bad.format(why=f"it holds {', '.join(npz.files) or 'nothing'}, not imgs and latents_classes")
                )
            images = npz["imgs"]
            classes = npz["latents_classes"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(bad.format(why=f"{type(exc).__name__}: {exc}")) from exc
    if images.ndim != 3 or classes.ndim != 2 or classes.shape[0] != images.shape[0] or classes.shape[1] != len(NAMES):
        raise DataError(bad.format(why=f"imgs {images.shape} and latents_classes {classes.shape} do not match"))
    sizes = classes.max(axis=0) + 1
    grid = ImageGrid(images[:, None], NAMES, sizes) if int(np.prod(sizes)) == images.shape[0] else None
    if grid is None or not np.array_equal(grid.index_of(classes), np.arange(images.shape[0])):
        raise DataError(bad.format(why="its images are not the full factor grid in order"))
    keep = [k for k, size in enumerate(sizes) if size > 1]  # the constant colour factor says nothing
    images = images[:, None]
    images = images.astype(np.uint8, copy=False)
    if images.max() <= 1:  # the official file stores 0/1; in place: the array is 2.9 GB
        np.multiply(images, np.uint8(255), out=images)
    return ImageGrid(images, [NAMES[k] for k in keep], [int(sizes[k]) for k in keep])


def from_config(cfg: Any) -> ImageGrid:
    """The ground truth of ``dataset=dsprites`` (the dataset catalog's ``ground_truth``): the official file under
    ``dataset.root``, fetched first with ``dataset.download=true``."""
    return load_dsprites(Path(cfg.root).expanduser(), bool(cfg.download))

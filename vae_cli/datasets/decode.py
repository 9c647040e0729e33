"""Image files -> uint8 ``[C, H, W]`` arrays of one fixed shape, whatever their mode or size.

Every PIL mode is brought to L or RGB explicitly, because ``Image.convert`` alone gets some wrong: 16-bit
greyscale (``I;16``, ``I``) would be clipped to white instead of scaled, and transparent pixels (RGBA, LA, P with
a transparent colour) would keep whatever colour they happen to hold. Sizes are unified by ``dataset.resize``.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from vae_cli.config.enums import ResizeMode
from vae_cli.process.errors import DataError
from vae_cli.process.signals import STOP

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class DecodeSpec:
    """Everything that decides the decoded pixels (and so is part of the cache key)."""

    image_size: int
    channels: int  # 1 (L) or 3 (RGB)
    resize: str = ResizeMode.center_crop.value
    crop_size: int | None = None  # centre square cropped before resizing
    background: int = 255  # grey level under transparent pixels and in the padding
    max_pixels: int = 89_478_485  # larger images are refused (PIL's decompression-bomb limit, dataset.max_image_pixels)


def _to_8bit(img: Image.Image) -> Image.Image:
    """Integer and float modes scaled (not clipped) to 8-bit grey."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) > 255):
        arr = arr.astype(np.float64) / 257.0  # 0..65535 -> 0..255
    elif img.mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
        arr = arr * 255.0  # float images in [0, 1]
    return Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8), mode="L")


def normalize_mode(img: Image.Image, channels: int, background: int) -> Image.Image:
    """Any PIL mode -> 'L' (channels=1) or 'RGB' (channels=3), compositing transparency onto ``background``."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    if img.mode == "P" or (img.mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (background, background, background, 255))
        img = Image.alpha_composite(base, rgba)
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)  # CMYK, YCbCr, 1, LAB, HSV, ...


def fit_size(img: Image.Image, spec: DecodeSpec) -> Image.Image:
    """Crop/resize to ``image_size`` x ``image_size`` as ``spec.resize`` says."""
    s = spec.image_size
    if spec.crop_size is not None:
        w, h = img.size
        c = min(spec.crop_size, w, h)
        left, top = (w - c) // 2, (h - c) // 2
        img = img.crop((left, top, left + c, top + c))
    if img.size == (s, s):
        return img
    mode = ResizeMode(spec.resize)
    if mode == ResizeMode.stretch:
        return img.resize((s, s), Image.Resampling.BICUBIC, reducing_gap=3.0)
    if mode == ResizeMode.pad:
        fill = spec.background if img.mode == "L" else (spec.background,) * 3
        return ImageOps.pad(img, (s, s), Image.Resampling.BICUBIC, color=fill)
    # center_crop: the largest centred square, resized in one step (resize's box= crops while resampling).
    w, h = img.size
    c = min(w, h)
    box = ((w - c) / 2, (h - c) / 2, (w + c) / 2, (h + c) / 2)
    return img.resize((s, s), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)


def _draft_size(size: tuple[int, int], spec: DecodeSpec) -> tuple[int, int]:
    """The size to ask ``Image.draft`` for: a JPEG decoded at 1/8, 1/4 or 1/2 scale when that still leaves every
    pixel the resize uses, and only when the scale divides both sides (libjpeg rounds sizes up, which would stretch
    the picture by up to a few percent); otherwise the full size."""
    w, h, s = size[0], size[1], spec.image_size
    if ResizeMode(spec.resize) == ResizeMode.stretch and spec.crop_size is None:
        need = (s, s)
    else:
        if spec.crop_size is not None:
            scale = s / min(spec.crop_size, w, h)
        elif ResizeMode(spec.resize) == ResizeMode.pad:
            scale = s / max(w, h)
        else:
            scale = s / min(w, h)
        need = (math.ceil(w * scale), math.ceil(h * scale))
    for k in (8, 4, 2):
        if w % k == 0 and h % k == 0 and w // k >= need[0] and h // k >= need[1]:
            return (w // k, h // k)
    return (w, h)


class ImageTooLarge(ValueError):
    """An image over ``dataset.max_image_pixels`` (the decompression-bomb guard)."""


_RAISE_LIMIT = (
    ", more than dataset.max_image_pixels={} allows (a guard against decompression bombs); if the image is genuine, "
    "raise dataset.max_image_pixels"
)


def decode_image(path: Path, spec: DecodeSpec) -> np.ndarray:
    """One file -> uint8 ``[C, H, W]``. Raises OSError/ValueError for unreadable files (caller names them)."""
    with warnings.catch_warnings():
        # A huge image gets its own clear message below, not PIL's warning (PIL checks its limit while opening).
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ImageTooLarge(f"{exc}".split(",")[0] + _RAISE_LIMIT.format(spec.max_pixels)) from None
        with img:
            w, h = img.size
            if w * h > spec.max_pixels:
                raise ImageTooLarge(f"{w}x{h} = {w * h / 1e6:.0f} Mpixels" + _RAISE_LIMIT.format(spec.max_pixels))
            full_width = img.size[0]
            if img.format == "JPEG":
                # Let libjpeg decode at a reduced scale (1/2, 1/4, 1/8) that still leaves enough pixels.
                img.draft("RGB" if spec.channels == 3 else "L", _draft_size(img.size, spec))
            img.load()
            if spec.crop_size is not None and img.size[0] != full_width:
                # The crop is given in full-resolution pixels; draft decoding shrank the image.
                spec = replace(spec, crop_size=max(1, round(spec.crop_size * img.size[0] / full_width)))
            img = ImageOps.exif_transpose(img)  # phone photos store their rotation in EXIF
            img = fit_size(normalize_mode(img, spec.channels, spec.background), spec)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def decode_files(
    paths: Sequence[Path], spec: DecodeSpec, out: np.ndarray, workers: int, skip_bad: bool, root: Path
) -> np.ndarray:
    """Decode ``paths`` into rows of ``out`` (uint8 ``[N, C, H, W]``, may be a memmap) with a thread pool.

    PIL releases the GIL while decoding and resizing, so threads use every core without pickling pixels between
    processes. Returns a boolean mask of the rows that decoded; bad files stop the run unless ``skip_bad``.
    """
    ok = np.ones(len(paths), dtype=bool)
    errors: list[tuple[Path, str]] = []

    stopping = threading.Event()
    # PIL's own decompression-bomb check (at open) uses this limit: warn above it, refuse at twice it.
    Image.MAX_IMAGE_PIXELS = spec.max_pixels

    def work(i: int) -> None:
        if stopping.is_set():
            return
        try:
            out[i] = decode_image(paths[i], spec)
        except ImageTooLarge as e:
            ok[i] = False
            errors.append((paths[i], str(e)))
        except Exception as e:  # PIL raises many types on broken files (OSError, SyntaxError, struct.error, ...)
            ok[i] = False
            errors.append((paths[i], f"{type(e).__name__}: {e}"))

    def work_range(start: int, stop: int) -> None:
        for i in range(start, stop):
            if stopping.is_set():
                return
            work(i)

    # A stop signal must not raise inside the pool's locks (polled(): it is only recorded while the files decode,
    # and this thread stops at its next poll, a tenth of a second later at most); the queued files are skipped.
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    with STOP.polled():
        try:
            futures = [pool.submit(work_range, s, min(s + 64, len(paths))) for s in range(0, len(paths), 64)]
            pending = set(futures)
            while pending and STOP.received is None:
                _, pending = wait(pending, timeout=0.1)
        finally:
            stopping.set()
            pool.shutdown(wait=True, cancel_futures=True)
    for future in futures:
        future.result()  # an error outside decode_image's own handling (MemoryError, say) is not swallowed
    if errors and not skip_bad:
        errors.sort()
        listed = "; ".join(f"{p} ({why})" for p, why in errors[:5])
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        too_large = any("max_image_pixels" in why for _, why in errors)
        raise DataError(
            f"{len(errors)} image file(s) under {root} could not be read: {listed}{more}. "
            + (
                "Raise dataset.max_image_pixels for genuine large images, or "
                if too_large
                else "They are truncated, corrupt or not images. Delete or replace them, or "
            )
            + "set dataset.skip_bad_files=true to train without them."
        )
    for p, why in errors:
        log.warning("skipping unreadable image %s (%s)", p, why)
    return ok

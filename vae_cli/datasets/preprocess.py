"""Pixel preprocessing: uint8 -> float in [0, 1], binarization, dequantization noise, horizontal flips.

Static choices (a threshold, one fixed Bernoulli sample) are applied once to the uint8 data, so they cost nothing
per batch. Per-batch randomness (dynamic binarization, dequantization, flips) draws from a generator seeded by
``(seed, epoch, batch)``: a run resumed mid-epoch sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

from vae_cli.config.datasets import DatasetConfig
from vae_cli.config.enums import Binarize


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from several integers; distinct tuples give unrelated seeds (unlike ``a * K + b``)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def to_unit_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]; one kernel (uint8 / float promotes), bit-identical to float(x) / 255."""
    return torch.div(batch, 255.0)


# Seed domains, so the fixed eval sample and the per-batch draws never share a stream.
FIXED_SAMPLE_DOMAIN = 1
BATCH_DOMAIN = 2


def bernoulli_uint8(images: torch.Tensor, seed: int, chunk: int = 8192) -> torch.Tensor:
    """One Bernoulli sample per pixel (p = grey level / 255), as uint8 0/255, reproducible for ``seed``."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    out = torch.empty_like(images)
    for start in range(0, images.shape[0], chunk):  # in chunks: bounded temporary memory for large datasets
        part = images[start : start + chunk].cpu()
        r = torch.randint(0, 255, part.shape, generator=g, dtype=torch.uint8)  # P(r < pixel) = pixel / 255
        out[start : start + chunk] = (r < part).to(torch.uint8).mul_(255).to(out.device)
    return out


def threshold_uint8(images: torch.Tensor, threshold: float) -> torch.Tensor:
    """Pixels whose grey level x/255 is above ``threshold`` -> 255, others 0; compared in uint8 (no float copy:
    for an integer x, x > 255 t exactly when x > floor(255 t))."""
    return (images > math.floor(threshold * 255)).to(torch.uint8).mul_(255)


def binarize_static(images: torch.Tensor, cfg: DatasetConfig, seed: int, for_training: bool) -> torch.Tensor:
    """Apply the static part of dataset.binarize to a uint8 split; returns 0/255 pixels, or the input unchanged.

    Dynamic binarization resamples training pixels every epoch (in :class:`BatchPreprocess`), but evaluation must
    be comparable between epochs and runs, so val/test then get one fixed seeded sample.
    """
    mode = Binarize(cfg.binarize)
    if mode == Binarize.static_threshold:
        return threshold_uint8(images, cfg.threshold)
    if mode == Binarize.static_sample or (mode == Binarize.dynamic and not for_training):
        return bernoulli_uint8(images, seed)
    return images


@dataclass(frozen=True)
class BatchPreprocess:
    """The per-batch random part of preprocessing, applied to uint8 training batches on the device."""

    seed: int = 0
    dynamic_binarize: bool = False
    dequantize: bool = False
    hflip: bool = False
    # Set only for streamed data, which is not binarized in memory beforehand: a static threshold per batch.
    threshold: float | None = None

    @classmethod
    def from_config(cls, cfg: DatasetConfig, seed: int, streamed: bool = False) -> BatchPreprocess:
        mode = Binarize(cfg.binarize)
        threshold = cfg.threshold if streamed and mode == Binarize.static_threshold else None
        return cls(seed, mode == Binarize.dynamic, bool(cfg.dequantize), bool(cfg.hflip), threshold)

    @property
    def is_identity(self) -> bool:
        return not (self.dynamic_binarize or self.dequantize or self.hflip)

    def __call__(self, batch: torch.Tensor, epoch: int, batch_index: int) -> torch.Tensor:
        """uint8 batch -> float batch in [0, 1]; flips and binarization work on the uint8 pixels (cheaper)."""
        if self.is_identity and self.threshold is None:
            return to_unit_float(batch)
        if self.threshold is not None:
            batch = threshold_uint8(batch, self.threshold)
        if self.is_identity:
            return to_unit_float(batch)
        device = batch.device
        g = torch.Generator(device=device).manual_seed(mix_seed(BATCH_DOMAIN, self.seed, epoch, batch_index))
        if self.hflip:
            flip = torch.rand(batch.shape[0], generator=g, device=device) < 0.5
            batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)
        if self.dynamic_binarize:
            # r uniform on {0, ..., 254}: P(r < pixel) = pixel / 255 exactly, with no float random numbers.
            r = torch.randint(0, 255, batch.shape, generator=g, device=device, dtype=torch.uint8)
            return (r < batch).to(torch.float32)
        x = to_unit_float(batch)
        if self.dequantize:
            # One grey level of uniform noise centred on the pixel, so the mean stays at the evaluated value x/255.
            noise = torch.rand(x.shape, generator=g, device=device).sub_(0.5).div_(255.0)
            x = x.add_(noise).clamp_(0.0, 1.0)
        return x

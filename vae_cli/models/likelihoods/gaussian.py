"""``likelihood=gaussian``: p(x|z) = prod N(x; mean, σ²) with σ fixed, learned globally, or per pixel."""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vae_cli.models.likelihoods.base import Likelihood, Measures


class GaussianStd(str, Enum):
    learned = "learned"  # per pixel: the decoder outputs a σ for every pixel, next to the mean
    learned_global = "learned_global"  # one σ for every pixel and image, a parameter of the model


class GaussianLikelihood(Likelihood):
    """p(x|z) = prod N(x; mean, σ²) in pixel units, with σ fixed, learned globally, or output by the decoder per pixel.

    A learned σ is ``min_std + softplus(raw)``: bounded below, so it cannot collapse to 0 (a density spike on one
    grey level, a loss going to -inf and then NaN); pair it with ``dataset.dequantize=true``.
    """

    measures = Measures.density

    def __init__(self, std: float | GaussianStd, min_std: float = 1e-3, init_std: float = 0.1) -> None:
        super().__init__()
        self.min_std = float(min_std)
        self.kind = std if isinstance(std, GaussianStd) else None
        self.fixed_std = None if self.kind is not None else float(std)
        # softplus(raw) = init_std - min_std at the start.
        raw = math.log(math.expm1(max(init_std - self.min_std, 1e-6)))
        self.raw_offset = raw
        if self.kind == GaussianStd.learned_global:
            self.raw_std = nn.Parameter(torch.tensor(raw))

    def param_channels(self, channels: int) -> int:
        return 2 * channels if self.kind == GaussianStd.learned else channels

    def mean_and_std(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        params = params.float()
        if self.kind == GaussianStd.learned:
            mean, raw = params.chunk(2, dim=1)
            # The offset makes a decoder output of 0 mean σ = init_std.
            return mean, self.min_std + F.softplus(raw + self.raw_offset)
        if self.kind == GaussianStd.learned_global:
            return params, self.min_std + F.softplus(self.raw_std.float())
        assert self.fixed_std is not None
        return params, self.fixed_std

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean_and_std(params)
        std_t = torch.as_tensor(std, device=mean.device, dtype=mean.dtype)
        sq = ((x.float() - mean) / std_t).pow(2)
        log_norm = torch.log(std_t) + 0.5 * math.log(2 * math.pi)
        return -(0.5 * sq + log_norm).flatten(1).sum(dim=1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return self.mean_and_std(params)[0].clamp(0, 1)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, std = self.mean_and_std(params)
        device = generator.device if generator is not None else mean.device
        noise = torch.randn(mean.shape, generator=generator, device=device).to(mean.device)
        return (mean + std * noise).clamp(0, 1)


def parse_gaussian_std(value: str) -> float | GaussianStd:
    """``likelihood.std``: a number (fixed σ), ``learned`` or ``learned_global``. Raises ValueError otherwise."""
    text = str(value).strip()
    if text in GaussianStd.__members__:
        return GaussianStd(text)
    return float(text)


def build(cfg: Any, binarized: bool = False) -> Likelihood:
    return GaussianLikelihood(parse_gaussian_std(cfg.std), min_std=float(cfg.min_std))

"""``likelihood=laplace``: p(x|z) = prod Laplace(x; mean, b), the L1 reconstruction as a density.

    log p(x|z) = sum_pixels [ -|x - mean| / b - log(2 b) ]

The mean comes from the decoder; the scale b is fixed (``likelihood.scale=0.1``, pixel units) or learned per pixel
(``likelihood.scale=learned``: the decoder outputs it beside the mean, b = min_scale + softplus(.), never 0). Its
heavier tails than the Gaussian's make the reconstruction term the L1 error, whose gradient does not grow with the
error, so a few badly reconstructed pixels weigh less (the sharper reconstructions L1 is used for). A density on
[0, 1]-scaled pixels: pair it with ``dataset.dequantize=true``; bits/dim is read on the 8-bit scale, as for the
Gaussian.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from vae_cli.models.likelihoods.base import Likelihood, Measures, uniform_draws

LEARNED = "learned"


class LaplaceLikelihood(Likelihood):
    measures = Measures.density

    def __init__(self, scale: float | str, min_scale: float = 1e-3, init_scale: float = 0.1) -> None:
        super().__init__()
        self.min_scale = float(min_scale)
        self.learned = str(scale).strip() == LEARNED
        self.fixed_scale = None if self.learned else float(scale)
        # softplus(offset) = init_scale - min_scale: a decoder output of 0 means b = init_scale.
        self.raw_offset = math.log(math.expm1(max(init_scale - self.min_scale, 1e-6)))

    def param_channels(self, channels: int) -> int:
        return 2 * channels if self.learned else channels

    def mean_and_scale(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        params = params.float()
        if self.learned:
            mean, raw = params.chunk(2, dim=1)
            return mean, self.min_scale + F.softplus(raw + self.raw_offset)
        assert self.fixed_scale is not None
        return params, self.fixed_scale

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        mean, scale = self.mean_and_scale(params)
        b = torch.as_tensor(scale, device=mean.device, dtype=mean.dtype)
        return -((x.float() - mean).abs() / b + torch.log(2 * b)).flatten(1).sum(dim=1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return self.mean_and_scale(params)[0].clamp(0, 1)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # Inverse CDF: mean - b sign(u) log(1 - 2|u|), u ~ U(-1/2, 1/2).
        mean, scale = self.mean_and_scale(params)
        u = uniform_draws(params, mean.shape, generator).clamp(1e-7, 1 - 1e-7) - 0.5
        return (mean - scale * torch.sign(u) * torch.log1p(-2 * u.abs())).clamp(0, 1)


def build(cfg: Any, binarized: bool = False) -> Likelihood:
    return LaplaceLikelihood(cfg.scale, min_scale=float(cfg.min_scale))

"""``posterior=radial``: radial flows after the Gaussian (Rezende & Mohamed 2015, eq. 14).

    f(z) = z + beta h(alpha, r) (z - z0),  r = |z - z0|,  h = 1 / (alpha + r)
    log |det df/dz| = (D - 1) log(1 + beta h) + log(1 + beta h + beta h'(r) r),   h' = -1 / (alpha + r)^2

alpha > 0 (softplus) and, for invertibility, beta >= -alpha: beta = -alpha + softplus(beta_raw) (appendix A.2).
Each flow's (z0, alpha, beta) come from the encoder per image (amortized).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from vae_cli.models.posteriors.flow import AmortizedFlowPosterior


def radial_step(
    z: torch.Tensor, z0: torch.Tensor, alpha_raw: torch.Tensor, beta_raw: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One radial flow on ``z`` ``[..., B, D]`` with per-image ``z0`` ``[B, D]``, raw ``alpha, beta`` ``[B, 1]``."""
    d = z.shape[-1]
    alpha = F.softplus(alpha_raw)
    beta = -alpha + F.softplus(beta_raw)
    diff = z - z0
    r = diff.norm(dim=-1, keepdim=True)
    h = 1 / (alpha + r)
    bh = beta * h
    log_det = (d - 1) * torch.log1p(bh) + torch.log1p(bh - beta * r * h.pow(2))
    return z + bh * diff, log_det.squeeze(-1)


class RadialPosterior(AmortizedFlowPosterior):
    def __init__(self, latent_dim: int, flows: int) -> None:
        super().__init__(latent_dim, flows, [latent_dim, 1, 1])  # z0, alpha, beta

    step = staticmethod(radial_step)


def build(cfg: Any, latent_dim: int) -> RadialPosterior:
    return RadialPosterior(latent_dim, int(cfg.flows))

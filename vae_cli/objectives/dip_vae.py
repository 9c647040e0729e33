"""``loss=dip_vae``: the ELBO plus a penalty that pushes a covariance of the encoder towards the identity
(Kumar et al., 2018, "Disentangled Inferred Prior").

    Cov[mu(x)] = E_x[mu mu^T] - E_x[mu] E_x[mu]^T       (over the batch: centred on the batch axis)
    C = Cov[mu(x)]                                      (DIP-VAE-I)
    C = E_x[diag sigma^2(x)] + Cov[mu(x)]               (DIP-VAE-II: the covariance of q(z) itself)
    loss = recon + KL + lambda_od * sum_{i != j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2

The variances enter as sigma^2 (one public version uses sigma^4), and mu is centred over the batch, not over the
latent dimensions.
"""

from __future__ import annotations

from typing import Any

import torch

from vae_cli.config.objectives import DIPVariant
from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms, elbo_terms, no_autocast


def dip_covariance(mu: torch.Tensor, logvar: torch.Tensor, variant: DIPVariant) -> torch.Tensor:
    """The covariance that DIP-VAE regularizes, ``[D, D]``, from a batch of posteriors ``[B, D]``."""
    centred = mu - mu.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / mu.shape[0]
    if DIPVariant(variant) == DIPVariant.ii:
        cov = cov + torch.diag(logvar.exp().mean(dim=0))
    return cov


def dip_penalty(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    diagonal = torch.diagonal(cov)
    off = cov - torch.diag(diagonal)
    return lambda_od * off.pow(2).sum() + lambda_d * (diagonal - 1).pow(2).sum()


class DIPVAE(Objective):
    terms = ("loss", "recon", "kl", "elbo", "dip")

    def __init__(self, cfg: Any, context: ObjectiveContext | None = None) -> None:
        super().__init__()
        self.variant = DIPVariant(cfg.variant)
        self.lambda_od = float(cfg.lambda_od)
        paper_ratio = 10.0 if self.variant == DIPVariant.i else 1.0
        self.lambda_d = float(cfg.lambda_d) if cfg.lambda_d is not None else paper_ratio * self.lambda_od

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        out = model(x, y)
        terms = elbo_terms(model, x, out)
        with no_autocast(out.mu):
            cov = dip_covariance(out.mu.float(), out.logvar.float(), self.variant)
            dip = dip_penalty(cov, self.lambda_od, self.lambda_d)
        return {"loss": terms["recon"] + terms["kl"] + dip, **terms, "dip": dip}

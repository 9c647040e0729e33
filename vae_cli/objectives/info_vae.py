"""``loss=info_vae``: InfoVAE / MMD-VAE (Zhao et al., 2019).

    loss = recon + (1 - alpha) * KL + (alpha + lambda - 1) * MMD(q(z), p(z))

MMD is the unbiased estimate between the batch's posterior samples z_1..z_n and as many prior samples p_1..p_n:

    MMD = 1/(n(n-1)) sum_{i != j} [k(z_i, z_j) + k(p_i, p_j)] - 2/n^2 sum_{i, j} k(z_i, p_j)

with k(a, b) = C / (C + |a - b|^2) (``imq``, inverse multiquadric) or exp(-|a - b|^2 / C) (``rbf``), and the
scale C = 2 * latent_dim * kernel_scale (kernel_scale: the prior's variance, 1 for N(0, I)). alpha = 1 gives the
MMD-VAE, alpha = 0 keeps the full KL.
"""

from __future__ import annotations

from typing import Any

import torch

from vae_cli.config.objectives import MMDKernel
from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms, elbo_terms, no_autocast
from vae_cli.objectives.mmd import mmd_unbiased


class InfoVAE(Objective):
    terms = ("loss", "recon", "kl", "elbo", "mmd")

    def __init__(self, cfg: Any, context: ObjectiveContext) -> None:
        super().__init__()
        self.kernel = MMDKernel(cfg.kernel)
        self.alpha = float(cfg.alpha)
        self.lam = float(cfg["lambda"])
        self.scale = 2.0 * context.latent_dim * float(cfg.kernel_scale)

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        out = model(x, y)
        terms = elbo_terms(model, x, out)
        with no_autocast(out.z):
            z = out.z.float()
            prior_z = model.prior.sample(z.shape[0], device=z.device).float()
            mmd = mmd_unbiased(z, prior_z, self.kernel, self.scale) if z.shape[0] > 1 else z.new_zeros(())
        loss = terms["recon"] + (1 - self.alpha) * terms["kl"] + (self.alpha + self.lam - 1) * mmd
        return {"loss": loss, **terms, "mmd": mmd}

"""``loss=ciwae``: the combination bound of Rainforth et al. (2018), beta * ELBO + (1 - beta) * IWAE, on the same K
samples per image:

    log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x),   z_k ~ q(z | x),  k = 1..K
    ciwae   = beta * 1/K sum_k log w_k + (1 - beta) * (logsumexp_k log w_k - log K)

beta = 1 is the K-sample ELBO, beta = 0 the IWAE bound (tests/unit/test_iw_family.py: both on the same noise). Both
terms are lower bounds on log p(x), so their convex combination is one too; the ELBO part keeps the encoder's
gradient signal that a tight IWAE bound loses.

Reported: ``iw_elbo`` (the IWAE part), ``elbo`` (the ELBO part), ``ciwae`` (the bound), ``recon`` and ``kl``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms
from vae_cli.objectives.iwae import log_weights


class CIWAE(Objective):
    terms = ("loss", "ciwae", "iw_elbo", "elbo", "recon", "kl")

    def __init__(self, cfg: Any, context: ObjectiveContext | None = None) -> None:
        super().__init__()
        self.k, self.beta = int(cfg.k), float(cfg.beta)

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        log_w, log_px_z, log_pz, log_qz, _ = log_weights(model, x, y, self.k)
        iw = (torch.logsumexp(log_w, dim=0) - math.log(self.k)).mean()
        elbo = log_w.mean()
        bound = self.beta * elbo + (1 - self.beta) * iw
        recon, kl = -log_px_z.mean(), (log_qz - log_pz).mean()
        return {"loss": -bound, "ciwae": bound, "iw_elbo": iw, "elbo": elbo, "recon": recon, "kl": kl}

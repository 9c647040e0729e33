"""``loss=miwae``: the average of M importance-weighted bounds of K samples each (Rainforth et al., 2018).

    log w_mk = log p(x | z_mk) + log p(z_mk) - log q(z_mk | x),   z_mk ~ q(z | x),  m = 1..M, k = 1..K
    miwae    = 1/M sum_m [logsumexp_k(log w_mk) - log K]           (ELBO <= MIWAE <= IWAE with M*K samples)

M = 1 is the IWAE bound with K samples (the same noise gives the same number: tests/unit/test_miwae.py), K = 1 the
ELBO averaged over M samples. With the same M*K decoder passes, MIWAE keeps the encoder's gradient signal that a
tight IWAE bound loses (its signal-to-noise ratio falls as K grows, Rainforth et al.), at the price of a looser
bound. ``estimator=dreg`` gives each group's encoder the doubly reparameterized gradient, as for ``loss=iwae``.

Reported: ``iw_elbo`` (the MIWAE bound itself), ``elbo`` (the mean of log w over all M*K samples), ``recon`` and
``kl`` (= mean log q - log p at the samples), with elbo = -(recon + kl).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vae_cli.config.objectives import IWEstimator
from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms
from vae_cli.objectives.iwae import log_weights


class MIWAE(Objective):
    terms = ("loss", "iw_elbo", "elbo", "recon", "kl")

    def __init__(self, cfg: Any, context: ObjectiveContext | None = None) -> None:
        super().__init__()
        self.m, self.k = int(cfg.m), int(cfg.k)
        self.dreg = IWEstimator(cfg.estimator) == IWEstimator.dreg

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        dreg = self.dreg and torch.is_grad_enabled()
        # The M*K samples drawn at once, in M groups of K: with M = 1 exactly the draws of loss=iwae.
        log_w, log_px_z, log_pz, log_qz, z = log_weights(model, x, y, self.m * self.k, stop_q=dreg)
        groups = log_w.view(self.m, self.k, -1)  # [M, K, B]
        bound = (torch.logsumexp(groups, dim=1) - math.log(self.k)).mean(dim=0)  # [B]
        if dreg and z.requires_grad:
            w = torch.softmax(groups.detach(), dim=1).reshape(self.m * self.k, -1)  # each group's normalized weights
            z.register_hook(lambda grad: grad * w.unsqueeze(-1).to(grad.dtype))
        recon, kl = -log_px_z.mean(), (log_qz - log_pz).mean()
        miwae = bound.mean()
        return {"loss": -miwae, "iw_elbo": miwae, "elbo": -(recon + kl), "recon": recon, "kl": kl}

"""``loss=iwae``: the importance-weighted bound (Burda et al., 2016), optionally with DReG gradients.

    log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x),   z_k = mu + sigma * eps_k,  k = 1..K
    iw_elbo = logsumexp_k(log w_k) - log K                    (>= ELBO; -> log p(x) as K grows)

The loss is -iw_elbo, differentiated through the logsumexp. Every term inside is a sample's log-density: an
analytic KL does not belong inside the IW estimate (it makes a different quantity, which can exceed log p(x)).

``estimator=dreg`` (Tucker et al., 2019): the decoder and prior keep the IWAE gradient, sum_k w~_k grad log w_k
(w~ = softmax of log w over k), while the encoder gets the doubly reparameterized gradient
sum_k w~_k^2 (d log w_k / d z_k) (d z_k / d phi), with q's parameters stopped inside log q. Done with one backward
pass: log q is evaluated with stopped (mu, logvar), so the encoder is reached through z only, and a hook on z
multiplies the gradient arriving there (w~_k d log w_k / d z_k from the logsumexp) by w~_k once more.

Reported: ``iw_elbo``; ``elbo``, the mean of log w_k over the K samples (a K-sample ELBO estimate); ``recon`` and
``kl`` (= mean log q - log p at the samples), with elbo = -(recon + kl).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vae_cli.config.objectives import IWEstimator
from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms


def log_weights(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None,
    k: int,
    stop_q: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log_w, log p(x|z), log p(z), log q(z|x), z)``, the first four ``[K, B]``, z ``[K, B, D]``."""
    eps = torch.randn((k, x.shape[0], model.latent_dim), device=x.device)
    log_px_z, log_pz, log_qz, z = model.log_weights(x, y, eps, stop_q=stop_q)
    return log_px_z + log_pz - log_qz, log_px_z, log_pz, log_qz, z


class IWAE(Objective):
    terms = ("loss", "iw_elbo", "elbo", "recon", "kl")

    def __init__(self, cfg: Any, context: ObjectiveContext | None = None) -> None:
        super().__init__()
        self.k = int(cfg.k)
        self.dreg = IWEstimator(cfg.estimator) == IWEstimator.dreg

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        dreg = self.dreg and torch.is_grad_enabled()
        log_w, log_px_z, log_pz, log_qz, z = log_weights(model, x, y, self.k, stop_q=dreg)
        iw = torch.logsumexp(log_w, dim=0) - math.log(self.k)
        if dreg and z.requires_grad:
            w = torch.softmax(log_w.detach(), dim=0)  # [K, B], the normalized importance weights
            z.register_hook(lambda grad: grad * w.unsqueeze(-1).to(grad.dtype))
        recon, kl = -log_px_z.mean(), (log_qz - log_pz).mean()
        iw_elbo = iw.mean()
        return {"loss": -iw_elbo, "iw_elbo": iw_elbo, "elbo": -(recon + kl), "recon": recon, "kl": kl}

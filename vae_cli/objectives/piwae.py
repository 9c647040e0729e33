"""``loss=piwae``: the partially importance-weighted autoencoder (Rainforth et al. 2018). The generative model p
(decoder and prior) climbs the IWAE bound of M * K samples; the encoder q climbs the MIWAE bound of the same samples,
M groups of K (a looser bound whose encoder gradient keeps its signal-to-noise ratio as K grows):

    log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x),   i = 1..M*K
    grad theta:  IWAE_(M*K) = logsumexp_i log w_i - log(M K)
    grad phi:    MIWAE_(M,K) = 1/M sum_m [logsumexp_(k in m) log w_mk - log K]

One backward pass: the joint log p(x, z) is evaluated once, at z detached from the encoder (a leaf), so the IWAE
term's gradient reaches p's parameters only; the gradient of the MIWAE term in z, d MIWAE / d z_i =
w~_i^(group) / M * d log p(x, z_i) / d z_i, is taken from the same graph with ``torch.autograd.grad`` and sent into
the live z (``(g * z).sum()``), and log q enters with the MIWAE weights. Value-zero surrogates carry both, so the
loss reported is -IWAE. A VampPrior is part of p: its pseudo-inputs' pass through the encoder follows the IWAE
gradient. M = 1 gives IWAE's gradients on the same noise (tests/unit/test_iw_family.py).

Reported: ``iw_elbo`` (IWAE, M*K samples), ``miwae``, ``elbo`` (the mean log w), ``recon``, ``kl``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vae_cli.models.protocol import FlatModel, Model
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms


def zero_valued(t: torch.Tensor) -> torch.Tensor:
    """``t - t.detach()``: 0 in value, ``t``'s gradient."""
    return t - t.detach()


class PIWAE(Objective):
    terms = ("loss", "iw_elbo", "miwae", "elbo", "recon", "kl")

    def __init__(self, cfg: Any, context: ObjectiveContext | None = None) -> None:
        super().__init__()
        self.m, self.k = int(cfg.m), int(cfg.k)

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        assert isinstance(model, FlatModel), "loss=piwae needs a model with one latent vector"
        n, b = self.m * self.k, x.shape[0]
        eps = torch.randn((n, b, model.latent_dim), device=x.device)
        draw = model.draw_posterior(x, y, eps)
        z, log_q = draw.z, draw.log_q.float()
        training = torch.is_grad_enabled() and z.requires_grad
        z_leaf = z.detach().requires_grad_(training)
        log_px_z, log_pz = model.log_joint(x, y, z_leaf)
        log_joint = log_px_z.float() + log_pz.float()
        log_w = log_joint - log_q.detach()  # [M*K, B]
        iw = (torch.logsumexp(log_w, dim=0) - math.log(n)).mean()
        groups = log_w.view(self.m, self.k, b)
        miwae = (torch.logsumexp(groups, dim=1) - math.log(self.k)).mean()
        loss = -iw
        if training:
            # MIWAE's weight of each sample, per image mean: w~ within its group / M / B.
            weights = (torch.softmax(groups.detach(), dim=1) / (self.m * b)).reshape(n, b)
            (g_z,) = torch.autograd.grad(log_joint, z_leaf, grad_outputs=weights, retain_graph=True)
            encoder_gain = (g_z.detach() * z).sum() - (weights * log_q).sum()
            loss = loss - zero_valued(encoder_gain)
        recon, kl = -log_px_z.float().mean(), (log_q.detach() - log_pz.float()).mean()
        return {"loss": loss, "iw_elbo": iw, "miwae": miwae, "elbo": -(recon + kl), "recon": recon, "kl": kl}

"""``loss=elbo``: the negative ELBO with its common reweightings.

    loss = recon_weight * recon + beta_t * KL                  (beta-VAE; beta_t ramps up over kl_warmup_steps)
    loss = recon_weight * recon + beta_t * sum_d max(KL_d, lambda)   (free bits, KL_d: batch-mean KL of dim d,
                                                                      or of layer d in a hierarchical model)
    loss = recon_weight * recon + beta * |KL - C_t|             (capacity annealing, C_t: 0 -> capacity_max)

``recon`` is -log p(x|z) with one z sample, ``KL`` is KL(q(z|x) || p(z)) (closed form for the normal prior, else
log q(z|x) - log p(z) at the sample), and ``elbo = -(recon + KL)`` whatever the weights. A hierarchical model's
KL is the sum of its layers', each also reported (``kl_z1``, ...); the warm-up weighs every layer.
"""

from __future__ import annotations

from typing import Any

import torch

from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms, elbo_terms, layer_kl_terms, ramp


class ELBO(Objective):
    terms = ("loss", "recon", "kl", "elbo")

    def __init__(self, cfg: Any, context: ObjectiveContext | None = None) -> None:
        super().__init__()
        self.beta = float(cfg.beta)
        self.recon_weight = float(cfg.recon_weight)
        self.kl_warmup_steps = int(cfg.kl_warmup_steps)
        self.free_bits = float(cfg.free_bits)
        self.capacity_max = None if cfg.capacity_max is None else float(cfg.capacity_max)
        self.capacity_steps = int(cfg.capacity_steps)
        layers = context.layer_names if context is not None else ()
        self.aux = context.aux_loss_names if context is not None else ()
        self.monitored = context.monitor_names if context is not None else ()
        self.terms = (*ELBO.terms, *(f"kl_{name}" for name in layers), *self.aux, *self.monitored)

    def schedule(self, step: torch.Tensor | None) -> dict[str, Any]:
        weights: dict[str, Any] = {"kl_weight": self.beta * ramp(step, self.kl_warmup_steps)}
        if self.capacity_max is not None:
            weights["capacity"] = self.capacity_max * ramp(step, self.capacity_steps, offset=0)
        return weights

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        out = model(x, y)
        terms = elbo_terms(model, x, out)
        weights = self.schedule(step)
        kl = terms["kl"]
        if self.free_bits > 0:
            # Per layer in a hierarchy (its layers' KLs), else per dimension (closed form: prior=normal, validated).
            groups = model.kl_layers(out) if model.layer_names else model.closed_form_kl_per_dim(out.mu, out.logvar)
            assert groups is not None
            kl = groups.mean(dim=0).clamp_min(self.free_bits).sum()
        if self.capacity_max is not None:
            kl = (kl - weights["capacity"]).abs()
        loss = self.recon_weight * terms["recon"] + weights["kl_weight"] * kl
        extra: Terms = {}
        if self.aux or self.monitored:
            # The model's own terms (a VQ-VAE's codebook and commitment losses join the loss).
            aux = model.aux_losses(out)
            for value in aux.values():
                loss = loss + value
            extra = {**aux, **model.monitors(out)}
        return {"loss": loss, **terms, **layer_kl_terms(model, out), **extra}

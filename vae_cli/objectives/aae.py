"""``loss=aae``: the adversarial autoencoder (Makhzani et al., 2016), with a deterministic encoder.

    z = mu(x),  p ~ p(z)
    loss = -log p(x | z) + w * -log D(z)            encoder and decoder (D's parameters stopped: it fools D)
    disc = -log D(p) - log(1 - D(z))                 the discriminator only (z detached)

D is an MLP on codes with one logit (a prior draw vs a code). The paper alternates a reconstruction phase and a
regularization phase per minibatch; here both come out of one forward and one backward (``objectives/adversarial``):
the codes the discriminator trains on are detached, and the encoder's fooling term evaluates D with stopped
parameters, so each loss trains exactly the networks the paper updates with it. The discriminator is this module's
(its own optimizer group: ``loss.disc_lr``, ``loss.disc_betas``), saved and restored with the objective's state
like FactorVAE's, so a resumed run is bit-identical.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vae_cli.models.protocol import Model
from vae_cli.objectives.adversarial import (
    DiscriminatorPasses,
    accuracy,
    discriminator_group,
    discriminator_loss,
    fooling_loss,
)
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms, point_reconstruction


def mlp_discriminator(inputs: int, hidden: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class AAE(Objective):
    terms = ("loss", "recon", "gen", "disc", "disc_acc")
    aux_terms = ("disc",)
    selection = ("recon", 1.0)  # the fooling term is a game value: best.pt keeps the best reconstruction

    def __init__(self, cfg: Any, context: ObjectiveContext) -> None:
        super().__init__()
        self.weight = float(cfg.adversarial_weight)
        self.disc_lr = float(cfg.disc_lr)
        self.disc_betas = tuple(float(b) for b in cfg.disc_betas)
        self.discriminator = mlp_discriminator(context.latent_dim, [int(h) for h in cfg.disc_hidden])

    def param_groups(self) -> list[dict[str, Any]]:
        return [discriminator_group(self.discriminator, self.disc_lr, self.disc_betas)]

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        z, _, recon = point_reconstruction(model, x, y)
        recon = recon.mean()
        codes = z.float()
        discriminator = DiscriminatorPasses(self.discriminator)
        prior_z = model.prior.sample(codes.shape[0], device=codes.device).float()
        # D on the live codes (frozen: the fooling term trains the encoder only), and on the detached codes with the
        # prior draws (trained: D's loss), in one forward (the codes' rows are the same in both).
        fooled, both = discriminator.frozen_and_trained(codes, prior_z)
        gen = fooling_loss(fooled)
        d_codes, d_prior = both.float().split(codes.shape[0])
        disc = discriminator_loss(d_prior, d_codes)
        return {
            "loss": recon + self.weight * gen,
            "recon": recon,
            "gen": gen,
            "disc": disc,
            "disc_acc": accuracy(d_prior, d_codes),
        }

"""``loss=factor_vae``: the ELBO plus gamma times a discriminator's estimate of the total correlation
(Kim & Mnih, 2018).

    loss = recon + beta * KL + gamma * E_q(z)[log D(z) / (1 - D(z))]  (D(z): probability that z comes from q(z))
    disc = -1/2 E_q(z)[log D(z)] - 1/2 E_perm[log (1 - D(z~))]     (z~: each dimension permuted across the batch)

D is an MLP with two logits (joint, permuted); the density-ratio trick gives TC ~ E[logit_joint - logit_perm].
``permute_dims`` shuffles every latent dimension independently across the batch, which samples the product of the
marginals prod_d q(z_d) (permuting within one sample, as one public version does, samples nothing useful).

Both losses come out of one forward pass and one backward: the TC term evaluates D with its parameters detached
(so the VAE's loss never trains D) on the live z, and the discriminator's loss evaluates D on detached z (so it
never reaches the encoder); D runs once over the codes for both (``DiscriminatorPasses.frozen_and_trained``).
The discriminator's parameters are this module's, trained by its own optimizer
parameter group (``loss.disc_lr``, ``loss.disc_betas``); they are saved in checkpoints with the objective's state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vae_cli.models.protocol import Model
from vae_cli.objectives.adversarial import DiscriminatorPasses, discriminator_group
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms, elbo_terms, no_autocast


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Each column of ``z`` ``[B, D]`` permuted independently (one random permutation of the batch per dimension)."""
    order = torch.argsort(torch.rand(z.shape, device=z.device), dim=0)
    return z.gather(0, order)


class Discriminator(nn.Module):
    def __init__(self, latent_dim: int, hidden: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class FactorVAE(Objective):
    terms = ("loss", "recon", "kl", "elbo", "tc", "disc", "disc_acc")
    aux_terms = ("disc",)

    def __init__(self, cfg: Any, context: ObjectiveContext) -> None:
        super().__init__()
        self.gamma = float(cfg.gamma)
        self.beta = float(cfg.beta)
        self.disc_lr = float(cfg.disc_lr)
        self.disc_betas = tuple(float(b) for b in cfg.disc_betas)
        self.discriminator = Discriminator(context.latent_dim, [int(h) for h in cfg.disc_hidden])

    def param_groups(self) -> list[dict[str, Any]]:
        return [discriminator_group(self.discriminator, self.disc_lr, self.disc_betas)]

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        out = model(x, y)
        terms = elbo_terms(model, x, out)
        # The discriminator is a network like the encoder and decoder: its matmuls run in the step's precision
        # (bf16 under autocast, where most of this objective's time goes), its logits and losses in fp32.
        z = out.z.float()
        discriminator = DiscriminatorPasses(self.discriminator.net)
        # D on the live codes (frozen: the TC term's gradient reaches the encoder only), and on the detached codes
        # with the permuted ones (trained: D's loss), in one forward (the codes' rows are the same in both).
        logits, both = discriminator.frozen_and_trained(z, permute_dims(z.detach()))
        logits = logits.float()
        d_joint, d_perm = both.float().split(z.shape[0])
        with no_autocast(out.z):
            tc = (logits[:, 0] - logits[:, 1]).mean()
            joint_label = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
            disc = 0.5 * (
                nn.functional.cross_entropy(d_joint, joint_label)
                + nn.functional.cross_entropy(d_perm, torch.ones_like(joint_label))
            )
            accuracy = 0.5 * ((d_joint.argmax(1) == 0).float().mean() + (d_perm.argmax(1) == 1).float().mean())
        loss = terms["recon"] + self.beta * terms["kl"] + self.gamma * tc
        return {"loss": loss, **terms, "tc": tc, "disc": disc, "disc_acc": accuracy.detach()}

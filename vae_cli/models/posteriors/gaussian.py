"""``posterior=gaussian`` (the default): q(z|x) = N(mu, diag sigma^2), z = mu + sigma * eps.

Its KL is the prior's: in closed form per dimension for N(0, I), else log q - log p at the sample (``Prior.kl``),
exactly as before posteriors were a part, so today's runs train bit-identically."""

from __future__ import annotations

from typing import Any

import torch

from vae_cli.models.posteriors.base import Draw, Posterior, PosteriorParams, gaussian_base
from vae_cli.models.priors import diag_normal_log_prob


class GaussianPosterior(Posterior):
    def rsample(self, p: PosteriorParams) -> Draw:
        # The same operations as the VAE's reparameterization always did (bit-identical training).
        return Draw(z=p.mu + torch.exp(0.5 * p.logvar) * torch.randn_like(p.mu), log_q=None)

    def draw(self, p, eps, generator=None, stop_q=False) -> Draw:
        z, log_q = gaussian_base(p, eps)
        if stop_q:  # DReG: q's parameters stopped, the encoder reached through z only
            log_q = diag_normal_log_prob(z, p.mu.detach(), p.logvar.detach()).sum(-1)
        return Draw(z=z, log_q=log_q)

    def log_prob(self, z: torch.Tensor, p: PosteriorParams) -> torch.Tensor:
        return diag_normal_log_prob(z, p.mu, p.logvar).sum(-1)

    def kl(self, mu, logvar, z, log_q, prior) -> torch.Tensor:
        return prior.kl(mu, logvar, z)

    def closed_form_kl_per_dim(self, prior, mu, logvar):
        return prior.kl_per_dim(mu, logvar)


def build(cfg: Any, latent_dim: int) -> GaussianPosterior:
    return GaussianPosterior(latent_dim)

"""The VAE: encode to q(z|x) = N(mu, sigma^2), reparameterize, decode to the parameters of p(x|z).

The model returns named outputs and no loss: the likelihood and the ELBO weights live in ``vae_cli.losses.elbo``, so a
beta-VAE is this same model with another loss weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vae_cli.config import ModelConfig
from vae_cli.models.networks import build_networks


@dataclass
class VAEOutput:
    params: torch.Tensor  # decoder output: likelihood parameters, shaped like x
    mu: torch.Tensor  # [B, latent_dim]
    logvar: torch.Tensor  # [B, latent_dim]
    z: torch.Tensor  # [B, latent_dim], the reparameterized sample


class VAE(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I): the sample is a differentiable function of (mu, logvar)."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return VAEOutput(params=self.decode(z), mu=mu, logvar=logvar, z=z)

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of z ~ N(0, I), made on the generator's device (CPU by default), moved to the model's."""
        device = next(self.parameters()).device
        gen_device = generator.device if generator is not None else torch.device("cpu")
        return torch.randn(n, self.latent_dim, generator=generator, device=gen_device).to(device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode n draws from the prior; returns likelihood parameters (see ``Likelihood.mean`` for images)."""
        return self.decode(self.prior_sample(n, generator))


def build_model(cfg: ModelConfig, image_shape: tuple[int, int, int]) -> VAE:
    encoder, decoder = build_networks(cfg, image_shape)
    return VAE(encoder, decoder, cfg.latent_dim)

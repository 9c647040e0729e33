"""``--sampler two_stage``: a second VAE on the codes (Dai & Wipf, 2019, "Diagnosing and enhancing VAE models").

The first model's codes z (standardized) are the data of a small VAE: q(u|z) = N(mu(z), sigma^2(z)),
p(z|u) = N(g(u), gamma^2 I) with one learned scale gamma (the paper's: it lets the second stage find how much of
z's spread is noise), p(u) = N(0, I); it trains on the negative ELBO. New codes are draws of the fitted model, g(u) + gamma * eps for u, eps ~ N(0, I)
(the paper decodes the mean g(u); as the learned gamma goes to 0, which is its point, the two agree, and before it
does the mean alone under-disperses the codes). Its log-density has no closed form (``log_prob`` is None); ``fit`` reports the
ELBO of the codes instead.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from vae_cli.models.priors import Prior
from vae_cli.samplers.base import LatentSampler, standardizer, trained_on_codes


def mlp(inputs: int, hidden: list[int], outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(inputs, h), nn.ReLU()]
        inputs = h
    layers.append(nn.Linear(inputs, outputs))
    return nn.Sequential(*layers)


class SecondStage(nn.Module):
    def __init__(self, dim: int, hidden: list[int], latent: int) -> None:
        super().__init__()
        self.latent = latent
        self.encoder = mlp(dim, hidden, 2 * latent)
        self.decoder = mlp(latent, hidden, dim)
        self.log_gamma = nn.Parameter(torch.zeros(()))

    def negative_elbo(self, z: torch.Tensor) -> torch.Tensor:
        """-ELBO of each code ``[B]`` (one reparameterized sample)."""
        mu, logvar = self.encoder(z).chunk(2, dim=1)
        u = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        mean = self.decoder(u)
        d = z.shape[1]
        nll = 0.5 * ((z - mean) / self.log_gamma.exp()).pow(2).sum(1) + d * (
            self.log_gamma + 0.5 * math.log(2 * math.pi)
        )
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return nll + kl


class TwoStageSampler(LatentSampler):
    def __init__(self, cfg: Any, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.hidden = [int(h) for h in cfg.hidden]
        self.second_latent = int(cfg.latent_dim) if cfg.latent_dim is not None else latent_dim
        self.epochs, self.batch_size, self.lr = int(cfg.epochs), int(cfg.batch_size), float(cfg.lr)
        self.stage = SecondStage(latent_dim, self.hidden, self.second_latent)
        self.register_buffer("shift", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def fit(self, codes: torch.Tensor, seed: int) -> dict[str, float]:
        codes = codes.float().cpu()
        shift, scale = standardizer(codes)
        self.shift.copy_(shift), self.scale.copy_(scale)
        x = (codes - shift) / scale
        self.stage = trained_on_codes(
            lambda: SecondStage(self.latent_dim, self.hidden, self.second_latent),
            lambda stage, batch: stage.negative_elbo(batch).mean(),
            x,
            seed,
            self.epochs,
            self.batch_size,
            self.lr,
        )
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)  # the ELBO's one sample per code: from the seed too
            elbo = -self.stage.negative_elbo(x).mean().item() - self.scale.log().sum().item()
        return {"train_elbo": elbo, "gamma": float(self.stage.log_gamma.detach().exp())}

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        u = torch.randn(n, self.second_latent, generator=generator)
        eps = torch.randn(n, self.latent_dim, generator=generator)
        with torch.no_grad():
            z = self.stage.decoder(u) + self.stage.log_gamma.exp() * eps
            return (z * self.scale + self.shift).float()

    def describe(self) -> str:
        return f"second-stage VAE, MLP {self.hidden}, u in R^{self.second_latent}"


def build(cfg: Any, latent_dim: int, prior: Prior) -> LatentSampler:
    return TwoStageSampler(cfg, latent_dim)

"""``--sampler flow``: a masked autoregressive flow (Papamakarios et al., 2017; zuko's ``MAF``) fitted to the codes
by maximum likelihood.

The codes are standardized first (their mean and spread kept as buffers, the density corrected by the scaling's
log-determinant), and the flow trains with Adam for a fixed number of epochs from a seeded initialization and a
seeded batch order inside a forked RNG: the same codes and seed give the same flow. Sampling pushes seeded N(0, I)
noise through the flow's inverse.
"""

from __future__ import annotations

from typing import Any

import torch
import zuko

from vae_cli.models.priors import Prior
from vae_cli.samplers.base import LatentSampler, standardizer, trained_on_codes


class FlowSampler(LatentSampler):
    def __init__(self, cfg: Any, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.transforms = int(cfg.transforms)
        self.hidden = [int(h) for h in cfg.hidden]
        self.epochs, self.batch_size, self.lr = int(cfg.epochs), int(cfg.batch_size), float(cfg.lr)
        self.flow = self._new_flow()
        self.register_buffer("shift", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def _new_flow(self) -> zuko.flows.MAF:
        return zuko.flows.MAF(features=self.latent_dim, transforms=self.transforms, hidden_features=self.hidden)

    def fit(self, codes: torch.Tensor, seed: int) -> dict[str, float]:
        codes = codes.float().cpu()
        shift, scale = standardizer(codes)
        self.shift.copy_(shift), self.scale.copy_(scale)
        x = (codes - shift) / scale
        self.flow = trained_on_codes(
            self._new_flow,
            lambda flow, batch: -flow().log_prob(batch).mean(),
            x,
            seed,
            self.epochs,
            self.batch_size,
            self.lr,
        )
        return {}

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(n, self.latent_dim, generator=generator)
        with torch.no_grad():
            x = self.flow().transform.inv(noise)
        return (x * self.scale + self.shift).float()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = (z.float().cpu() - self.shift) / self.scale
            return self.flow().log_prob(x) - self.scale.log().sum()

    def describe(self) -> str:
        return f"MAF flow, {self.transforms} transforms of {self.hidden}"


def build(cfg: Any, latent_dim: int, prior: Prior) -> LatentSampler:
    return FlowSampler(cfg, latent_dim)

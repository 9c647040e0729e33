"""``--sampler prior``: the model's own prior p(z) (nothing fitted), so that a table of samplers has its baseline."""

from __future__ import annotations

from typing import Any

import torch

from vae_cli.models.priors import Prior
from vae_cli.samplers.base import LatentSampler


class PriorSampler(LatentSampler):
    def __init__(self, latent_dim: int, prior: Prior) -> None:
        super().__init__(latent_dim)
        self._prior = [prior]  # a list: the prior is the model's, not part of this module's state

    def fit(self, codes: torch.Tensor, seed: int) -> dict[str, float]:
        return {}

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self._prior[0].sample(n, generator=generator, device=torch.device("cpu")).float().cpu()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor | None:
        return self._prior[0].log_prob(z.float())

    def describe(self) -> str:
        return f"the model's prior ({type(self._prior[0]).__name__})"


def build(cfg: Any, latent_dim: int, prior: Prior) -> LatentSampler:
    return PriorSampler(latent_dim, prior)

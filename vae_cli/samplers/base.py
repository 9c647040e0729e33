"""The contract of a latent sampler: fitted once to codes, then drawn from with a seeded generator.

A sampler is a module, so what it learned is its ``state_dict`` (tensors only: the artifact loads with
``weights_only=True``), and a sampler built from the same config has the same shapes to load them into. ``fit``
must be a function of the codes and the seed alone: refitting with the same seed gives the same sampler (the global
RNG is forked, never consumed).
"""

from __future__ import annotations

import torch
from torch import nn


class LatentSampler(nn.Module):
    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def fit(self, codes: torch.Tensor, seed: int) -> dict[str, float]:
        """Learn the density of ``codes`` ``[N, D]`` (CPU); returns what the fit measured (e.g. the mean log-likelihood
        of the codes)."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` codes ``[n, D]`` (float32, CPU) drawn with ``generator``."""
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor | None:
        """log density of each code ``[N]`` in nats, or None where the sampler has no tractable density."""
        return None

    def describe(self) -> str:
        """One line naming the sampler and its settings, for titles and tables."""
        raise NotImplementedError


def standardizer(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation of the codes (a dimension without spread keeps scale 1)."""
    mean = codes.mean(dim=0)
    std = codes.std(dim=0)
    return mean, torch.where(std > 1e-8, std, torch.ones_like(std))


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch's shuffled index batches (the last may be short; a batch of one is dropped)."""
    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    return [b for b in batches if b.numel() > 1]

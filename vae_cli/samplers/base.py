"""The contract of a latent sampler: fitted once to codes, then drawn from with a seeded generator.

A sampler is a module, so what it learned is its ``state_dict`` (tensors only: the artifact loads with
``weights_only=True``), and a sampler built from the same config has the same shapes to load them into. ``fit``
must be a function of the codes and the seed alone: refitting with the same seed gives the same sampler (the global
RNG is forked, never consumed).
"""

from __future__ import annotations

from collections.abc import Callable

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


def trained_on_codes(
    build: Callable[[], nn.Module],
    loss: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
) -> nn.Module:
    """A module made by ``build`` and trained with Adam on the rows of ``x`` to minimize ``loss(module, batch)``, its
    initialization and batch order drawn from ``seed`` inside a forked RNG (the caller's RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build()
        order = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(module.parameters(), lr=lr)
        for _ in range(epochs):
            for idx in minibatches(x.shape[0], batch_size, order):
                value = loss(module, x[idx])
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
    return module.eval()

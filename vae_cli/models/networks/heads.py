"""What the flat architectures share: a CVAE's condition (the one-hot label) joined to a flat representation, and the
Gaussian head of an encoder whose body ends in flat features."""

from __future__ import annotations

import torch
from torch import nn


def join(h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """``h`` with the condition ``c`` concatenated on the last axis (``h`` itself for an unconditional model)."""
    return h if c is None else torch.cat([h, c.to(h.dtype)], dim=-1)


class FeatureEncoder(nn.Module):
    """``body`` (images -> flat features), then one linear head to ``[mu, logvar]`` side by side (a single matmul
    instead of two), with a CVAE's condition joined to the features."""

    def __init__(self, body: nn.Module, features: int, latent_dim: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(features + cond_dim, 2 * latent_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(join(self.body(x), c)).chunk(2, dim=-1)
        return mu, logvar

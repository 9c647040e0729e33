"""What the flat architectures share: a CVAE's condition (the one-hot label) joined to a flat representation, and the
Gaussian head of an encoder whose body ends in flat features."""

from __future__ import annotations

import torch
from torch import nn


def split_head(out: torch.Tensor, context_dim: int) -> tuple[torch.Tensor, ...]:
    """An encoder head's output as (mu, logvar), or (mu, logvar, context) when the posterior asks for a context."""
    if context_dim == 0:
        return tuple(out.chunk(2, dim=-1))
    mu_logvar, context = out.split([out.shape[-1] - context_dim, context_dim], dim=-1)
    return (*mu_logvar.chunk(2, dim=-1), context)


def widen_head(head: nn.Linear, extra: int) -> nn.Linear:
    """``head`` with ``extra`` more outputs (a posterior's context), its first outputs keeping their weights."""
    wide = nn.Linear(head.in_features, head.out_features + extra)
    with torch.no_grad():
        wide.weight[: head.out_features] = head.weight
        wide.bias[: head.out_features] = head.bias
    return wide


class ContextHead:
    """Mixed into an encoder with a linear ``head`` to [mu, logvar]: ``add_context`` widens it for a posterior that
    reads a context (an IAF's h, a planar flow's per-image parameters); forward then returns it third."""

    context_dim: int = 0

    def add_context(self, extra: int) -> None:
        if extra > 0:
            self.head = widen_head(self.head, extra)
            self.context_dim = extra


def join(h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """``h`` with the condition ``c`` concatenated on the last axis (``h`` itself for an unconditional model)."""
    return h if c is None else torch.cat([h, c.to(h.dtype)], dim=-1)


class FeatureEncoder(ContextHead, nn.Module):
    """``body`` (images -> flat features), then one linear head to ``[mu, logvar]`` side by side (a single matmul
    instead of two), with a CVAE's condition joined to the features."""

    def __init__(self, body: nn.Module, features: int, latent_dim: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(features + cond_dim, 2 * latent_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        return split_head(self.head(join(self.body(x), c)), self.context_dim)

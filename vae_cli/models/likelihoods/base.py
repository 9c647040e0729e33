"""The contract of every likelihood, and what its ``-log p(x|z)`` measures (which decides what bits/dim means)."""

from __future__ import annotations

from enum import Enum

import torch
from torch import nn


class Measures(str, Enum):
    probability = "probability"
    density = "density"
    cross_entropy = "cross_entropy"
    # A reconstruction score that is no distribution of the data (likelihood=msssim): no bound on log p(x) exists.
    score = "score"


class Likelihood(nn.Module):
    """The contract every likelihood follows (a module, so a learned parameter is saved with the model)."""

    measures: Measures = Measures.density

    def param_channels(self, channels: int) -> int:
        """Channels of the decoder's output for images of ``channels`` channels."""
        return channels

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x | params) per image, ``[B]``, float32."""
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The expected image, in [0, 1]."""
        raise NotImplementedError

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


def uniform_draws(params: torch.Tensor, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
    """U(0, 1) draws made on the generator's device, moved to the parameters' device."""
    device = generator.device if generator is not None else params.device
    return torch.rand(shape, generator=generator, device=device).to(params.device)

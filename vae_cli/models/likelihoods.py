"""Likelihoods p(x|z): ``log_prob(x, params)`` per image, ``mean(params)`` (the image shown for reconstructions and
samples) and ``sample(params)``. The decoder's output is ``params``, shaped like the images.

Sums over pixels are taken in float32 even under autocast: 784+ pixels lose too much in half precision.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vae_cli.config import LikelihoodConfig, LikelihoodName


class _BCEWithLogitsPerSample(torch.autograd.Function):
    """Per-sample sum of BCE-with-logits, with a hand-written backward: the same function as
    ``F.binary_cross_entropy_with_logits(reduction="none").flatten(1).sum(1)``, about twice as fast on CPU.

    Why: ATen's CPU ``log1p`` (inside softplus/log_sigmoid) is not vectorized and cost ~10% of a whole MLP step,
    and autograd saves and replays the whole chain. Here the forward uses the stable identity
    ``softplus(l) - x l = max(l, 0) - x l + log(1 + exp(-|l|))`` (``log`` of a value in (1, 2]: vectorized; it
    differs from ``log1p`` by < 1e-7 per pixel), and the backward is the closed form ``sigmoid(l) - x``.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(logits, x)
        nll = logits.abs().neg_().exp_().add_(1.0).log_()
        nll += logits.clamp_min(0.0)
        nll -= x * logits
        return nll.flatten(1).sum(dim=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        logits, x = ctx.saved_tensors
        shape = (-1,) + (1,) * (logits.dim() - 1)
        grad_logits = torch.sigmoid(logits).sub_(x).mul_(grad.reshape(shape))
        # d/dx of the cross-entropy is -logits; x is data in training, but stay correct if it needs a gradient.
        grad_x = -logits * grad.reshape(shape) if ctx.needs_input_grad[1] else None
        return grad_logits, grad_x


class Likelihood(nn.Module):
    """The contract every likelihood follows (a module, so a learned parameter is saved with the model)."""

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x | params) per image, ``[B]``, float32."""
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The expected image, in [0, 1]."""
        raise NotImplementedError

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


class BernoulliLikelihood(Likelihood):
    """p(x|z) = prod Bernoulli(x; sigmoid(logits)); x in [0, 1] (the classic VAE also uses grey levels)."""

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        # BCE-with-logits is the numerically stable form of x log p + (1 - x) log(1 - p).
        return -_BCEWithLogitsPerSample.apply(params.float(), x.float())

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params.float())

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(self.mean(params), generator=generator)


class GaussianLikelihood(Likelihood):
    """p(x|z) = prod N(x; decoder(z), std^2) with a fixed std, in pixel units."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std
        self._log_norm = math.log(std) + 0.5 * math.log(2 * math.pi)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        sq = ((x.float() - params.float()) / self.std).pow(2)
        return -(0.5 * sq + self._log_norm).flatten(1).sum(dim=1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params.float().clamp(0, 1)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(params.shape, generator=generator, device=params.device)
        return (params.float() + self.std * noise).clamp(0, 1)


def build_likelihood(cfg: LikelihoodConfig) -> Likelihood:
    if LikelihoodName(cfg.name) == LikelihoodName.bernoulli:
        return BernoulliLikelihood()
    return GaussianLikelihood(cfg.std)

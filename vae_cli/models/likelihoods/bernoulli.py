"""``likelihood=bernoulli``: p(x|z) = prod Bernoulli(x; sigmoid(logits)), the classic VAE's."""

from __future__ import annotations

from typing import Any

import torch

from vae_cli.models.likelihoods.base import Likelihood, Measures, uniform_draws


class BCEWithLogitsPerSample(torch.autograd.Function):
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
        if torch.is_grad_enabled():  # create_graph (loss=hvae's leapfrog): this backward is differentiated again
            grad_logits = (torch.sigmoid(logits) - x) * grad.reshape(shape)
        else:
            grad_logits = torch.sigmoid(logits).sub_(x).mul_(grad.reshape(shape))
        # d/dx of the cross-entropy is -logits; x is data in training, but stay correct if it needs a gradient.
        grad_x = -logits * grad.reshape(shape) if ctx.needs_input_grad[1] else None
        return grad_logits, grad_x


class BernoulliLikelihood(Likelihood):
    """p(x|z) = prod Bernoulli(x; sigmoid(logits)); x in [0, 1] (the classic VAE also uses grey levels)."""

    def __init__(self, binarized: bool = True) -> None:
        super().__init__()
        # On grey levels the Bernoulli "likelihood" is a cross-entropy, not a probability of the data.
        self.measures = Measures.probability if binarized else Measures.cross_entropy

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        # BCE-with-logits is the numerically stable form of x log p + (1 - x) log(1 - p).
        return -BCEWithLogitsPerSample.apply(params.float(), x.float())

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params.float())

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        p = self.mean(params)
        return (uniform_draws(params, p.shape, generator) < p).float()


def build(cfg: Any, binarized: bool = False) -> Likelihood:
    return BernoulliLikelihood(binarized=binarized)

"""``likelihood=continuous_bernoulli``: the normalized Bernoulli on grey levels (Loaiza-Ganem & Cunningham, 2019)."""

from __future__ import annotations

import math
from typing import Any

import torch

from vae_cli.models.likelihoods.base import Likelihood, Measures, uniform_draws
from vae_cli.models.likelihoods.bernoulli import BCEWithLogitsPerSample

# Below this |logit| the continuous Bernoulli's normalizer and moments use their Taylor series: the closed forms
# are 0/0 at logit 0. At 0.1 the series' first omitted term is < 4e-10.
CB_TAYLOR_BELOW = 0.1


def _small_logits(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mask of |l| < CB_TAYLOR_BELOW, l with the small ones replaced by 1 for the closed forms, l for the series).

    The double ``where`` keeps the gradients of the unused branch finite (a NaN there would leak through
    ``torch.where``'s backward)."""
    small = logits.abs() < CB_TAYLOR_BELOW
    far = torch.where(small, torch.ones_like(logits), logits)
    near = torch.where(small, logits, torch.zeros_like(logits))
    return small, far, near


def continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(λ) of the continuous Bernoulli (Loaiza-Ganem & Cunningham, 2019), λ = sigmoid(l).

    C(λ) = 2 atanh(1 - 2λ) / (1 - 2λ), which in logits is l / tanh(l / 2): no 1 - 2λ cancellation, so the closed
    form is accurate down to |l| = 0.1; below, log C = log 2 + l²/12 - 7 l⁴/1440 (+ O(l⁶))."""
    small, far, near = _small_logits(logits)
    # l / tanh(l/2) > 0 for every l != 0; written with |l| and |tanh| so the log's argument is a positive ratio.
    closed = torch.log(far.abs()) - torch.log(torch.tanh(far.abs() / 2))
    series = math.log(2.0) + near.pow(2) / 12 - 7 * near.pow(4) / 1440
    return torch.where(small, series, closed)


class ContinuousBernoulliLikelihood(Likelihood):
    """p(x|λ) = C(λ) λ^x (1 - λ)^(1 - x) on x in [0, 1], λ = sigmoid(decoder(z)): the normalized version of the
    Bernoulli-on-grey-levels "likelihood". Reconstructions and samples show its mean, which is not λ."""

    measures = Measures.density

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        logits = params.float()
        # x log λ + (1 - x) log(1 - λ) = -(BCE-with-logits), then + log C(λ).
        return -BCEWithLogitsPerSample.apply(logits, x.float()) + continuous_bernoulli_log_norm(logits).flatten(1).sum(
            dim=1
        )

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        # E[x] = λ / (2λ - 1) + 1 / (2 atanh(1 - 2λ)) = sigmoid(l) / tanh(l/2) - 1/l; near 0: 1/2 + l/12 - l³/720.
        logits = params.float()
        small, far, near = _small_logits(logits)
        closed = torch.sigmoid(far) / torch.tanh(far / 2) - 1 / far
        series = 0.5 + near / 12 - near.pow(3) / 720
        return torch.where(small, series, closed).clamp(0, 1)

    def variance(self, params: torch.Tensor) -> torch.Tensor:
        # Var[x] = λ(λ - 1) / (1 - 2λ)² + 1 / (2 atanh(1 - 2λ))² = 1/l² - 1 / (4 sinh²(l/2)); near 0: 1/12 - l²/240.
        logits = params.float()
        small, far, near = _small_logits(logits)
        closed = far.pow(-2) - 0.25 / torch.sinh(far / 2).pow(2)
        series = 1 / 12 - near.pow(2) / 240 + near.pow(4) / 6048
        return torch.where(small, series, closed)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # Inverse CDF: x = log(1 + u (e^l - 1)) / l, written as 1 + log(u + (1 - u) e^-l) / l for l > 0 (no
        # overflow of e^l); x = u at l = 0.
        logits = params.float()
        u = uniform_draws(params, logits.shape, generator)
        small, far, _ = _small_logits(logits)
        neg = torch.log1p(u * torch.expm1(far.clamp(max=0))) / far
        pos = 1 + torch.log(u + (1 - u) * torch.exp(-far.clamp(min=0))) / far
        x = torch.where(far > 0, pos, neg)
        return torch.where(small, u, x).clamp(0, 1)


def build(cfg: Any, binarized: bool = False) -> Likelihood:
    return ContinuousBernoulliLikelihood()

"""``loss=beta_tcvae``: the ELBO's KL split into three parts, each with its weight (Chen et al., 2018).

    KL(q(z|x) || p(z)) averaged over the data
        = MI(x; z)                       E[log q(z|x) - log q(z)]            (index-code mutual information)
        + TC(z)                          E[log q(z) - sum_d log q(z_d)]      (total correlation)
        + dimension-wise KL              E[sum_d log q(z_d) - log p(z)]
    loss = recon + alpha * MI + beta * TC + gamma * dimension-wise KL

q(z) = 1/N sum_n q(z|x_n) is estimated on the minibatch, for each sample z_i of the batch:

- ``mws`` (minibatch-weighted sampling): q(z_i) ~ 1/(N B) sum_j q(z_i | x_j). N (the training-set size) only
  shifts MI, TC and the dimension-wise KL by constants here, but without it the logged TC is off (negative).
- ``mss`` (minibatch-stratified sampling): q(z_i) ~ sum_j W_ij q(z_i | x_j) with, for M = B - 1 other images,
  W_ii = 1/N (z_i's own posterior, known exactly), one other entry per row (N - M)/(N M) (the stratum of the
  images that are in no batch slot) and the remaining M - 1 entries 1/M. Each row sums to 1. The "other"
  entry is the next image, cyclically: (i, i + 1 mod B). Here N changes the gradients.

With alpha = beta = gamma = 1 the three parts add back to log q(z|x) - log p(z) exactly (a one-sample KL), with
either estimator, since the estimates of log q(z) and sum_d log q(z_d) cancel.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vae_cli.config.objectives import TCEstimator
from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms, elbo_terms, no_autocast
from vae_cli.objectives.minibatch_densities import minibatch_densities


def stratified_log_weights(batch_size: int, dataset_size: int, device=None) -> torch.Tensor:
    """log W ``[B, B]`` of minibatch-stratified sampling (module docstring); rows sum to 1. A batch larger than the
    training set (evaluation of a tiny one) is treated as the whole set: N = B."""
    n, m = max(dataset_size, batch_size), batch_size - 1
    w = torch.full((batch_size, batch_size), 1.0 / m, dtype=torch.float64)
    rows = torch.arange(batch_size)
    w[rows, (rows + 1) % batch_size] = (n - m) / (n * m)
    w[rows, rows] = 1.0 / n
    return w.log().float().to(device)


def estimator_log_weights(
    batch_size: int, dataset_size: int, estimator: TCEstimator, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """log W ``[B, B]`` of either estimator."""
    if estimator == TCEstimator.mss and batch_size > 2:
        return stratified_log_weights(batch_size, dataset_size, device).to(dtype)
    # Minibatch-weighted sampling: every pair weighs 1 / (N B).
    return torch.full((batch_size, batch_size), -math.log(dataset_size * batch_size), device=device, dtype=dtype)


def log_q_estimates(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    dataset_size: int,
    estimator: TCEstimator,
    log_w: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log q(z_i|x_i), log q(z_i), sum_d log q(z_id))`` per sample ``[B]``, from the batch's posteriors (``log_w``:
    the estimator's weights for this batch size when the caller keeps them)."""
    if log_w is None:
        log_w = estimator_log_weights(z.shape[0], int(dataset_size), TCEstimator(estimator), z.device, z.dtype)
    return minibatch_densities(z, mu, logvar, log_w)


class BetaTCVAE(Objective):
    terms = ("loss", "recon", "kl", "elbo", "mi", "tc", "dwkl")

    def __init__(self, cfg: Any, context: ObjectiveContext) -> None:
        super().__init__()
        self.alpha, self.beta, self.gamma = float(cfg.alpha), float(cfg.beta), float(cfg.gamma)
        self.estimator = TCEstimator(cfg.estimator)
        self.dataset_size = int(context.train_size)
        # log W per (batch size, device): made once, shared by the step's batches (the last, smaller batch of an
        # epoch adds a second one). A dict on the objective rather than an lru_cache, which torch.compile warns about.
        self._log_weights: dict[tuple[int, torch.device], torch.Tensor] = {}

    def log_weights(self, batch_size: int, device: torch.device) -> torch.Tensor:
        key = (batch_size, device)
        if key not in self._log_weights:
            self._log_weights[key] = estimator_log_weights(
                batch_size, self.dataset_size, self.estimator, device, torch.float32
            )
        return self._log_weights[key]

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        out = model(x, y)
        terms = elbo_terms(model, x, out)
        with no_autocast(out.z):
            z = out.z.float()
            own, log_qz, log_marginals = log_q_estimates(
                z,
                out.mu.float(),
                out.logvar.float(),
                self.dataset_size,
                self.estimator,
                self.log_weights(z.shape[0], z.device),
            )
            log_pz = model.prior.log_prob(out.z.float())
        mi, tc, dwkl = (own - log_qz).mean(), (log_qz - log_marginals).mean(), (log_marginals - log_pz).mean()
        loss = terms["recon"] + self.alpha * mi + self.beta * tc + self.gamma * dwkl
        return {"loss": loss, **terms, "mi": mi, "tc": tc, "dwkl": dwkl}

"""How good is a trained VAE: ELBO, importance-weighted log-likelihood, active units, KL per latent dimension.

Everything is per image, in nats. The importance-weighted estimate (Burda et al., 2016) is

    log p(x) ~= log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x),    z_k ~ q(z | x),

a lower bound in expectation that tightens as K grows (K = 1 is a one-sample ELBO), with p(z) the model's own prior
(N(0, I), a VampPrior, a mixture) and, for a CVAE, every density conditioned on the label: log p(x | y). It is
computed with ``logsumexp`` over the K log-weights, so weights of e^-5000 do not underflow. The K samples of one batch of images
are drawn at once and decoded in chunks, so the numbers do not depend on the chunk size (only on the seed and the
image batch size).

bits/dim = nll / (num_pixels * ln 2). With the Bernoulli likelihood on [0, 1] grey levels (the classic VAE setup
used here), the "likelihood" is a cross-entropy against soft targets, not the probability of a discrete 8-bit
image, so these bits/dim compare only with other models trained and evaluated the same way, not with the
8-bit bits/dim of PixelCNN-style papers. With the Gaussian likelihood it is a density on [0, 1]-scaled pixels
(it can be negative); add 8 to read it on the 0-255 scale.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch

from vae_cli.datasets import Batch
from vae_cli.models.vae import VAE

# Burda et al. (2016): a latent unit is active when the variance over the data of its posterior mean exceeds this.
ACTIVE_UNIT_THRESHOLD = 1e-2
# Images decoded in one call: bounds memory (K * batch decoder outputs) while keeping the matmuls large.
DEFAULT_MAX_DECODE = 16384

_LOG_2PI = math.log(2 * math.pi)


@dataclass
class IWBatch:
    """Per-image results of one batch: ``[B]`` tensors."""

    log_px: torch.Tensor  # importance-weighted estimate of log p(x)
    log_px_given_z: torch.Tensor  # mean over the K samples of log p(x | z_k): a K-sample reconstruction term
    kl: torch.Tensor  # KL(q(z|x) || p(z)): closed form for N(0, I), else the mean of log q - log p over the K samples
    mu: torch.Tensor  # [B, D]
    logvar: torch.Tensor  # [B, D]


@dataclass
class EvalResult:
    """One split's numbers; ``to_dict`` is what ``eval.json`` stores."""

    split: str
    num_images: int
    k: int
    elbo: float  # -(recon + kl), higher is better
    recon: float  # -E_q[log p(x|z)], K-sample estimate
    kl: float  # KL(q(z|x) || p(z)): closed form for the normal prior, else a K-sample estimate
    log_px_iw: float  # importance-weighted log p(x) estimate (IW-K), higher is better
    nll_iw: float  # -log_px_iw
    bits_per_dim: float  # nll_iw / (num_pixels * ln 2); see the module docstring for what it means here
    num_pixels: int
    active_units: int
    active_threshold: float
    kl_per_dim: list[float] | None  # mean KL of each latent dimension (sums to kl); None without a closed form
    mu_variance: list[float]  # variance over the data of each dimension's posterior mean (the AU statistic)
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def bits_per_dim(nll_nats: float, num_pixels: int) -> float:
    return nll_nats / (num_pixels * math.log(2))


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) of each latent dimension, ``[B, D]``."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)


def log_diag_normal(eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(sigma^2)) for z = mu + sigma * eps, written with eps so no division by sigma is needed."""
    return -0.5 * (eps.pow(2) + logvar + _LOG_2PI).sum(dim=-1)


@torch.no_grad()
def importance_weighted_batch(
    model: VAE,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator,
    max_decode: int = DEFAULT_MAX_DECODE,
    y: torch.Tensor | None = None,
) -> IWBatch:
    """IW-K estimate of log p(x) (log p(x | y) for a CVAE) for each image of ``x`` (float, on the model's device)."""
    b = x.shape[0]
    mu, logvar = model.encode(x, y)
    mu, logvar = mu.float(), logvar.float()
    # All K x B noise draws at once: the result is then independent of how the decoding is chunked.
    eps = torch.randn((k, *mu.shape), generator=generator, device=generator.device).to(mu.device)
    log_w = torch.empty(k, b, device=mu.device)
    log_lik = torch.empty(k, b, device=mu.device)
    log_ratio = torch.empty(k, b, device=mu.device)  # log q(z_k|x) - log p(z_k)
    chunk = max(1, max_decode // b)
    for start in range(0, k, chunk):
        e = eps[start : start + chunk]  # [kc, B, D]
        kc = e.shape[0]
        z = mu + torch.exp(0.5 * logvar) * e
        y_rep = None if y is None else y.repeat(kc)
        params = model.decode(z.reshape(kc * b, -1).to(x.dtype), y_rep)
        x_rep = x.unsqueeze(0).expand(kc, *x.shape).reshape(kc * b, *x.shape[1:])
        ll = model.likelihood.log_prob(x_rep, params).float().view(kc, b)
        ratio = log_diag_normal(e, logvar) - model.prior.log_prob(z)
        log_lik[start : start + kc] = ll
        log_ratio[start : start + kc] = ratio
        log_w[start : start + kc] = ll - ratio
    log_px = torch.logsumexp(log_w, dim=0) - math.log(k)
    closed = model.prior.kl_per_dim(mu, logvar)
    kl = closed.sum(dim=1) if closed is not None else log_ratio.mean(dim=0)
    return IWBatch(log_px=log_px, log_px_given_z=log_lik.mean(dim=0), kl=kl, mu=mu, logvar=logvar)


def default_batch_size(k: int, max_decode: int = DEFAULT_MAX_DECODE, cap: int = 256) -> int:
    """Images per batch so that one batch's K samples fill about one decode call."""
    return max(1, min(cap, max_decode // max(1, k)))


@torch.no_grad()
def evaluate_images(
    model: VAE,
    batches: Iterable[Batch],
    k: int,
    seed: int = 0,
    split: str = "test",
    max_decode: int = DEFAULT_MAX_DECODE,
    progress: Callable[[Iterable[Batch]], Iterable[Batch]] | None = None,
) -> EvalResult:
    """Every number of ``EvalResult`` over ``(images in [0, 1], labels)`` batches (the model is put in eval mode;
    the labels are used by a CVAE only)."""
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    log_px, log_lik, kl, mus, kl_dims = [], [], [], [], []
    num_pixels = 0
    for x, y in progress(batches) if progress is not None else batches:
        x = x.to(device)
        num_pixels = x[0].numel()
        out = importance_weighted_batch(
            model, x, k, generator, max_decode, y=y.to(device) if model.conditional else None
        )
        log_px.append(out.log_px)
        log_lik.append(out.log_px_given_z)
        kl.append(out.kl)
        mus.append(out.mu)
        closed = model.prior.kl_per_dim(out.mu, out.logvar)
        if closed is not None:
            kl_dims.append(closed.sum(dim=0))
    model.train(was_training)
    if not log_px:
        raise ValueError("evaluate_images got no images")
    all_log_px, all_log_lik, all_kl = torch.cat(log_px), torch.cat(log_lik), torch.cat(kl)
    n = all_log_px.shape[0]
    mu = torch.cat(mus).double()
    # Population variance of the posterior means: Burda's Cov_x(E_q[z]) per dimension.
    mu_var = mu.var(dim=0, unbiased=False) if n > 1 else torch.zeros(mu.shape[1], dtype=mu.dtype)
    kl_per_dim = (torch.stack(kl_dims).sum(dim=0) / n).tolist() if kl_dims else None
    recon = -all_log_lik.double().mean().item()
    kl_mean = all_kl.double().mean().item()
    nll = -all_log_px.double().mean().item()
    return EvalResult(
        split=split,
        num_images=n,
        k=k,
        elbo=-(recon + kl_mean),
        recon=recon,
        kl=kl_mean,
        log_px_iw=-nll,
        nll_iw=nll,
        bits_per_dim=bits_per_dim(nll, num_pixels),
        num_pixels=num_pixels,
        active_units=int((mu_var > ACTIVE_UNIT_THRESHOLD).sum().item()),
        active_threshold=ACTIVE_UNIT_THRESHOLD,
        kl_per_dim=kl_per_dim,
        mu_variance=mu_var.tolist(),
        seconds=round(time.perf_counter() - started, 3),
    )

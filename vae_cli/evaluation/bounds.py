"""How good is a trained VAE: ELBO, importance-weighted log-likelihood, active units, KL per latent dimension.

Everything is per image, in nats. The importance-weighted estimate (Burda et al., 2016) is

    log p(x) ~= log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x),    z_k ~ q(z | x),

a lower bound in expectation that tightens as K grows (K = 1 is a one-sample ELBO), with p(z) the model's own prior
(N(0, I), a VampPrior, a mixture) and, for a CVAE, every density conditioned on the label: log p(x | y). It is
computed with ``logsumexp`` over the K log-weights, so weights of e^-5000 do not underflow. The K samples of one batch of images
are drawn at once and decoded in chunks, so the numbers do not depend on the chunk size (only on the seed and the
image batch size).

bits/dim follows what the likelihood's -log p(x|z) measures (``Likelihood.measures``, docs/evaluate.md):

- a probability of the data's discrete values (Bernoulli on binarized pixels, the discretized logistic mixture on
  8-bit levels): nll / (D ln 2);
- a density on [0, 1]-scaled pixels (Gaussian, continuous Bernoulli): nll / (D ln 2) + log2(255), the density on
  the 0-255 scale, where a level is 1 wide: the literature's "+8", whose pixels are scaled by 1/256 rather than the
  1/255 used here (with uniform dequantization, an upper bound on the discrete bits/dim);
- a cross-entropy (Bernoulli on grey levels, the classic VAE): nll / (D ln 2) of it, comparable only with runs that
  do the same.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from vae_cli.datasets.batches import Batch
from vae_cli.models.layout import input_layout
from vae_cli.models.likelihoods.base import Measures
from vae_cli.models.protocol import CodeGridModel, Model

# Burda et al. (2016): a latent unit is active when the variance over the data of its posterior mean exceeds this.
ACTIVE_UNIT_THRESHOLD = 1e-2
# Images decoded in one call: bounds memory (K * batch decoder outputs) while keeping the matmuls large.
DEFAULT_MAX_DECODE = 16384
# max_decode counts samples of a 28x28 grey image whose likelihood has one parameter per pixel (784 decoder outputs
# each); images with more outputs per sample decode proportionally fewer samples per call, so one call's tensors stay
# about the same size (a 32x32 RGB image under a 10-component logistic mixture has 130x as many: 16384 of them at once
# took 23 GB).
REFERENCE_OUTPUTS = 784

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
    kl_per_layer: dict[str, float] | None  # a hierarchical model's KL of each layer (one posterior sample)
    codebook: dict[str, object] | None  # a VQ-VAE's code usage on the split (codebook_statistics)
    mu_variance: list[float]  # variance over the data of each dimension's posterior mean (the AU statistic)
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# A density on pixels v / 255 in [0, 1], read on the 0-255 scale (levels 1 apart): + log2(255) bits per dimension.
DENSITY_TO_8_BIT = math.log2(255)


def bits_per_dim(nll_nats: float, num_pixels: int, measures: Measures = Measures.probability) -> float:
    """nll / (D ln 2); for a density on [0, 1], + log2(255): the same density per level on the 0-255 scale."""
    bits = nll_nats / (num_pixels * math.log(2))
    return bits + DENSITY_TO_8_BIT if Measures(measures) == Measures.density else bits


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) of each latent dimension, ``[B, D]``."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)


def log_diag_normal(eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(sigma^2)) for z = mu + sigma * eps, written with eps so no division by sigma is needed."""
    return -0.5 * (eps.pow(2) + logvar + _LOG_2PI).sum(dim=-1)


@torch.no_grad()
def importance_weighted_batch(
    model: Model,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator,
    max_decode: int = DEFAULT_MAX_DECODE,
    y: torch.Tensor | None = None,
) -> IWBatch:
    """IW-K estimate of log p(x) (log p(x | y) for a CVAE) for each image of ``x`` (float, on the model's device);
    a hierarchical model's log-weights chain its layers' conditionals (``model.log_weights``)."""
    b = x.shape[0]
    # All K x B noise draws at once: the result is then independent of how the decoding is chunked.
    eps = torch.randn((k, b, model.latent_dim), generator=generator, device=generator.device).to(x.device)
    log_w = torch.empty(k, b, device=x.device)
    log_lik = torch.empty(k, b, device=x.device)
    log_ratio = torch.empty(k, b, device=x.device)  # log q(z_k|x) - log p(z_k)
    outputs = model.likelihood.param_channels(x.shape[1]) * x[0, 0].numel()
    chunk = max(1, max_decode * REFERENCE_OUTPUTS // outputs // b)
    for start in range(0, k, chunk):
        e = eps[start : start + chunk]  # [kc, B, D]
        ll, log_pz, log_qz, _ = model.log_weights(x, y, e, generator=generator)
        kc = e.shape[0]
        log_lik[start : start + kc] = ll.float()
        log_ratio[start : start + kc] = log_qz.float() - log_pz.float()
        log_w[start : start + kc] = ll.float() - log_ratio[start : start + kc]
    log_px = torch.logsumexp(log_w, dim=0) - math.log(k)
    mu, logvar = model.encode(x, y)
    mu, logvar = mu.float(), logvar.float()
    closed = model.closed_form_kl_per_dim(mu, logvar)
    kl = closed.sum(dim=1) if closed is not None else log_ratio.mean(dim=0)
    return IWBatch(log_px=log_px, log_px_given_z=log_lik.mean(dim=0), kl=kl, mu=mu, logvar=logvar)


def codebook_statistics(counts: torch.Tensor) -> dict[str, object]:
    """Code usage over a split: the perplexity exp(H) of the code frequencies (K when every code is used equally,
    1 when one code takes everything), the fraction of codes used at all, and the bits per code of the uniform prior
    against the frequencies' own entropy."""
    total = counts.sum()
    probs = counts / total
    entropy = -(probs[probs > 0] * torch.log(probs[probs > 0])).sum().item()
    return {
        "perplexity": math.exp(entropy),
        "codes_used": int((counts > 0).sum().item()),
        "codebook_size": int(counts.numel()),
        "fraction_used": float((counts > 0).double().mean().item()),
        "entropy_bits_per_code": entropy / math.log(2),
        "counts": [int(c) for c in counts.tolist()],
    }


def default_batch_size(k: int, max_decode: int = DEFAULT_MAX_DECODE, cap: int = 256) -> int:
    """Images per batch so that one batch's K samples fill about one decode call."""
    return max(1, min(cap, max_decode // max(1, k)))


@torch.no_grad()
def evaluate_images(
    model: Model,
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
    if getattr(model, "deterministic_posterior", False):
        k = 1  # one point of posterior mass: the importance-weighted estimate is the ELBO for every K
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    layout = input_layout(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    log_px, log_lik, kl, mus, kl_dims, kl_layers = [], [], [], [], [], []
    code_counts = None
    num_pixels = 0
    for x, y in progress(batches) if progress is not None else batches:
        x = x.to(device).contiguous(memory_format=layout)
        num_pixels = x[0].numel()
        out = importance_weighted_batch(
            model, x, k, generator, max_decode, y=y.to(device) if model.conditional else None
        )
        log_px.append(out.log_px)
        log_lik.append(out.log_px_given_z)
        kl.append(out.kl)
        mus.append(out.mu)
        closed = model.closed_form_kl_per_dim(out.mu, out.logvar)
        if closed is not None:
            kl_dims.append(closed.sum(dim=0))
        if model.layer_names:
            one = model(x, y.to(device) if model.conditional else None)
            kl_layers.append(model.kl_layers(one).double().sum(dim=0))
        if isinstance(model, CodeGridModel):  # a VQ-VAE: how the split uses the codebook
            counts = torch.bincount(model.codes(x).flatten(), minlength=model.codebook_size).double()
            code_counts = counts if code_counts is None else code_counts + counts
    model.train(was_training)
    if not log_px:
        raise ValueError("evaluate_images got no images")
    all_log_px, all_log_lik, all_kl = torch.cat(log_px), torch.cat(log_lik), torch.cat(kl)
    n = all_log_px.shape[0]
    mu = torch.cat(mus).double()
    # Population variance of the posterior means: Burda's Cov_x(E_q[z]) per dimension.
    mu_var = mu.var(dim=0, unbiased=False) if n > 1 else torch.zeros(mu.shape[1], dtype=mu.dtype)
    kl_per_dim = (torch.stack(kl_dims).sum(dim=0) / n).tolist() if kl_dims else None
    per_layer = (torch.stack(kl_layers).sum(dim=0) / n).tolist() if kl_layers else None
    kl_per_layer = dict(zip(model.layer_names, per_layer, strict=True)) if per_layer is not None else None
    codebook = codebook_statistics(code_counts) if code_counts is not None else None
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
        bits_per_dim=bits_per_dim(nll, num_pixels, model.likelihood.measures),
        num_pixels=num_pixels,
        active_units=int((mu_var > ACTIVE_UNIT_THRESHOLD).sum().item()),
        active_threshold=ACTIVE_UNIT_THRESHOLD,
        kl_per_dim=kl_per_dim,
        kl_per_layer=kl_per_layer,
        codebook=codebook,
        mu_variance=mu_var.tolist(),
        seconds=round(time.perf_counter() - started, 3),
    )


def bits_per_dim_note(cfg: Any, measures: Measures) -> str:
    """What a run's bits/dim means (eval.json's ``bits_per_dim_note``), from what its likelihood measures
    (``measures``) and its config ``cfg`` (the likelihood's name, the binarization)."""
    likelihood = str(getattr(cfg.likelihood.name, "value", cfg.likelihood.name))
    binarize = str(getattr(cfg.dataset, "binarize", "none")).split(".")[-1]
    if measures == Measures.cross_entropy:
        return (
            "Bernoulli likelihood on [0, 1] grey levels: a cross-entropy against soft targets, not a likelihood; "
            "comparable only with models evaluated the same way, not with 8-bit discrete bits/dim. Use "
            "dataset.binarize=dynamic (binary data) or likelihood=continuous_bernoulli (a density on grey levels)."
        )
    if measures == Measures.density:
        return (
            f"{likelihood} density on [0, 1]-scaled pixels (v / 255); bits/dim is read on the 0-255 scale, "
            f"nll / (D ln 2) + log2(255) (the literature's +8, whose pixels are scaled by 1/256): an upper bound on "
            f"the 8-bit discrete bits/dim when the data are uniformly dequantized (dataset.dequantize=true)."
        )
    if likelihood == "bernoulli":
        return (
            f"Bernoulli likelihood on binarized pixels (dataset.binarize={binarize}): a proper discrete "
            f"likelihood, bits per binary pixel, comparable with binarized-data results that binarize the same way."
        )
    return (
        f"{likelihood}: a probability of the 8-bit pixel values, bits/dim = nll / (D ln 2), comparable with the "
        f"discrete bits/dim of the literature (e.g. CIFAR-10)."
    )

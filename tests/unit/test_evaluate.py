"""The IW estimator against a linear-Gaussian VAE, whose log p(x) and posterior are known in closed form."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from vae_cli.evaluation.bounds import (
    ACTIVE_UNIT_THRESHOLD,
    bits_per_dim,
    evaluate_images,
    importance_weighted_batch,
)
from vae_cli.models.likelihoods.base import Measures
from vae_cli.models.likelihoods.bernoulli import BernoulliLikelihood
from vae_cli.models.likelihoods.gaussian import GaussianLikelihood
from vae_cli.models.priors import StandardNormal
from vae_cli.models.vae import VAE

SHAPE = (1, 2, 3)  # 6 "pixels"
D, LATENT, SIGMA = 6, 2, 0.3


class LinearEncoder(nn.Module):
    """q(z|x) = N(A (x - b), diag(exp(logvar))) with fixed A, b, logvar."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, logvar: torch.Tensor) -> None:
        super().__init__()
        self.a, self.b, self.lv = nn.Parameter(a), nn.Parameter(b), nn.Parameter(logvar)

    def forward(self, x):
        mu = (x.flatten(1) - self.b) @ self.a.T
        return mu, self.lv.expand_as(mu)


class LinearDecoder(nn.Module):
    def __init__(self, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.w, self.b = nn.Parameter(w), nn.Parameter(b)

    def forward(self, z):
        return (z @ self.w.T + self.b).view(-1, *SHAPE)


def linear_gaussian(mean_scale: float = 1.0, var_scale: float = 1.0):
    """W with orthogonal columns, so the exact posterior has a diagonal covariance and fits the encoder family."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, LATENT, generator=g, dtype=torch.float64))
    s = torch.tensor([2.0, 0.7], dtype=torch.float64)
    w = q * s  # W^T W = diag(s^2)
    b = torch.rand(D, generator=g, dtype=torch.float64)
    post_var = SIGMA**2 / (s**2 + SIGMA**2)
    a = (s / (s**2 + SIGMA**2))[:, None] * q.T  # posterior mean = A (x - b)
    enc = LinearEncoder((mean_scale * a).float(), b.float(), torch.log(var_scale * post_var).float())
    model = VAE(enc, LinearDecoder(w.float(), b.float()), LATENT, StandardNormal(LATENT), GaussianLikelihood(SIGMA))
    return model, w, b, a * mean_scale, post_var * var_scale


def exact_log_px(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cov = w @ w.T + SIGMA**2 * torch.eye(D, dtype=torch.float64)
    dist = torch.distributions.MultivariateNormal(b, covariance_matrix=cov)
    return dist.log_prob(x.flatten(1).double())


def data(n: int, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(n, LATENT, generator=g, dtype=torch.float64)
    x = z @ w.T + b + SIGMA * torch.randn(n, D, generator=g, dtype=torch.float64)
    return x.float().view(n, *SHAPE)


def labelled(*batches: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, torch.full((x.shape[0],), -1)) for x in batches]


@pytest.mark.parametrize("k", [1, 7, 64])
def test_with_the_exact_posterior_every_k_gives_the_exact_log_likelihood(k):
    model, w, b, _, _ = linear_gaussian()
    x = data(50, w, b)
    out = importance_weighted_batch(model, x, k, torch.Generator().manual_seed(2))
    torch.testing.assert_close(out.log_px.double(), exact_log_px(x, w, b), atol=2e-4, rtol=0)


def test_with_a_worse_posterior_iw_k_rises_with_k_towards_log_px_and_stays_above_the_elbo():
    model, w, b, _, _ = linear_gaussian(mean_scale=0.6, var_scale=2.5)
    x = data(400, w, b)
    truth = exact_log_px(x, w, b).mean().item()
    batches = [x[:200], x[200:]]
    results = {k: evaluate_images(model, labelled(*batches), k=k, seed=3) for k in (1, 10, 100, 1000)}
    iw = [results[k].log_px_iw for k in (1, 10, 100, 1000)]
    assert all(a < b_ for a, b_ in itertools.pairwise(iw)), iw
    assert iw[-1] <= truth + 1e-3 and truth - iw[-1] < 0.1 * (truth - iw[0]), (iw, truth)
    elbo = results[1000].elbo
    assert elbo < iw[1] and truth - elbo > 0.5  # the posterior really is off: the bound has a real gap


def test_elbo_terms_match_their_closed_forms():
    """E_q[log p(x|z)] of a linear-Gaussian decoder has a closed form; the K-sample recon must approach it."""
    model, w, b, a, post_var = linear_gaussian(mean_scale=0.8, var_scale=1.5)
    x = data(300, w, b)
    res = evaluate_images(model, labelled(x), k=2000, seed=4)
    xf = x.flatten(1).double()
    m = (xf - b) @ a.T  # posterior means [N, d]
    resid = xf - b - m @ w.T
    trace = (w.pow(2) * post_var).sum()  # tr(W S W^T), S diagonal
    exact_ll = -0.5 / SIGMA**2 * (resid.pow(2).sum(1) + trace) - D * math.log(SIGMA) - 0.5 * D * math.log(2 * math.pi)
    kl_dims = 0.5 * (m.pow(2) + post_var - 1 - torch.log(post_var))
    assert res.recon == pytest.approx(-exact_ll.mean().item(), abs=0.02)
    assert res.kl_per_dim == pytest.approx(kl_dims.mean(0).tolist(), rel=1e-5)
    assert res.kl == pytest.approx(kl_dims.sum(1).mean().item(), rel=1e-5)
    assert res.elbo == pytest.approx(-(res.recon + res.kl))
    assert res.mu_variance == pytest.approx(m.var(0, unbiased=False).tolist(), rel=1e-4)
    assert res.num_images == 300 and res.num_pixels == D and res.k == 2000
    # A Gaussian is a density on [0, 1] (pixels v / 255): on the 0-255 scale it adds log2(255) bits per dimension.
    assert res.bits_per_dim == pytest.approx(res.nll_iw / (D * math.log(2)) + math.log2(255))


def test_active_units_follow_burdas_variance_criterion():
    model, w, b, _, _ = linear_gaussian()
    with torch.no_grad():
        model.encoder.a[1] *= 1e-3  # dimension 1's mean barely moves with x: inactive
    x = data(200, w, b)
    res = evaluate_images(model, labelled(x), k=2, seed=0)
    assert res.mu_variance[0] > ACTIVE_UNIT_THRESHOLD > res.mu_variance[1]
    assert res.active_units == 1


def decode_calls(model: VAE) -> list[int]:
    """Records the samples (K chunk x images) of each decode call the IW estimate makes."""
    calls: list[int] = []
    inner = model.log_weights

    def recording(x, y, eps, **kwargs):
        calls.append(eps.shape[0] * eps.shape[1])
        return inner(x, y, eps, **kwargs)

    model.log_weights = recording
    return calls


def test_result_does_not_depend_on_decode_chunking():
    model, w, b, _, _ = linear_gaussian(mean_scale=0.5)
    x = data(30, w, b)
    whole = importance_weighted_batch(model, x, 50, torch.Generator().manual_seed(5), max_decode=10_000)
    calls = decode_calls(model)
    chunked = importance_weighted_batch(model, x, 50, torch.Generator().manual_seed(5), max_decode=1)
    assert len(calls) > 1
    torch.testing.assert_close(whole.log_px, chunked.log_px)
    torch.testing.assert_close(whole.log_px_given_z, chunked.log_px_given_z)


def test_a_decode_call_holds_fewer_samples_the_more_outputs_each_has():
    # max_decode counts 784-output samples: this model's samples have D outputs, a 100-parameter-per-pixel
    # likelihood's 100 D.
    model, w, b, _, _ = linear_gaussian()
    x = data(4, w, b)
    calls = decode_calls(model)
    importance_weighted_batch(model, x, 1000, torch.Generator().manual_seed(0), max_decode=4)
    assert max(calls) <= 4 * 784 // D and max(calls) > 4 * 784 // D - 4  # whole K chunks of the 4 images
    calls.clear()
    model.likelihood.param_channels = lambda channels: 100 * channels
    importance_weighted_batch(model, x, 1000, torch.Generator().manual_seed(0), max_decode=4)
    assert max(calls) <= 4 * 784 // (100 * D)


def test_tiny_weights_do_not_underflow_and_match_a_float64_reference():
    """Log-weights around -1e4 (a confident, wrong Bernoulli decoder) must give the right finite estimate."""
    model, _, _, _, _ = linear_gaussian()
    with torch.no_grad():
        model.decoder.w.mul_(500.0)
        model.decoder.b.fill_(-500.0)
    model.likelihood = BernoulliLikelihood()
    x = torch.ones(8, *SHAPE)
    k = 100
    out = importance_weighted_batch(model, x, k, torch.Generator().manual_seed(0))
    assert torch.isfinite(out.log_px).all() and (out.log_px < -1000).all()
    # Reference: the same noise, every term in float64, written out from the definitions.
    eps = torch.randn((k, 8, LATENT), generator=torch.Generator().manual_seed(0)).double()
    enc, dec = model.encoder, model.decoder
    mu = (x.flatten(1).double() - enc.b.double()) @ enc.a.double().T
    lv = enc.lv.double()
    z = mu + torch.exp(0.5 * lv) * eps
    logits = z @ dec.w.double().T + dec.b.double()
    log_lik = -torch.nn.functional.softplus(-logits).sum(-1)  # x = 1: log sigmoid(logits)
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_q = torch.distributions.Normal(mu, torch.exp(0.5 * lv)).log_prob(z).sum(-1)
    ref = torch.logsumexp(log_lik + log_prior - log_q, dim=0) - math.log(k)
    torch.testing.assert_close(out.log_px.double(), ref, rtol=1e-5, atol=0.05)


def test_bits_per_dim_is_nats_over_pixels_times_ln2():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert bits_per_dim(100.0, 784) == pytest.approx(100 / (784 * 0.6931471805599453))
    # A density on [0, 1]-scaled pixels, read on the 0-255 scale: + log2(255) per dimension.
    assert bits_per_dim(784 * math.log(2), 784, Measures.density) == pytest.approx(1 + 7.994353436858858)
    assert bits_per_dim(784 * math.log(2), 784, Measures.cross_entropy) == pytest.approx(1.0)


@pytest.mark.parametrize("arch", ["conv", "resnet", "hvae"])
def test_evaluation_in_nhwc_gives_the_nchw_numbers(arch):
    # vae-eval loads a convolutional model in NHWC (models/layout.py: the faster layout for its fp32 passes too) and
    # evaluate_images gives the images the model's layout: the same estimates as the NCHW model, to fp32 rounding.
    from tests.conftest import model_config
    from vae_cli.config.architectures import ConvConfig, HVAEConfig, ResNetConfig
    from vae_cli.models.build import build_model
    from vae_cli.models.layout import input_layout, to_channels_last

    cfg = {
        "conv": ConvConfig(latent_dim=4),
        "resnet": ResNetConfig(latent_dim=4, widths=[4, 8], blocks=1),
        "hvae": HVAEConfig(layers=2, latent_channels=2, widths=[4, 8], blocks=1),
    }[arch]
    torch.manual_seed(0)
    model = build_model(model_config(cfg), (1, 28, 28))
    for p in model.parameters():  # away from the zero-initialized residual branches
        p.data.add_(torch.randn(p.shape) * 0.05)
    images = (torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    batches = [(images[:6], torch.full((6,), -1)), (images[6:], torch.full((6,), -1))]
    assert input_layout(model) == torch.contiguous_format
    want = evaluate_images(model, batches, k=8, seed=3)
    assert to_channels_last(model) and input_layout(model) == torch.channels_last
    got = evaluate_images(model, batches, k=8, seed=3)
    assert got.nll_iw == pytest.approx(want.nll_iw, rel=1e-5)
    assert got.recon == pytest.approx(want.recon, rel=1e-5) and got.kl == pytest.approx(want.kl, rel=1e-4, abs=1e-5)

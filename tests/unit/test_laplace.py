"""likelihood=laplace against torch.distributions.Laplace: the log-density (fixed and learned scale), the mean and
the samples' spread, and its checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Laplace

from tests.conftest import compose_config, model_config
from vae_cli.config.architectures import MLPConfig
from vae_cli.config.likelihoods import LaplaceLikelihoodConfig
from vae_cli.config.validate import validate
from vae_cli.models.build import build_likelihood, build_model
from vae_cli.models.likelihoods.base import Measures
from vae_cli.process.errors import ConfigError


def test_fixed_scale_log_prob_is_torch_distributions_laplace():
    lik = build_likelihood(LaplaceLikelihoodConfig(scale="0.07"))
    x, mean = torch.rand(4, 1, 5, 5), torch.randn(4, 1, 5, 5)
    expected = Laplace(mean, 0.07).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(lik.log_prob(x, mean), expected, rtol=1e-6, atol=1e-4)
    assert lik.param_channels(3) == 3 and lik.measures == Measures.density


def test_learned_scale_comes_from_the_decoder_and_is_bounded_below():
    lik = build_likelihood(LaplaceLikelihoodConfig(scale="learned", min_scale=0.01))
    assert lik.param_channels(3) == 6
    mean, raw = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4) * 5
    params = torch.cat([mean, raw], dim=1)
    _, b = lik.mean_and_scale(params)
    assert (b >= 0.01).all()
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(lik.log_prob(x, params), Laplace(mean, b).log_prob(x).flatten(1).sum(1))
    # A decoder output of 0 starts at b = 0.1.
    _, b0 = lik.mean_and_scale(torch.zeros(1, 6, 2, 2))
    torch.testing.assert_close(b0, torch.full((1, 3, 2, 2), 0.1))


def test_mean_and_samples_follow_the_distribution():
    lik = build_likelihood(LaplaceLikelihoodConfig(scale="0.05"))
    mean = torch.full((20_000, 1, 1, 1), 0.5)
    draws = lik.sample(mean, torch.Generator().manual_seed(0))
    assert lik.mean(mean).unique().tolist() == [0.5]
    assert draws.mean().item() == pytest.approx(0.5, abs=2e-3)
    # E|x - mean| = b for a Laplace (clamping to [0, 1] does not reach these draws).
    assert (draws - 0.5).abs().mean().item() == pytest.approx(0.05, rel=0.03)


def test_a_model_with_a_laplace_likelihood_trains_a_finite_gradient():
    torch.manual_seed(0)
    cfg = model_config(MLPConfig(latent_dim=2, hidden_dims=[8]), likelihood=LaplaceLikelihoodConfig(scale="learned"))
    model = build_model(cfg, (1, 6, 6))
    x = torch.rand(4, 1, 6, 6)
    out = model(x)
    loss = -model.likelihood.log_prob(x, out.params).mean() + model.kl(out).mean()
    loss.backward()
    assert math.isfinite(loss.item()) and all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["likelihood.scale=0"], r"likelihood\.scale must be in \[0\.001, 10\]"),
        (["likelihood.scale=wide"], r"likelihood\.scale must be a number \(a fixed b\) or learned"),
        (["likelihood.min_scale=2"], r"likelihood\.min_scale must be in"),
    ],
)
def test_bad_scales_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(["likelihood=laplace", *overrides]))

"""Likelihoods and the closed-form KL against torch.distributions; the ELBO's weights (beta, recon weight, KL
warm-up) against their definitions."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from tests.conftest import model_config
from vae_cli.config.architectures import MLPConfig
from vae_cli.config.objectives import ELBOConfig
from vae_cli.models.build import build_model
from vae_cli.models.likelihoods.bernoulli import BernoulliLikelihood
from vae_cli.models.likelihoods.gaussian import GaussianLikelihood
from vae_cli.models.priors import StandardNormal
from vae_cli.models.vae import VAE
from vae_cli.objectives.base import ObjectiveContext
from vae_cli.objectives.elbo import ELBO


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(16, 8, generator=g) * 2
    logvar = torch.randn(16, 8, generator=g)
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = kl_divergence(q, p).sum(dim=1)
    torch.testing.assert_close(StandardNormal(8).kl(mu, logvar), expected, rtol=1e-5, atol=1e-5)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(3, 5)
    prior = StandardNormal(5)
    torch.testing.assert_close(prior.kl(zeros, zeros), torch.zeros(3))
    assert (prior.kl(torch.ones(3, 5), zeros) > 0).all()


def test_bernoulli_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 1, 28, 28, generator=g) * 3
    x = torch.rand(4, 1, 28, 28, generator=g).round()  # binary pixels: where Bernoulli.log_prob is defined
    expected = Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(BernoulliLikelihood().log_prob(x, logits), expected, rtol=1e-5, atol=1e-3)


def test_bernoulli_on_grey_levels_is_the_continuous_cross_entropy():
    logits = torch.tensor([[0.3, -1.2]])
    x = torch.tensor([[0.25, 0.9]])
    p = torch.sigmoid(logits)
    expected = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(1)
    torch.testing.assert_close(BernoulliLikelihood().log_prob(x, logits), expected)


@pytest.mark.parametrize("std", [0.1, 1.0])
def test_gaussian_log_prob_matches_torch_distributions(std):
    g = torch.Generator().manual_seed(2)
    mean = torch.rand(4, 3, 8, 8, generator=g)
    x = torch.rand(4, 3, 8, 8, generator=g)
    expected = Normal(mean, std).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(GaussianLikelihood(std).log_prob(x, mean), expected, rtol=1e-5, atol=1e-3)


def test_gradients_flow_through_the_reparameterization():
    mu = torch.zeros(64, 4, requires_grad=True)
    logvar = torch.zeros(64, 4, requires_grad=True)
    torch.manual_seed(0)
    z = VAE.reparameterize(mu, logvar)
    (z**2).sum().backward()
    assert mu.grad is not None and logvar.grad is not None
    assert mu.grad.abs().sum() > 0 and logvar.grad.abs().sum() > 0
    # d/dlogvar of sum(z^2) with z = mu + exp(logvar/2) eps at mu=0, logvar=0 is sum(eps^2) > 0 per column
    assert (logvar.grad > 0).all()


def test_reparameterized_samples_have_the_right_moments():
    torch.manual_seed(0)
    mu = torch.full((200_000, 1), 1.5)
    logvar = torch.full((200_000, 1), math.log(0.25))
    z = VAE.reparameterize(mu, logvar)
    assert abs(z.mean().item() - 1.5) < 0.01
    assert abs(z.var().item() - 0.25) < 0.01


def _model_and_data(seed=0):
    torch.manual_seed(seed)
    model = build_model(model_config(MLPConfig(latent_dim=3, hidden_dims=[16])), (1, 4, 4))
    return model, torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def _terms(objective, model, x, step=None, seed=7):
    torch.manual_seed(seed)  # the same reparameterization noise for every objective compared
    s = None if step is None else torch.tensor(float(step))
    return objective(model, x, None, s)


CTX = ObjectiveContext(train_size=100, latent_dim=3)


def test_beta_scales_only_the_kl():
    model, x = _model_and_data()
    t1 = _terms(ELBO(ELBOConfig(beta=1.0), CTX), model, x)
    t4 = _terms(ELBO(ELBOConfig(beta=4.0), CTX), model, x)
    torch.testing.assert_close(t1["recon"], t4["recon"])
    torch.testing.assert_close(t1["kl"], t4["kl"])
    torch.testing.assert_close(t4["loss"] - t1["loss"], 3 * t1["kl"])
    # The reported ELBO is the unweighted bound whatever beta is.
    torch.testing.assert_close(t1["elbo"], t4["elbo"])
    torch.testing.assert_close(t1["elbo"], -(t1["recon"] + t1["kl"]))


def test_recon_weight_scales_only_the_reconstruction():
    model, x = _model_and_data(1)
    t1 = _terms(ELBO(ELBOConfig(recon_weight=1.0), CTX), model, x)
    t2 = _terms(ELBO(ELBOConfig(recon_weight=2.0), CTX), model, x)
    torch.testing.assert_close(t2["loss"] - t1["loss"], t1["recon"])


def test_kl_warmup_ramps_linearly_to_beta():
    objective = ELBO(ELBOConfig(beta=2.0, kl_warmup_steps=4), CTX)
    assert [objective.schedule_values(s)["kl_weight"] for s in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    model, x = _model_and_data(2)
    # Evaluation (step=None) always uses the full beta.
    torch.testing.assert_close(_terms(objective, model, x)["loss"], _terms(objective, model, x, step=100)["loss"])
    assert _terms(objective, model, x, step=0)["loss"] < _terms(objective, model, x)["loss"]


def test_loss_is_per_sample_mean_in_nats():
    model, x = _model_and_data(3)
    terms = _terms(ELBO(ELBOConfig(), CTX), model, x)
    torch.manual_seed(7)
    out = model(x)
    per_sample = -BernoulliLikelihood().log_prob(x, out.params)
    torch.testing.assert_close(terms["recon"], per_sample.mean())

"""loss=ciwae, piwae and hvae against independent computations: CIWAE's limits are the K-sample ELBO and IWAE on the
same noise; PIWAE's gradients are IWAE's (decoder, prior) and MIWAE's (encoder), each computed by those objectives
on the same noise; the HVAE bound with no leapfrog step is the one-sample ELBO, and with steps and tempering its
exponential is an unbiased estimate of p(x) on a linear-Gaussian model whose p(x) is known in closed form."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from omegaconf import OmegaConf
from torch.distributions import MultivariateNormal

from tests.conftest import model_config
from tests.unit.test_posteriors import X, linear_gaussian_model
from vae_cli.config.architectures import MLPConfig
from vae_cli.config.objectives import CIWAEConfig, HVAEConfig, IWAEConfig, MIWAEConfig, PIWAEConfig
from vae_cli.config.posteriors import IAFConfig, PosteriorConfig
from vae_cli.models.build import build_model
from vae_cli.models.posteriors.gaussian import GaussianPosterior
from vae_cli.models.priors import StandardNormal
from vae_cli.objectives import build_objective
from vae_cli.objectives.base import ObjectiveContext
from vae_cli.objectives.hvae import hamiltonian_bound, tempering_schedule

SHAPE = (1, 4, 4)
CTX = ObjectiveContext(train_size=100, latent_dim=3)


def tiny(posterior: PosteriorConfig | None = None):
    torch.manual_seed(0)
    model = build_model(model_config(MLPConfig(latent_dim=3, hidden_dims=[16]), posterior=posterior), SHAPE)
    x = torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(1)).round()
    return model, x


def objective(schema) -> torch.nn.Module:
    return build_objective(OmegaConf.structured(schema), CTX)


def run(obj, model, x, seed):
    model.zero_grad()
    obj.zero_grad()
    torch.manual_seed(seed)
    terms = obj(model, x, None, None)
    obj.minimized(terms).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in terms.items()}, grads


def test_ciwae_limits_are_the_elbo_and_iwae_on_the_same_noise():
    model, x = tiny()
    torch.manual_seed(3)
    eps = torch.randn(6, 5, 3)
    ll, lp, lq, _ = model.log_weights(x, None, eps)
    log_w = (ll + lp - lq).detach()
    elbo = log_w.mean().item()
    iwae = (torch.logsumexp(log_w, 0) - math.log(6)).mean().item()
    for beta, expected in ((1.0, elbo), (0.0, iwae), (0.3, 0.3 * elbo + 0.7 * iwae)):
        terms, _ = run(objective(CIWAEConfig(beta=beta, k=6)), model, x, 3)
        assert terms["ciwae"].item() == pytest.approx(expected, rel=1e-6)
        assert terms["loss"].item() == pytest.approx(-expected, rel=1e-6)
    assert elbo < iwae


@pytest.mark.parametrize("posterior", [None, IAFConfig(flows=2, hidden=[8], context=4)], ids=["gaussian", "iaf"])
def test_piwae_gradients_are_iwae_for_the_decoder_and_miwae_for_the_encoder(posterior):
    model, x = tiny(posterior)
    m, k = 3, 4
    terms, g_piwae = run(objective(PIWAEConfig(m=m, k=k)), model, x, 7)
    iwae_terms, g_iwae = run(objective(IWAEConfig(k=m * k)), model, x, 7)
    miwae_terms, g_miwae = run(objective(MIWAEConfig(m=m, k=k)), model, x, 7)
    assert terms["iw_elbo"].item() == pytest.approx(iwae_terms["iw_elbo"].item(), rel=1e-6)
    assert terms["miwae"].item() == pytest.approx(miwae_terms["iw_elbo"].item(), rel=1e-6)
    decoder = [n for n in g_piwae if n.startswith("decoder.")]
    encoder = [n for n in g_piwae if n.startswith(("encoder.", "posterior."))]
    assert decoder and encoder
    for n in decoder:
        assert torch.allclose(g_piwae[n], g_iwae[n], rtol=1e-4, atol=1e-6), n
    for n in encoder:
        assert torch.allclose(g_piwae[n], g_miwae[n], rtol=1e-4, atol=1e-6), n
    # And they differ from IWAE's for the encoder (the two paths are not the same gradient).
    assert any(not torch.allclose(g_piwae[n], g_iwae[n], rtol=1e-3) for n in encoder)


def test_piwae_with_one_group_is_iwae():
    model, x = tiny()
    _, g_piwae = run(objective(PIWAEConfig(m=1, k=5)), model, x, 2)
    _, g_iwae = run(objective(IWAEConfig(k=5)), model, x, 2)
    for n in g_iwae:
        assert torch.allclose(g_piwae[n], g_iwae[n], rtol=1e-4, atol=1e-6), n


def test_hvae_with_no_leapfrog_step_is_the_one_sample_elbo():
    model, x = tiny()
    terms, _ = run(objective(HVAEConfig(leapfrog_steps=0)), model, x, 5)
    torch.manual_seed(5)
    ll, lp, lq, _ = model.log_weights(x, None, torch.randn(1, 5, 3))
    assert terms["elbo"].item() == pytest.approx((ll + lp - lq).mean().item(), rel=1e-6)


def test_tempering_schedule_runs_from_beta0_to_one():
    betas = tempering_schedule(0.3, 5)
    assert betas[0] == pytest.approx(0.3) and betas[-1] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(betas))
    assert tempering_schedule(0.3, 0) == [1.0]


@pytest.mark.parametrize(("steps", "beta0"), [(3, 1.0), (4, 0.4)])
def test_hvae_bound_is_an_unbiased_estimate_of_p_x(steps, beta0):
    """E[exp(bound)] = p(x): the flow on (z, rho) is volume-preserving up to the tempering's known factor, so
    p(x, z_K) N(rho_K) / q_K(z_K, rho_K) is an importance weight whatever the step size."""
    torch.manual_seed(0)
    model, w, b, std = linear_gaussian_model(
        GaussianPosterior(2), StandardNormal(2), torch.tensor([[0.2, -0.4]]), torch.full((1, 2), math.log(1.5)), std=1.5
    )
    exact = MultivariateNormal(b, w @ w.T + std**2 * torch.eye(4)).log_prob(X.view(-1)).item()
    n = 100_000
    bound, _ = hamiltonian_bound(
        model, X.expand(n, *X.shape[1:]), None, torch.tensor([0.3, 0.2]), tempering_schedule(beta0, steps), False
    )
    bound = bound.double()
    est = torch.logsumexp(bound, 0).item() - math.log(n)
    weights = torch.exp(bound - bound.max())
    rel_se = (weights.std() / weights.mean()).item() / math.sqrt(n)
    assert rel_se < 0.01
    assert est == pytest.approx(exact, abs=5 * rel_se + 2e-3)
    assert bound.mean().item() < exact  # and a lower bound in expectation


def test_hvae_step_size_is_learned_and_saved_with_the_objective():
    model, x = tiny()
    obj = objective(HVAEConfig(leapfrog_steps=2, tempering=0.5))
    terms, _ = run(obj, model, x, 1)
    assert obj.raw_step.grad is not None and torch.isfinite(obj.raw_step.grad).all()
    assert obj.raw_step.grad.abs().sum() > 0
    assert "raw_step" in obj.state_dict()
    assert terms["step_size"].item() == pytest.approx(0.01, rel=1e-5)

"""The post-hoc latent samplers against known densities: a GMM fitted to draws of a known mixture recovers it; a
flow and a second-stage VAE reproduce a Gaussian's moments (and the flow its log-density); refitting with the same
seed gives the same sampler; a saved state loads into a sampler built from the same config."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from vae_cli.config.catalog import SAMPLERS
from vae_cli.models.priors import StandardNormal
from vae_cli.samplers import build_sampler


def sampler(name: str, dim: int, **values):
    cfg = OmegaConf.merge(OmegaConf.structured(SAMPLERS[name].schema), values)
    return build_sampler(cfg, dim, StandardNormal(dim))


def known_mixture() -> MixtureSameFamily:
    means = torch.tensor([[-4.0, 0.0], [3.0, 3.0], [3.0, -3.0]], dtype=torch.float64)
    scales = torch.tensor(
        [[[1.0, 0.0], [0.5, 0.6]], [[0.4, 0.0], [0.0, 0.4]], [[0.8, 0.0], [-0.3, 0.3]]], dtype=torch.float64
    )
    return MixtureSameFamily(
        Categorical(probs=torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)),
        MultivariateNormal(means, scale_tril=scales),
    )


def test_a_gmm_fitted_to_a_known_mixture_recovers_it():
    truth = known_mixture()
    torch.manual_seed(0)
    codes = truth.sample((20000,))
    gmm = sampler("gmm", 2, components=3)
    gmm.fit(codes, seed=0)
    order = torch.argsort(gmm.means[:, 0] * 10 + gmm.means[:, 1])
    want_order = torch.argsort(truth.component_distribution.loc[:, 0] * 10 + truth.component_distribution.loc[:, 1])
    torch.testing.assert_close(gmm.weights[order], truth.mixture_distribution.probs[want_order], atol=0.02, rtol=0)
    torch.testing.assert_close(gmm.means[order], truth.component_distribution.loc[want_order], atol=0.05, rtol=0)
    cov = gmm.scale_tril @ gmm.scale_tril.transpose(1, 2)
    torch.testing.assert_close(
        cov[order], truth.component_distribution.covariance_matrix[want_order], atol=0.05, rtol=0
    )
    # Its density is the mixture's (torch.distributions), and its draws follow it: the mean log-density of its own
    # samples under the truth is the truth's entropy, within the noise.
    held_out = truth.sample((5000,))
    assert gmm.log_prob(held_out).mean().item() == pytest.approx(truth.log_prob(held_out).mean().item(), abs=0.02)
    draws = gmm.sample(20000, torch.Generator().manual_seed(1)).double()
    assert truth.log_prob(draws).mean().item() == pytest.approx(truth.log_prob(held_out).mean().item(), abs=0.05)


def gaussian_codes(n: int = 6000, seed: int = 0) -> tuple[torch.Tensor, MultivariateNormal]:
    cov = torch.tensor([[2.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 0.5]])
    truth = MultivariateNormal(torch.tensor([1.0, -2.0, 0.5]), covariance_matrix=cov)
    torch.manual_seed(seed)
    return truth.sample((n,)), truth


def test_the_flow_learns_a_gaussians_density_and_moments():
    codes, truth = gaussian_codes()
    flow = sampler("flow", 3, epochs=15, hidden=[32, 32], transforms=2)
    flow.fit(codes, seed=0)
    held_out = truth.sample((4000,))
    assert flow.log_prob(held_out).mean().item() == pytest.approx(truth.log_prob(held_out).mean().item(), abs=0.05)
    draws = flow.sample(20000, torch.Generator().manual_seed(2))
    torch.testing.assert_close(draws.mean(0), truth.mean, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), truth.covariance_matrix, atol=0.1, rtol=0)


def test_the_second_stage_vae_reproduces_the_codes_moments():
    codes, truth = gaussian_codes()
    stage = sampler("two_stage", 3, epochs=20, hidden=[64, 64])
    info = stage.fit(codes, seed=0)
    assert info["gamma"] < 1.0  # it found the codes' spread is not all noise
    draws = stage.sample(20000, torch.Generator().manual_seed(3))
    torch.testing.assert_close(draws.mean(0), truth.mean, atol=0.1, rtol=0)
    torch.testing.assert_close(draws.std(0), truth.stddev, atol=0.15, rtol=0)


@pytest.mark.parametrize(
    ("name", "values"),
    [("gmm", {"components": 4}), ("flow", {"epochs": 2, "hidden": [16]}), ("two_stage", {"epochs": 2, "hidden": [16]})],
)
def test_refitting_with_the_same_seed_gives_the_same_sampler_and_leaves_the_global_rng(name, values):
    codes, _ = gaussian_codes(800)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = sampler(name, 3, **values)
    a.fit(codes, seed=5)
    torch.set_rng_state(before)
    b = sampler(name, 3, **values)
    b.fit(codes, seed=5)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = sampler(name, 3, **values)
    c.fit(codes, seed=6)
    if name != "gmm":  # EM from another k-means start may land on the same optimum
        assert any(not torch.equal(sa[k], c.state_dict()[k]) for k in sa)
    # Loaded into a sampler built from the same config, it draws the same codes.
    fresh = sampler(name, 3, **values)
    fresh.load_state_dict(sa)
    torch.testing.assert_close(
        fresh.sample(5, torch.Generator().manual_seed(0)), a.sample(5, torch.Generator().manual_seed(0))
    )


def test_the_prior_sampler_draws_the_models_prior():
    prior = StandardNormal(4)
    s = build_sampler(OmegaConf.structured(SAMPLERS["prior"].schema), 4, prior)
    torch.testing.assert_close(
        s.sample(6, torch.Generator().manual_seed(0)), prior.sample(6, generator=torch.Generator().manual_seed(0))
    )
    assert not SAMPLERS["prior"].fitted and all(SAMPLERS[n].fitted for n in ("gmm", "flow", "two_stage"))

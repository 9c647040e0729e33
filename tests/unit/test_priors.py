"""Priors against torch.distributions: mixture log-densities, sampling, and the KL each gives."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from vae_cli.models.priors import MixtureOfGaussians, StandardNormal, VampPrior, diag_normal_log_prob, mixture_log_prob


def mixture(mu: torch.Tensor, logvar: torch.Tensor, log_w: torch.Tensor) -> MixtureSameFamily:
    return MixtureSameFamily(Categorical(logits=log_w), Independent(Normal(mu, torch.exp(0.5 * logvar)), 1))


def test_mog_log_density_matches_mixture_same_family():
    torch.manual_seed(0)
    prior = MixtureOfGaussians(latent_dim=3, components=7)
    with torch.no_grad():
        prior.logvars.normal_(0, 0.5)
        prior.logits.normal_()
    z = torch.randn(50, 3) * 2
    expected = mixture(prior.means, prior.logvars, prior.logits).log_prob(z)
    torch.testing.assert_close(prior.log_prob(z), expected, rtol=1e-5, atol=1e-5)


def test_mixture_log_density_is_exact_for_narrow_components_and_in_chunks(monkeypatch):
    """Small sigmas, where an expanded quadratic form loses everything in float32; chunking changes nothing."""
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(40, 5, generator=g) * 3
    logvar = torch.full((40, 5), math.log(1e-4))
    log_w = torch.log_softmax(torch.randn(40, generator=g), 0)
    z = mu[:10] + 0.01 * torch.randn(10, 5, generator=g)
    expected = mixture(mu.double(), logvar.double(), log_w.double()).log_prob(z.double())
    torch.testing.assert_close(mixture_log_prob(z, mu, logvar, log_w).double(), expected, rtol=1e-5, atol=1e-3)
    import vae_cli.models.priors as priors

    monkeypatch.setattr(priors, "MIXTURE_CHUNK_ELEMENTS", 7)
    torch.testing.assert_close(mixture_log_prob(z, mu, logvar, log_w).double(), expected, rtol=1e-5, atol=1e-3)


class FixedEncoder(nn.Module):
    """q(z|u) = N(W flatten(u), exp(s)): a linear encoder with a learned, input-independent variance."""

    def __init__(self, pixels: int, latent: int) -> None:
        super().__init__()
        self.w = nn.Linear(pixels, latent)
        self.s = nn.Parameter(torch.full((latent,), -1.0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.w(x.flatten(1))
        return mu, self.s.expand_as(mu)


def _vamp(k: int = 6, init: str = "random", images: torch.Tensor | None = None) -> tuple[VampPrior, FixedEncoder]:
    torch.manual_seed(2)
    encoder = FixedEncoder(16, 3)
    prior = VampPrior(3, k, (1, 4, 4), init, images)
    prior.attach(encoder)
    return prior, encoder


def test_vamp_log_density_is_the_mixture_of_the_pseudo_inputs_posteriors():
    prior, encoder = _vamp()
    z = torch.randn(30, 3)
    with torch.no_grad():
        mu, logvar = encoder(torch.clamp(prior.pseudo_inputs, 0, 1))
    expected = mixture(mu, logvar, torch.zeros(6)).log_prob(z)
    torch.testing.assert_close(prior.log_prob(z), expected, rtol=1e-5, atol=1e-5)


def test_vamp_pseudo_inputs_are_bounded_and_learn_through_the_prior():
    prior, _ = _vamp()
    with torch.no_grad():
        prior.pseudo_inputs[0].fill_(3.0)  # out of range: the hardtanh clips it into [0, 1]
    assert prior.inputs().max() <= 1.0 and prior.inputs().min() >= 0.0
    prior.log_prob(torch.randn(8, 3)).sum().backward()
    assert prior.pseudo_inputs.grad is not None and prior.pseudo_inputs.grad[1:].abs().sum() > 0


def test_vamp_data_init_takes_training_images_with_live_gradients():
    images = torch.rand(10, 1, 4, 4).round()
    prior, _ = _vamp(k=6, init="data", images=images)
    u = prior.inputs()
    torch.testing.assert_close(u, 0.02 + 0.96 * images[:6])
    assert u.min() > 0 and u.max() < 1  # inside the hardtanh's linear range


def test_vamp_samples_come_from_its_components_not_from_a_standard_normal():
    prior, encoder = _vamp(k=2)
    with torch.no_grad():
        encoder.w.weight.zero_()
        encoder.w.bias.copy_(torch.tensor([8.0, -8.0, 8.0]))  # both components far from the origin
        encoder.s.fill_(math.log(0.01))
    z = prior.sample(2000, torch.Generator().manual_seed(0))
    assert (z - torch.tensor([8.0, -8.0, 8.0])).abs().max() < 1.0  # all near the components, none near N(0, I)
    assert abs(z.std(0).mean().item() - 0.1) < 0.02
    cold = prior.sample(2000, torch.Generator().manual_seed(0), temperature=0.5)
    assert abs(cold.std(0).mean().item() - 0.05) < 0.01


def test_mog_samples_have_the_mixtures_moments():
    torch.manual_seed(3)
    prior = MixtureOfGaussians(latent_dim=2, components=3)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]]))
        prior.logvars.fill_(math.log(0.25))
        prior.logits.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
    z = prior.sample(40_000, torch.Generator().manual_seed(1))
    reference = mixture(prior.means, prior.logvars, prior.logits).sample((40_000,))
    torch.testing.assert_close(z.mean(0), reference.mean(0), atol=0.06, rtol=0)
    torch.testing.assert_close(z.var(0), reference.var(0), atol=0.2, rtol=0.05)


def test_the_kl_is_closed_form_for_the_normal_prior_and_log_q_minus_log_p_otherwise():
    g = torch.Generator().manual_seed(4)
    mu, logvar = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g) * 0.3
    z = mu + torch.exp(0.5 * logvar) * torch.randn(5, 3, generator=g)
    normal = StandardNormal(3)
    closed = torch.distributions.kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(normal.kl(mu, logvar, z), closed, rtol=1e-5, atol=1e-5)
    mog = MixtureOfGaussians(3, 4)
    assert mog.kl_per_dim(mu, logvar) is None
    expected = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1) - mixture(
        mog.means, mog.logvars, mog.logits
    ).log_prob(z)
    torch.testing.assert_close(mog.kl(mu, logvar, z), expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(diag_normal_log_prob(z, mu, logvar), Normal(mu, torch.exp(0.5 * logvar)).log_prob(z))


def test_standard_normal_samples_scale_with_the_temperature():
    z = StandardNormal(4).sample(20_000, torch.Generator().manual_seed(0), temperature=0.5)
    assert abs(z.std().item() - 0.5) < 0.01

"""Each likelihood against an independent computation: torch.distributions, a numerical integral, a brute-force sum
over all 8-bit values, or a formula written out pixel by pixel."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import (
    AffineTransform,
    ContinuousBernoulli,
    Normal,
    SigmoidTransform,
    TransformedDistribution,
    Uniform,
)

from vae_cli.models.likelihoods.base import Measures
from vae_cli.models.likelihoods.bernoulli import BernoulliLikelihood
from vae_cli.models.likelihoods.continuous_bernoulli import ContinuousBernoulliLikelihood, continuous_bernoulli_log_norm
from vae_cli.models.likelihoods.gaussian import GaussianLikelihood, GaussianStd
from vae_cli.models.likelihoods.logistic_mixture import LogisticMixtureLikelihood

LEVELS = torch.arange(256, dtype=torch.float64) / 255


def pixels(values: torch.Tensor) -> torch.Tensor:
    """A batch of 1x1x1 images, one per value."""
    return values.reshape(-1, 1, 1, 1)


# ----- continuous Bernoulli ---------------------------------------------------------------------------------------
LOGITS = torch.tensor([-20.0, -5.0, -1.386294, -0.5, -0.09, -1e-3, 0.0, 1e-3, 0.05, 0.3, 2.0, 7.0, 20.0])


def test_continuous_bernoulli_matches_torch_distributions_values_and_gradients():
    x = torch.linspace(0.02, 0.98, len(LOGITS), dtype=torch.float64)
    mine_logits = LOGITS.clone().requires_grad_(True)
    mine = ContinuousBernoulliLikelihood().log_prob(pixels(x).float(), pixels(mine_logits))
    ref_logits = LOGITS.double().clone().requires_grad_(True)
    ref = ContinuousBernoulli(logits=ref_logits).log_prob(x)
    assert mine.double().tolist() == pytest.approx(ref.tolist(), abs=2e-5)
    mine.sum().backward()
    ref.sum().backward()
    assert mine_logits.grad.double().tolist() == pytest.approx(ref_logits.grad.tolist(), abs=2e-4)


def test_continuous_bernoulli_moments_at_lambda_02_and_against_torch():
    lik = ContinuousBernoulliLikelihood()
    logit = torch.tensor(math.log(0.2 / 0.8))
    assert lik.mean(pixels(logit)).item() == pytest.approx(0.38801414, abs=1e-6)
    assert lik.variance(pixels(logit)).item() == pytest.approx(0.07589778, abs=1e-6)
    ref = ContinuousBernoulli(logits=LOGITS.double())
    assert lik.mean(pixels(LOGITS)).flatten().double().tolist() == pytest.approx(ref.mean.tolist(), abs=1e-5)
    assert lik.variance(pixels(LOGITS)).flatten().double().tolist() == pytest.approx(ref.variance.tolist(), abs=1e-5)


def test_continuous_bernoulli_is_normalized_and_finite_at_the_taylor_branch():
    grid = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    lik = ContinuousBernoulliLikelihood()
    # Closed form, Taylor branch (|l| < 0.1) and both sides of the switch: each density integrates to 1.
    for logit in (-30.0, -4.0, -0.1001, -0.0999, 0.0, 0.04, 0.1001, 4.0, 30.0):
        params = torch.full((grid.numel(), 1, 1, 1), logit)
        density = lik.log_prob(pixels(grid).float(), params).double().exp()
        assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=2e-5), logit
    # The two branches meet: log C is continuous across |l| = 0.1, and its gradient is finite at l = 0.
    below, above = torch.tensor([0.0999999]), torch.tensor([0.1000001])
    assert continuous_bernoulli_log_norm(below).item() == pytest.approx(
        continuous_bernoulli_log_norm(above).item(), abs=1e-6
    )
    at_zero = torch.zeros(3, requires_grad=True)
    continuous_bernoulli_log_norm(at_zero).sum().backward()
    assert torch.isfinite(at_zero.grad).all() and at_zero.grad.abs().max() < 1e-6


def test_continuous_bernoulli_reconstructions_show_the_mean_not_lambda():
    lik = ContinuousBernoulliLikelihood()
    logits = torch.tensor([-3.0, 3.0])
    shown = lik.mean(pixels(logits)).flatten()
    assert not torch.allclose(shown, torch.sigmoid(logits), atol=0.05)
    assert shown.tolist() == pytest.approx(ContinuousBernoulli(logits=logits).mean.tolist(), abs=1e-5)


def test_continuous_bernoulli_samples_follow_its_distribution():
    lik = ContinuousBernoulliLikelihood()
    gen = torch.Generator().manual_seed(0)
    for logit in (-3.0, 0.02, 4.0):
        draws = lik.sample(torch.full((200_000, 1, 1, 1), logit), gen).flatten()
        ref = ContinuousBernoulli(logits=torch.tensor(logit, dtype=torch.float64))
        assert draws.min() >= 0 and draws.max() <= 1
        assert draws.mean().item() == pytest.approx(ref.mean.item(), abs=3e-3)
        assert draws.var().item() == pytest.approx(ref.variance.item(), abs=2e-3)


# ----- discretized logistic mixture --------------------------------------------------------------------------------
def logistic(loc: float, scale: float) -> TransformedDistribution:
    """torch.distributions' logistic: the inverse sigmoid of a uniform, shifted and scaled."""
    base = Uniform(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    return TransformedDistribution(base, [SigmoidTransform().inv, AffineTransform(loc, scale)])


def level_probability(dist: TransformedDistribution, level: int) -> float:
    """P(level) of a logistic on [-1, 1] discretized to 256 levels, edges taking the tails (PixelCNN++)."""
    centre = 2 * level / 255 - 1
    upper = 1.0 if level == 255 else dist.cdf(torch.tensor(centre + 1 / 255, dtype=torch.float64)).item()
    lower = 0.0 if level == 0 else dist.cdf(torch.tensor(centre - 1 / 255, dtype=torch.float64)).item()
    return upper - lower


def test_one_grey_logistic_matches_torch_distributions_including_the_edge_bins():
    loc, log_scale = 0.3, math.log(0.2)
    lik = LogisticMixtureLikelihood(1)
    params = torch.tensor([0.0, loc, log_scale]).view(1, 3, 1, 1).expand(256, -1, -1, -1)
    mine = lik.log_prob(pixels(LEVELS).float(), params).double()
    ref = logistic(loc, 0.2)
    expected = [math.log(level_probability(ref, v)) for v in range(256)]
    assert mine.tolist() == pytest.approx(expected, abs=1e-4)
    # Level 0 holds all the mass below its upper edge, level 255 all the mass above its lower edge.
    assert mine[0].exp().item() == pytest.approx(
        ref.cdf(torch.tensor(-1 + 1 / 255, dtype=torch.float64)).item(), rel=1e-5
    )
    assert mine[255].exp().item() == pytest.approx(
        1 - ref.cdf(torch.tensor(1 - 1 / 255, dtype=torch.float64)).item(), rel=1e-5
    )


def test_bin_mass_stays_exact_for_sharp_components_where_a_difference_of_sigmoids_underflows():
    # A component of scale e^-7 whose mean sits 25 scale units below the level: in float32 both sigmoids round to
    # 1 and their difference to 0 (log -> -inf); the factored form keeps the true mass, about e^-20.7.
    inv_s, offset = math.exp(7.0), 25 / math.exp(7.0)
    level = 200
    mean = 2 * level / 255 - 1 - offset
    lik = LogisticMixtureLikelihood(1)
    params = torch.tensor([0.0, mean, -7.0]).view(1, 3, 1, 1)
    got = lik.log_prob(torch.tensor(level / 255).view(1, 1, 1, 1), params).item()
    a, b = inv_s * (offset + 1 / 255), inv_s * (offset - 1 / 255)
    naive32 = torch.sigmoid(torch.tensor(a)) - torch.sigmoid(torch.tensor(b))
    assert naive32.item() == 0.0  # what a plain difference of float32 sigmoids gives
    expected = math.log(1 / (1 + math.exp(b)) - 1 / (1 + math.exp(a)))  # σ(-b) - σ(-a) in float64
    assert math.isfinite(got) and got == pytest.approx(expected, abs=2e-3)


def test_a_mixture_is_normalized_over_the_256_levels():
    torch.manual_seed(0)
    lik = LogisticMixtureLikelihood(3)
    params = (torch.randn(1, 9, 1, 1) * 2).expand(256, -1, -1, -1)
    assert lik.log_prob(pixels(LEVELS).float(), params).double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def brute_force_rgb(params: torch.Tensor, rgb: tuple[int, int, int], k: int) -> float:
    """p(r, g, b) of one pixel written out: Σ_k π_k P(r; μ_r) P(g; μ_g + α r) P(b; μ_b + β r + γ g)."""
    p = params.flatten().double()
    logits, rest = p[:k], p[k:]
    means = rest[: 3 * k].view(3, k)
    scales = rest[3 * k : 6 * k].view(3, k).clamp(min=-7).exp()
    coeffs = torch.tanh(rest[6 * k :].view(3, k))
    weights = torch.softmax(logits, 0)
    r, g, _ = (2 * v / 255 - 1 for v in rgb)  # blue conditions nothing
    total = 0.0
    for j in range(k):
        m = [means[0, j].item(), means[1, j].item() + coeffs[0, j].item() * r]
        m.append(means[2, j].item() + coeffs[1, j].item() * r + coeffs[2, j].item() * g)
        term = weights[j].item()
        for value, mean, scale in zip(rgb, m, scales[:, j].tolist(), strict=True):
            term *= level_probability(logistic(mean, scale), value)
        total += term
    return total


def test_colour_channels_are_coupled_as_in_pixelcnnpp():
    torch.manual_seed(1)
    lik = LogisticMixtureLikelihood(2)
    params = torch.randn(1, 20, 1, 1)
    for rgb in [(0, 0, 0), (255, 128, 3), (40, 200, 255), (128, 128, 128)]:
        x = torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1) / 255
        assert lik.log_prob(x, params).exp().item() == pytest.approx(brute_force_rgb(params, rgb, 2), rel=1e-4)


def test_a_coupled_rgb_mixture_sums_to_one_over_all_256_cubed_colours():
    torch.manual_seed(2)
    lik = LogisticMixtureLikelihood(2)
    params = torch.randn(1, 20, 1, 1) * 1.5
    gb = torch.cartesian_prod(LEVELS, LEVELS).float()
    total = 0.0
    for r in LEVELS.float():
        x = torch.stack([r.expand(gb.shape[0]), gb[:, 0], gb[:, 1]], dim=1).view(-1, 3, 1, 1)
        total += lik.log_prob(x, params.expand(x.shape[0], -1, -1, -1)).double().exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-5)


def test_a_uniform_model_scores_exactly_8_bits_per_dim():
    # 256 equal-weight components of scale e^-7, one on each level: every level gets 1/256.
    lik = LogisticMixtureLikelihood(256)
    means = 2 * LEVELS.float() - 1
    params = torch.cat([torch.zeros(256), means, torch.full((256,), -7.0)]).view(1, -1, 1, 1)
    images = torch.stack([LEVELS.float()[torch.randperm(256)[:64]] for _ in range(8)]).view(8, 1, 8, 8)
    nll = -lik.log_prob(images, params.expand(8, -1, 8, 8))
    bits = nll.double() / (64 * math.log(2))
    assert bits.tolist() == pytest.approx([8.0] * 8, abs=5e-4)


def test_logistic_mean_and_samples_match_the_brute_force_distribution():
    lik = LogisticMixtureLikelihood(2)
    params = torch.tensor([0.5, -0.5, -0.6, 0.4, math.log(0.1), math.log(0.3)]).view(1, 6, 1, 1)
    probs = lik.log_prob(pixels(LEVELS).float(), params.expand(256, -1, -1, -1)).double().exp()
    expected_mean = (probs * LEVELS).sum().item()
    assert lik.mean(params).item() == pytest.approx(expected_mean, abs=0.5 / 255)
    draws = lik.sample(params.expand(100_000, -1, -1, -1), torch.Generator().manual_seed(0)).flatten()
    levels = torch.round(draws.double() * 255).long()
    assert torch.allclose(draws.double() * 255, levels.double(), atol=1e-3)  # samples lie on the 256 levels
    histogram = torch.bincount(levels, minlength=256).double() / draws.numel()
    assert (histogram - probs).abs().max().item() < 4e-3


def test_parameter_channels_per_likelihood():
    assert LogisticMixtureLikelihood(10).param_channels(3) == 100  # K (1 + 2·3 + 3 coefficients)
    assert LogisticMixtureLikelihood(10).param_channels(1) == 30
    assert GaussianLikelihood(GaussianStd.learned).param_channels(3) == 6
    assert GaussianLikelihood(0.1).param_channels(3) == 3
    assert BernoulliLikelihood().param_channels(1) == 1


# ----- Gaussian ----------------------------------------------------------------------------------------------------
def test_gaussian_fixed_and_learned_std_match_torch_normal():
    torch.manual_seed(3)
    x = torch.rand(4, 3, 5, 5)
    mean = torch.rand(4, 3, 5, 5)
    fixed = GaussianLikelihood(0.1).log_prob(x, mean)
    assert fixed.tolist() == pytest.approx(Normal(mean, 0.1).log_prob(x).flatten(1).sum(1).tolist(), rel=1e-5)
    raw = torch.randn(4, 3, 5, 5)
    per_pixel = GaussianLikelihood(GaussianStd.learned, min_std=1e-3)
    sigma = 1e-3 + torch.nn.functional.softplus(raw + per_pixel.raw_offset)
    got = per_pixel.log_prob(x, torch.cat([mean, raw], dim=1))
    assert got.tolist() == pytest.approx(Normal(mean, sigma).log_prob(x).flatten(1).sum(1).tolist(), rel=1e-5)
    # A decoder output of 0 means the initial σ (0.1).
    assert per_pixel.mean_and_std(torch.zeros(1, 2, 1, 1))[1].item() == pytest.approx(0.1, rel=1e-4)


def test_a_learned_std_is_bounded_below_and_trains():
    lik = GaussianLikelihood(GaussianStd.learned, min_std=1e-3)
    x = torch.full((1, 1, 2, 2), 0.5)
    collapsed = torch.cat([x, torch.full_like(x, -1e4)], dim=1)  # the decoder pushing σ to 0
    value = lik.log_prob(x, collapsed)
    assert torch.isfinite(value).all()
    assert value.item() == pytest.approx(4 * Normal(0.5, 1e-3).log_prob(torch.tensor(0.5)).item(), rel=1e-4)
    shared = GaussianLikelihood(GaussianStd.learned_global)
    (-shared.log_prob(torch.rand(8, 1, 4, 4), torch.rand(8, 1, 4, 4))).sum().backward()
    assert shared.raw_std.grad is not None and shared.raw_std.grad.item() != 0


def test_what_each_likelihood_measures():
    assert BernoulliLikelihood(binarized=True).measures == Measures.probability
    assert BernoulliLikelihood(binarized=False).measures == Measures.cross_entropy
    assert ContinuousBernoulliLikelihood().measures == Measures.density
    assert GaussianLikelihood(0.1).measures == Measures.density
    assert LogisticMixtureLikelihood(5).measures == Measures.probability

"""model=hvae: a linear-Gaussian hierarchy whose log p(x) is exact pins the log-weights (IW-NLL), the per-layer KL
and the ancestral sampler; the residual model's shapes at every image size; its objectives' per-layer terms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.conftest import model_config
from vae_cli.config.architectures import HVAEConfig
from vae_cli.config.likelihoods import LikelihoodConfig
from vae_cli.config.objectives import ELBOConfig
from vae_cli.evaluation.bounds import evaluate_images
from vae_cli.models.build import build_model
from vae_cli.models.hierarchical import HierarchicalVAE, TopDownCell, bounded_sigma
from vae_cli.models.likelihoods.gaussian import GaussianLikelihood
from vae_cli.models.networks.residual import PreActBlock
from vae_cli.objectives.base import ObjectiveContext
from vae_cli.objectives.elbo import ELBO

D, S, Z = 3, 2, 1  # data dims, state channels, latent channels per layer (all 1x1 maps: a linear model)
SIGMA_X = 0.4


class AffinePlusConstant(nn.Module):
    """[mu, raw] with mu affine in the input and raw a constant: a Gaussian with a fixed σ."""

    def __init__(self, n_in: int, n_out: int, gen: torch.Generator) -> None:
        super().__init__()
        self.linear = nn.Conv2d(n_in, n_out, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(self.linear.weight.shape, generator=gen) * 0.8)
            self.linear.bias.copy_(torch.randn(n_out, generator=gen) * 0.3)
        self.raw = nn.Parameter(torch.randn(n_out, generator=gen).view(1, n_out, 1, 1) * 0.5)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.linear(s), self.raw.expand(s.shape[0], -1, -1, -1)], dim=1)


def linear_hierarchy(layers: int = 2, seed: int = 0) -> HierarchicalVAE:
    gen = torch.Generator().manual_seed(seed)
    cells = []
    for _ in range(layers):
        merge = nn.Conv2d(Z, S, 1)
        with torch.no_grad():
            merge.weight.copy_(torch.randn(merge.weight.shape, generator=gen))
            merge.bias.zero_()
        cells.append(
            TopDownCell(AffinePlusConstant(S, Z, gen), AffinePlusConstant(2 * S, Z, gen), merge, nn.Identity())
        )
    bottom_up = nn.Conv2d(D, S, 1)
    decoder = nn.Conv2d(S, D, 1)
    model = HierarchicalVAE(bottom_up, cells, decoder, GaussianLikelihood(SIGMA_X), (S, 1, 1), (Z, 1, 1))
    with torch.no_grad():
        model.s_top.copy_(torch.randn(S, 1, 1, generator=gen))
        for module in (bottom_up, decoder):
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen))
            module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.2)
    return model.double()


def exact_marginal(model: HierarchicalVAE) -> torch.distributions.MultivariateNormal:
    """p(x) of the linear hierarchy, by propagating the state as an affine function of all the noise."""
    s_mean = model.s_top.detach().view(S).double()
    s_noise = torch.zeros(S, 0, dtype=torch.float64)  # s = s_mean + s_noise @ xi
    for cell in model.cells:
        prior = cell.prior_net
        a, c = prior.linear.weight.detach().view(Z, S).double(), prior.linear.bias.detach().double()
        sigma = bounded_sigma(prior.raw.detach().view(Z)).double()
        z_mean = a @ s_mean + c
        z_noise = torch.cat([a @ s_noise, torch.diag(sigma)], dim=1)  # a new noise column per latent dimension
        w = cell.merge_net.weight.detach().view(S, Z).double()
        s_mean = s_mean + w @ z_mean + cell.merge_net.bias.detach().double()
        s_noise = torch.cat([s_noise, torch.zeros(S, Z, dtype=torch.float64)], dim=1) + w @ z_noise
    dec_w, dec_b = model.decoder.weight.detach().view(D, S).double(), model.decoder.bias.detach().double()
    mean = dec_w @ s_mean + dec_b
    cov = dec_w @ s_noise @ s_noise.T @ dec_w.T + SIGMA_X**2 * torch.eye(D, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)


def near_prior_posterior(model: HierarchicalVAE, gen: torch.Generator) -> None:
    """Posterior corrections small but not zero: q differs from p by about a nat per image, and stays a proposal
    with heavier tails than the true posterior, so importance sampling converges with a few 1e5 draws."""
    with torch.no_grad():
        for cell in model.cells:
            net = cell.posterior_net
            net.linear.weight.copy_(torch.randn(net.linear.weight.shape, generator=gen) * 0.1)
            net.linear.bias.copy_(torch.randn(net.linear.bias.shape, generator=gen) * 0.1)
            net.raw.copy_(torch.randn(net.raw.shape, generator=gen) * 0.1 + 0.3)


@pytest.fixture(scope="module")
def hierarchy():
    torch.manual_seed(0)
    model = linear_hierarchy()
    marginal = exact_marginal(model)
    x = marginal.sample((64,)).view(64, D, 1, 1)
    near_prior_posterior(model, torch.Generator().manual_seed(5))
    return model, marginal, x


def test_importance_weights_are_unbiased_for_the_exact_marginal(hierarchy):
    model, marginal, x = hierarchy
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        eps = torch.randn(400_000, 8, model.latent_dim, generator=gen).double()
        log_px_z, log_pz, log_qz, _ = model.log_weights(x[:8], None, eps)
    assert (log_qz - log_pz).abs().mean() > 0.5  # q is not the prior: log q is really tested
    log_w = (log_px_z + log_pz - log_qz).double()
    estimate = torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])
    assert estimate.tolist() == pytest.approx(marginal.log_prob(x[:8].view(8, D)).tolist(), abs=0.1)


def test_iw_nll_tightens_with_k_towards_the_exact_log_likelihood(hierarchy):
    model, marginal, x = hierarchy
    exact = marginal.log_prob(x.view(-1, D)).mean().item()
    batches = [(x, torch.zeros(x.shape[0], dtype=torch.long))]
    results = {k: evaluate_images(model, batches, k=k, seed=0) for k in (1, 10, 100, 5000)}
    bounds = [results[k].log_px_iw for k in (1, 10, 100, 5000)]
    assert bounds == sorted(bounds) and bounds[0] < bounds[-1] - 0.5
    assert results[5000].elbo < exact and bounds[-1] == pytest.approx(exact, abs=0.1)
    assert set(results[5000].kl_per_layer) == {"z1", "z2"}


def test_per_layer_closed_form_kl_matches_its_monte_carlo_estimate(hierarchy):
    model, _, x = hierarchy
    torch.manual_seed(2)
    with torch.no_grad():
        xs = x[:8].repeat(20_000, 1, 1, 1)
        out = model(xs)
        closed = model.kl_layers(out).view(20_000, 8, 2).mean(0)  # [B, L]
        _, log_pz, log_qz, _ = model.log_weights(x[:8], None, torch.randn(20_000, 8, model.latent_dim).double())
    assert closed.sum(1).tolist() == pytest.approx((log_qz - log_pz).mean(0).tolist(), abs=0.05)


def test_ancestral_samples_follow_the_exact_marginal(hierarchy):
    model, marginal, _ = hierarchy
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        z = model.prior_sample(100_000, gen)
        x = model.decode(z)  # the decoder mean: the Gaussian likelihood's parameters
    x = x.view(-1, D).double()
    # The decoder's mean: cov = (total cov) - sigma_x^2 I.
    expected_cov = marginal.covariance_matrix - SIGMA_X**2 * torch.eye(D, dtype=torch.float64)
    assert x.mean(0).tolist() == pytest.approx(marginal.mean.tolist(), abs=0.03)
    assert torch.cov(x.T).flatten().tolist() == pytest.approx(expected_cov.flatten().tolist(), rel=0.03, abs=0.05)


def test_encode_is_the_posterior_mean_path_and_decode_inverts_the_layout(hierarchy):
    model, _, x = hierarchy
    with torch.no_grad():
        mu, logvar = model.encode(x)
        layers, s = model._infer(x, None)
        assert torch.allclose(mu, torch.cat([m.flatten(1) for _, m, _, _, _ in layers], dim=1))
        assert torch.allclose(model.decode(mu), model.decoder(s))
    assert mu.shape == logvar.shape == (x.shape[0], model.latent_dim)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32), (1, 64, 64), (3, 64, 64)])
def test_residual_hierarchy_shapes(shape):
    widths = [4, 8] if shape[1] <= 32 else [4, 8, 8]
    cfg = HVAEConfig(layers=2, latent_channels=2, widths=widths, blocks=1)
    model = build_model(model_config(cfg, likelihood=LikelihoodConfig()), shape)
    x = torch.rand(3, *shape)
    out = model(x)
    side = shape[1] // 2 ** (len(widths) - 1)
    assert out.params.shape == x.shape
    assert model.latent_dim == 2 * 2 * side * side and out.z.shape == (3, model.latent_dim)
    assert model.sample(2).shape == (2, *shape)
    log_px_z, log_pz, log_qz, z = model.log_weights(x, None, torch.randn(4, 3, model.latent_dim))
    assert log_px_z.shape == log_pz.shape == log_qz.shape == (4, 3) and z.shape == (4, 3, model.latent_dim)


def test_the_residual_hierarchy_starts_with_unit_priors_and_posteriors_equal_to_them():
    model = build_model(model_config(HVAEConfig(layers=3, latent_channels=2, widths=[4, 8], blocks=1)), (1, 28, 28))
    out = model(torch.rand(4, 1, 28, 28))
    assert model.kl(out).abs().max().item() < 1e-6  # q = p at the start: KL exactly 0
    assert model.layer_names == ("z3", "z2", "z1")


def test_elbo_reports_each_layer_and_applies_free_bits_per_layer():
    model = build_model(model_config(HVAEConfig(layers=2, latent_channels=2, widths=[4, 8], blocks=1)), (1, 28, 28))
    context = ObjectiveContext(train_size=100, latent_dim=model.latent_dim, layer_names=model.layer_names)
    plain = ELBO(ELBOConfig(), context)
    assert plain.terms == ("loss", "recon", "kl", "elbo", "kl_z2", "kl_z1")
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(4)
    terms = plain(model, x, None, None)
    assert terms["kl"].item() == pytest.approx((terms["kl_z2"] + terms["kl_z1"]).item(), rel=1e-5)
    free = ELBO(ELBOConfig(free_bits=0.5), context)
    torch.manual_seed(4)
    with_free_bits = free(model, x, None, None)
    # At the start every layer's KL is 0 < 0.5: each counts 0.5 nats in the loss, none adds a gradient.
    assert with_free_bits["loss"].item() == pytest.approx(with_free_bits["recon"].item() + 2 * 0.5, rel=1e-5)


def test_under_channels_last_the_top_down_state_stays_nhwc_and_the_values_do_not_change():
    # trainer.channels_last converts the weights and the batch to NHWC; the state s starts from the learned NCHW top
    # state. Every block and SiLU of the top-down path must then see NHWC (a mixed-layout SiLU backward was ~9x
    # slower than a matched one on CPU, ~9% of the fmnist_hvae step), and the layout must not change the numbers.
    cfg = HVAEConfig(layers=3, latent_channels=2, widths=[4, 8], blocks=1)
    model = build_model(model_config(cfg, likelihood=LikelihoodConfig()), (1, 28, 28))
    g = torch.Generator().manual_seed(3)
    for p in model.parameters():  # away from the zero-initialized branches, so that every block computes something
        p.data.add_(torch.randn(p.shape, generator=g) * 0.1)
    x, eps = torch.rand(4, 1, 28, 28, generator=g), torch.randn(4, model.latent_dim, generator=g)
    want_layers, want_s = model._infer(x, eps)
    eps_k = torch.randn(3, 4, model.latent_dim, generator=g)  # IW: K = 3 draws per image
    want_weights = model.log_weights(x, None, eps_k)

    model.to(memory_format=torch.channels_last)
    seen: list[tuple[str, bool]] = []
    hooks = [
        module.register_forward_pre_hook(
            lambda m, args, name=name: seen.append((name, args[0].is_contiguous(memory_format=torch.channels_last)))
        )
        for name, module in model.cells.named_modules()
        if isinstance(module, (PreActBlock, nn.SiLU))
    ]
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    got_layers, got_s = model._infer(x_nhwc, eps)
    got_weights = model.log_weights(x_nhwc, None, eps_k)  # the K copies of h keep the layout too
    for hook in hooks:
        hook.remove()
    for a, b in zip(got_weights, want_weights, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    assert len(seen) > 10 and [name for name, nhwc in seen if not nhwc] == []
    assert got_s.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got_s, want_s, rtol=1e-5, atol=1e-5)
    for got, want in zip(got_layers, want_layers, strict=True):
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)

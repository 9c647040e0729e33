"""Each objective against an independent computation: torch.distributions, numpy, a closed form, or the
estimator's definition written out step by step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.distributions import Bernoulli, Normal

from tests.conftest import model_config
from vae_cli.config.architectures import MLPConfig
from vae_cli.config.objectives import (
    BetaTCVAEConfig,
    DIPVAEConfig,
    ELBOConfig,
    FactorVAEConfig,
    InfoVAEConfig,
    IWAEConfig,
    TCEstimator,
)
from vae_cli.models.build import build_model
from vae_cli.models.likelihoods.bernoulli import BernoulliLikelihood
from vae_cli.models.priors import StandardNormal
from vae_cli.models.vae import VAE
from vae_cli.objectives.base import ObjectiveContext
from vae_cli.objectives.beta_tcvae import (
    BetaTCVAE,
    estimator_log_weights,
    log_q_estimates,
    stratified_log_weights,
)
from vae_cli.objectives.dip_vae import DIPVAE, dip_covariance
from vae_cli.objectives.elbo import ELBO
from vae_cli.objectives.factor_vae import FactorVAE, permute_dims
from vae_cli.objectives.info_vae import InfoVAE, mmd_unbiased
from vae_cli.objectives.iwae import IWAE
from vae_cli.objectives.minibatch_densities import minibatch_densities

SHAPE = (1, 4, 4)
LATENT = 3


def tiny_model(seed: int = 0, latent: int = LATENT) -> VAE:
    torch.manual_seed(seed)
    return build_model(model_config(MLPConfig(latent_dim=latent, hidden_dims=[16])), SHAPE)


def binary_images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed)).round()


def ctx(n: int = 1000, latent: int = LATENT) -> ObjectiveContext:
    return ObjectiveContext(train_size=n, latent_dim=latent)


def mc_elbo_per_image(model: VAE, x: torch.Tensor, seed: int) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) at z = mu + sigma * eps, every density from torch.distributions."""
    mu, logvar = model.encode(x)
    torch.manual_seed(seed)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    log_px_z = Bernoulli(logits=model.decode(z)).log_prob(x).flatten(1).sum(1)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(1)
    log_qz = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(1)
    return log_px_z + log_pz - log_qz


# ----- IWAE ------------------------------------------------------------------------------------------------------
def test_iwae_with_k_1_is_the_elbo_on_the_same_noise():
    model, x = tiny_model(), binary_images(32)
    torch.manual_seed(5)
    terms = IWAE(IWAEConfig(k=1), ctx())(model, x, None, None)
    expected = mc_elbo_per_image(model, x, seed=5).mean()
    torch.testing.assert_close(terms["iw_elbo"], expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms["loss"], -expected, rtol=1e-5, atol=1e-4)
    # k = 1: the importance-weighted bound and the K-sample ELBO are the same number.
    torch.testing.assert_close(terms["iw_elbo"], terms["elbo"])


def test_iwae_bound_is_logmeanexp_of_the_log_weights_without_an_analytic_kl():
    """The IW bound from its definition: log (1/K) sum_k exp(log w_k), every log w_k a sample's log-density."""
    model, x, k = tiny_model(1), binary_images(8), 6
    torch.manual_seed(9)
    terms = IWAE(IWAEConfig(k=k), ctx())(model, x, None, None)
    torch.manual_seed(9)
    mu, logvar = model.encode(x)
    eps = torch.randn(k, *mu.shape)
    z = mu + torch.exp(0.5 * logvar) * eps
    logits = model.decode(z.reshape(-1, LATENT)).view(k, 8, *SHAPE)
    log_w = (
        Bernoulli(logits=logits).log_prob(x.expand(k, *x.shape)).flatten(2).sum(-1)
        + Normal(0.0, 1.0).log_prob(z).sum(-1)
        - Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    ).double()
    expected = (torch.logsumexp(log_w, 0) - math.log(k)).mean()
    torch.testing.assert_close(terms["iw_elbo"].double(), expected, rtol=1e-6, atol=1e-4)


def prototype_images(n: int, seed: int = 3) -> torch.Tensor:
    """Binary images with structure to learn: 4 random prototypes, each pixel flipped with probability 0.1."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(4, *SHAPE, generator=g).round()
    x = prototypes[torch.randint(0, 4, (n,), generator=g)]
    flips = torch.rand(x.shape, generator=g) < 0.1
    return torch.where(flips, 1 - x, x)


def test_on_a_trained_model_the_iw_bound_rises_with_k():
    torch.manual_seed(0)
    model = tiny_model(2)
    x = prototype_images(256)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    elbo = ELBO(ELBOConfig(), ctx())
    for _ in range(150):
        optimizer.zero_grad()
        elbo(model, x, None, None)["loss"].backward()
        optimizer.step()
    bounds = {}
    with torch.no_grad():
        for k in (1, 5, 50):
            values = []
            for seed in range(4):
                torch.manual_seed(seed)
                values.append(IWAE(IWAEConfig(k=k), ctx())(model, x, None, None)["iw_elbo"].item())
            bounds[k] = float(np.mean(values))
    assert bounds[1] < bounds[5] < bounds[50], bounds
    assert bounds[50] - bounds[1] > 0.05, bounds  # a real gain, not noise


class LinearEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 2 * LATENT)

    def forward(self, x):
        return self.lin(x.flatten(1)).chunk(2, dim=-1)


class LinearDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(LATENT, 16)

    def forward(self, z):
        return self.lin(z).view(-1, *SHAPE)


def test_dreg_gradients_match_their_definition():
    """Tucker et al. (2019): encoder gradient sum_k w~_k^2 (d log w_k / d z_k)(d z_k / d phi) with q's parameters
    stopped inside log q; decoder gradient sum_k w~_k grad log w_k (the IWAE one). Written out per sample here."""
    torch.manual_seed(0)
    model = VAE(LinearEncoder(), LinearDecoder(), LATENT, StandardNormal(LATENT), BernoulliLikelihood())
    x, k, b = binary_images(5, seed=4), 7, 5
    torch.manual_seed(11)
    IWAE(IWAEConfig(k=k, estimator="dreg"), ctx())(model, x, None, None)["loss"].backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    torch.manual_seed(11)
    mu, logvar = model.encode(x)
    eps = torch.randn(k, *mu.shape)
    z = mu + torch.exp(0.5 * logvar) * eps  # depends on phi
    z_leaf = z.detach().requires_grad_()  # the same values, as a leaf: d log w / d z taken by hand
    logits = model.decode(z_leaf.reshape(-1, LATENT)).view(k, b, *SHAPE)
    log_w = (
        Bernoulli(logits=logits).log_prob(x.expand(k, *x.shape)).flatten(2).sum(-1)
        + Normal(0.0, 1.0).log_prob(z_leaf).sum(-1)
        - Normal(mu.detach(), torch.exp(0.5 * logvar.detach())).log_prob(z_leaf).sum(-1)
    )  # [K, B]
    w = torch.softmax(log_w.detach(), dim=0)
    dlogw_dz = torch.autograd.grad(log_w.sum(), z_leaf, retain_graph=True)[0]  # [K, B, D], per-sample derivatives
    # Encoder: -(1/B) sum_b sum_k w~^2 dlogw/dz dz/dphi (the loss is the negative mean bound).
    enc_params = list(model.encoder.parameters())
    enc = torch.autograd.grad(z, enc_params, grad_outputs=-(w**2)[..., None] * dlogw_dz / b)
    # Decoder: -(1/B) sum_b sum_k w~ grad_theta log w_k, with z held fixed.
    dec_params = list(model.decoder.parameters())
    dec = torch.autograd.grad((-(w * log_w).sum(0)).mean(), dec_params)
    expected = {**dict(zip([f"encoder.{n}" for n, _ in model.encoder.named_parameters()], enc, strict=True))}
    expected.update(dict(zip([f"decoder.{n}" for n, _ in model.decoder.named_parameters()], dec, strict=True)))
    for name, grad in expected.items():
        torch.testing.assert_close(ours[name], grad, rtol=1e-4, atol=1e-5, msg=name)
    # And it is not the plain IWAE gradient (for the encoder).
    model.zero_grad()
    torch.manual_seed(11)
    IWAE(IWAEConfig(k=k), ctx())(model, x, None, None)["loss"].backward()
    assert not torch.allclose(model.encoder.lin.weight.grad, ours["encoder.lin.weight"], rtol=1e-3)


# ----- beta-TCVAE ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_beta_tcvae_with_unit_weights_is_the_negative_elbo_with_a_monte_carlo_kl(estimator):
    model, x = tiny_model(3), binary_images(16)
    cfg = BetaTCVAEConfig(alpha=1.0, beta=1.0, gamma=1.0, estimator=estimator)
    torch.manual_seed(2)
    terms = BetaTCVAE(cfg, ctx(500))(model, x, None, None)
    expected = -mc_elbo_per_image(model, x, seed=2).mean()
    torch.testing.assert_close(terms["loss"], expected, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(
        terms["mi"] + terms["tc"] + terms["dwkl"], expected - terms["recon"], rtol=1e-5, atol=1e-3
    )


@pytest.mark.parametrize("b, n", [(3, 10), (8, 1000), (64, 60000)])
def test_stratified_weights_rows_sum_to_one_with_the_right_entries(b, n):
    w = stratified_log_weights(b, n).double().exp()
    torch.testing.assert_close(w.sum(dim=1), torch.ones(b, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    m = b - 1
    torch.testing.assert_close(w.diagonal(), torch.full((b,), 1.0 / n, dtype=torch.float64), rtol=1e-6, atol=0)
    strat = (n - m) / (n * m)
    for i in range(b):
        others = torch.cat([w[i, :i], w[i, i + 1 :]])
        # Exactly one "stratum" entry per row, the rest 1/M (the bug in several public versions: two in one row,
        # none in another).
        assert torch.isclose(others, torch.tensor(strat, dtype=torch.float64), rtol=1e-5).sum() == 1
        assert torch.isclose(others, torch.tensor(1.0 / m, dtype=torch.float64), rtol=1e-5).sum() == m - 1


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_minibatch_densities_match_torch_distributions_values_and_gradients(estimator):
    # The hand-written backward against autograd through torch.distributions' Normal, in float64.
    g = torch.Generator().manual_seed(3)
    b, d, n = 9, 4, 500
    mu = torch.randn(b, d, generator=g, dtype=torch.float64)
    logvar = 0.5 * torch.randn(b, d, generator=g, dtype=torch.float64)
    z = mu + (0.5 * logvar).exp() * torch.randn(b, d, generator=g, dtype=torch.float64)
    log_w = estimator_log_weights(b, n, TCEstimator(estimator), torch.device("cpu"), torch.float64)
    if estimator == "mws":
        torch.testing.assert_close(log_w, torch.full((b, b), -math.log(n * b), dtype=torch.float64))
    upstream = [torch.randn(b, generator=g, dtype=torch.float64) for _ in range(3)]

    def reference(z, mu, logvar):
        pairwise = Normal(mu[None], (0.5 * logvar[None]).exp()).log_prob(z[:, None])  # [i, j, d]
        own = torch.stack([pairwise[i, i].sum() for i in range(b)])
        joint = torch.logsumexp(log_w + pairwise.sum(-1), dim=1)
        marginals = torch.logsumexp(log_w[:, :, None] + pairwise, dim=1).sum(-1)
        return own, joint, marginals

    grads = []
    for fn in (reference, log_q_estimates_fn(n, estimator)):
        leaves = [t.clone().requires_grad_() for t in (z, mu, logvar)]
        outs = fn(*leaves)
        sum((o * u).sum() for o, u in zip(outs, upstream, strict=True)).backward()
        grads.append(([o.detach() for o in outs], [t.grad for t in leaves]))
    for want, got in zip(grads[0][0] + grads[0][1], grads[1][0] + grads[1][1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    leaves = [t.clone().requires_grad_() for t in (z, mu, logvar)]
    assert torch.autograd.gradcheck(lambda *t: minibatch_densities(*t, log_w), leaves)


def log_q_estimates_fn(n, estimator):
    return lambda z, mu, logvar: log_q_estimates(z, mu, logvar, n, estimator)


def test_minibatch_densities_in_float32_match_float64():
    # The step's precision: the [B, D, B] work in float32 for the usual batch, against float64.
    g = torch.Generator().manual_seed(4)
    mu, logvar = torch.randn(128, 20, generator=g), torch.randn(128, 20, generator=g) - 2
    z = mu + (0.5 * logvar).exp() * torch.randn(128, 20, generator=g)
    got = log_q_estimates(z, mu, logvar, 60_000, "mss")
    want = log_q_estimates(z.double(), mu.double(), logvar.double(), 60_000, "mss")
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-3)


def _gaussian_posteriors(n: int, corr: float, s: float, seed: int = 0):
    """q(z|n) = N(mu_n, s^2 I) with mu_n ~ N(0, C): as n grows, q(z) -> N(0, C + s^2 I), whose TC is known."""
    g = torch.Generator().manual_seed(seed)
    cov = torch.tensor([[1.0, corr], [corr, 1.0]], dtype=torch.float64)
    mu = torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    logvar = torch.full_like(mu, 2 * math.log(s))
    z = mu + s * torch.randn(n, 2, generator=g, dtype=torch.float64)
    marginal = cov + s**2 * torch.eye(2, dtype=torch.float64)
    tc = 0.5 * (torch.log(torch.diagonal(marginal)).sum() - torch.logdet(marginal)).item()
    return mu, logvar, z, tc


def test_stratified_tc_estimate_converges_to_the_closed_form_on_gaussian_data():
    n, batch = 20_000, 2_000
    mu, logvar, z, tc = _gaussian_posteriors(n, corr=0.8, s=0.3)
    estimates = []
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    for i in range(0, n, batch):
        idx = perm[i : i + batch]
        _, log_qz, log_marginals = log_q_estimates(z[idx], mu[idx], logvar[idx], n, "mss")
        estimates.append((log_qz - log_marginals).mean().item())
    assert tc > 0.3  # a strongly correlated q(z): TC = 0.5 log(1/(1 - rho^2)) with rho ~ 0.73
    assert np.mean(estimates) == pytest.approx(tc, abs=0.05)


def test_weighted_estimator_depends_on_the_dataset_size_only_through_a_constant():
    mu, logvar, z, _ = _gaussian_posteriors(500, corr=0.5, s=0.5)
    _, q1, m1 = log_q_estimates(z, mu, logvar, 1_000, "mws")
    _, q2, m2 = log_q_estimates(z, mu, logvar, 60_000, "mws")
    shift = (2 - 1) * math.log(60_000 / 1_000)  # (D - 1) log(N2 / N1)
    torch.testing.assert_close((q2 - m2) - (q1 - m1), torch.full_like(q1, shift), rtol=0, atol=1e-4)


# ----- FactorVAE -------------------------------------------------------------------------------------------------
def test_permute_dims_keeps_each_dimensions_values_and_permutes_dimensions_independently():
    torch.manual_seed(0)
    z = torch.arange(200, dtype=torch.float32).view(50, 4)  # every value distinct
    p = permute_dims(z)
    for d in range(4):
        assert sorted(p[:, d].tolist()) == sorted(z[:, d].tolist())
    rows = torch.div(p, 4, rounding_mode="floor")  # the source row of every entry (value = 4 * row + column)
    assert not all(torch.equal(rows[:, 0], rows[:, d]) for d in range(1, 4)), "one shared permutation"
    assert not torch.equal(p, z)


def _factor_vae(seed=0):
    model = tiny_model(seed)
    cfg = FactorVAEConfig(gamma=6.0, disc_hidden=[32, 32])
    torch.manual_seed(seed + 100)
    return model, FactorVAE(cfg, ctx())


@pytest.mark.parametrize("bf16", [False, True])
def test_the_discriminators_loss_sends_no_gradient_into_the_encoder(bf16):
    # Also under the bf16 step's autocast, where the discriminator's matmuls run in bf16 (its logits in fp32).
    from torch.utils._python_dispatch import TorchDispatchMode

    model, objective = _factor_vae()
    x = binary_images(32)
    # The discriminator's layers run as one function for both of its passes (not through the modules' forward):
    # the dtypes of the matmuls that take one of its weights (transposed, as a linear layer does) say where.
    weight_shapes = {tuple(m.weight.shape[::-1]) for m in objective.discriminator.modules() if hasattr(m, "weight")}
    dtypes = set()

    class MatmulDtypes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in (torch.ops.aten.addmm.default, torch.ops.aten.mm.default) and tuple(args[-1].shape) in (
                weight_shapes
            ):
                dtypes.add(out.dtype)
            return out

    def forward():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return objective(model, x, None, None)

    torch.manual_seed(1)
    with MatmulDtypes():
        terms = forward()
    assert dtypes == {torch.bfloat16 if bf16 else torch.float32}
    assert all(terms[k].dtype == torch.float32 and torch.isfinite(terms[k]) for k in ("tc", "disc", "loss"))
    objective.minimized(terms).backward()  # what the step back-propagates: loss + disc
    with_disc = {n: p.grad.clone() for n, p in model.named_parameters()}
    disc_grads = [p.grad for p in objective.discriminator.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in disc_grads)

    model.zero_grad()
    objective.zero_grad()
    torch.manual_seed(1)
    terms = forward()
    terms["loss"].backward()  # the VAE's objective alone
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, with_disc[n], rtol=0, atol=0, msg=n)
    # ... and the VAE's loss (its TC term) trains none of the discriminator's parameters.
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in objective.discriminator.parameters())


def test_factor_vae_tc_is_the_discriminators_log_density_ratio():
    model, objective = _factor_vae(1)
    x = binary_images(16)
    torch.manual_seed(3)
    terms = objective(model, x, None, None)
    torch.manual_seed(3)
    z = model(x).z
    logits = objective.discriminator(z)
    torch.testing.assert_close(terms["tc"], (logits[:, 0] - logits[:, 1]).mean())
    torch.testing.assert_close(terms["loss"], terms["recon"] + terms["kl"] + 6.0 * terms["tc"])


def test_the_discriminator_has_its_own_optimizer_settings():
    _, objective = _factor_vae()
    (group,) = objective.param_groups()
    assert group["lr"] == 1e-4 and group["betas"] == (0.5, 0.9)
    assert {id(p) for p in group["params"]} == {id(p) for p in objective.discriminator.parameters()}


# ----- DIP-VAE ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["i", "ii"])
def test_dip_covariance_and_penalty_match_numpy(variant):
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(64, 5, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    logvar = torch.randn(64, 5, generator=g, dtype=torch.float64)
    cov = dip_covariance(mu, logvar, variant)
    expected = np.cov(mu.numpy(), rowvar=False, bias=True)  # centred over the batch (rows)
    if variant == "ii":
        expected = expected + np.diag(np.exp(logvar.numpy()).mean(axis=0))  # E[diag sigma^2], not sigma^4
    np.testing.assert_allclose(cov.numpy(), expected, rtol=1e-10)

    model, x = tiny_model(4), binary_images(32)
    cfg = DIPVAEConfig(variant=variant, lambda_od=3.0, lambda_d=None)
    torch.manual_seed(0)
    terms = DIPVAE(cfg, ctx())(model, x, None, None)
    with torch.no_grad():
        mu_m, lv_m = model.encode(x)
    c = np.cov(mu_m.double().numpy(), rowvar=False, bias=True)
    if variant == "ii":
        c = c + np.diag(np.exp(lv_m.double().numpy()).mean(axis=0))
    off = c - np.diag(np.diag(c))
    lambda_d = 30.0 if variant == "i" else 3.0  # the paper's defaults: 10 x lambda_od (I), lambda_od (II)
    penalty = 3.0 * (off**2).sum() + lambda_d * ((np.diag(c) - 1) ** 2).sum()
    assert terms["dip"].item() == pytest.approx(penalty, rel=1e-4)
    torch.testing.assert_close(terms["loss"], terms["recon"] + terms["kl"] + terms["dip"])


# ----- InfoVAE ---------------------------------------------------------------------------------------------------
def _mmd_numpy(a: np.ndarray, b: np.ndarray, kernel: str, c: float) -> float:
    def k(u, v):
        d2 = ((u - v) ** 2).sum()
        return c / (c + d2) if kernel == "imq" else math.exp(-d2 / c)

    n, m = len(a), len(b)
    xx = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_unbiased_mmd_matches_numpy(kernel):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20, 3, generator=g, dtype=torch.float64) + 0.5
    b = torch.randn(15, 3, generator=g, dtype=torch.float64)
    c = 2 * 3 * 1.0
    assert mmd_unbiased(a, b, kernel, c).item() == pytest.approx(_mmd_numpy(a.numpy(), b.numpy(), kernel, c), rel=1e-9)


@pytest.mark.parametrize(
    ("kernel", "scales"), [("imq", 40.0), ("imq", [4.0, 8.0, 20.0, 40.0, 80.0, 200.0, 400.0]), ("rbf", 4.0)]
)
def test_float32_mmd_and_its_gradient_match_the_exact_float64_differences(kernel, scales):
    # The step's case: 128 codes of a 20-d latent in float32, through |a|^2 + |b|^2 - 2ab, against the elementwise
    # differences in float64 (the expansion's cancellation stays far below the estimate's sampling noise).
    g = torch.Generator().manual_seed(6)
    z64 = (1.3 * torch.randn(128, 20, generator=g, dtype=torch.float64) + 0.3).requires_grad_()
    p64 = torch.randn(128, 20, generator=g, dtype=torch.float64)
    cs = [scales] if isinstance(scales, float) else scales

    def exact(z, p):
        def k(a, b):
            sq = (a[:, None] - b[None]).pow(2).sum(-1)
            return sum(c / (c + sq) if kernel == "imq" else torch.exp(-sq / c) for c in cs)

        n = z.shape[0]
        off = 1 - torch.eye(n, dtype=z.dtype)
        return (k(z, z) * off).sum() / (n * (n - 1)) + (k(p, p) * off).sum() / (n * (n - 1)) - 2 * k(z, p).mean()

    want = exact(z64, p64)
    want.backward()
    z32 = z64.detach().float().requires_grad_()
    got = mmd_unbiased(z32, p64.float(), kernel, scales)
    got.backward()
    assert got.item() == pytest.approx(want.item(), rel=3e-5)  # measured: 1e-6 to 4e-6
    torch.testing.assert_close(z32.grad.double(), z64.grad, rtol=1e-4, atol=1e-5 * z64.grad.abs().max().item())


@pytest.mark.parametrize(
    ("kernel", "scales"), [("imq", 3.0), ("rbf", 2.0), ("imq", [1.0, 4.0, 9.0]), ("rbf", [1.5, 6.0])]
)
def test_mmd_backward_is_the_derivative(kernel, scales):
    # UnbiasedMMD's closed-form backward against finite differences (float64), with n != m: for the codes alone
    # (prior draws as data) and for both (a learned prior's draws); a second differentiation is refused rather
    # than silently wrong.
    g = torch.Generator().manual_seed(3)
    z = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(5, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: mmd_unbiased(t, p, kernel, scales), (z,))
    assert torch.autograd.gradcheck(lambda a, b: mmd_unbiased(a, b, kernel, scales), (z, p.clone().requires_grad_()))
    (grad,) = torch.autograd.grad(mmd_unbiased(z, p, kernel, scales), z, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()


def test_unbiased_mmd_is_near_zero_for_the_same_distribution_and_positive_otherwise():
    g = torch.Generator().manual_seed(1)
    same = [
        mmd_unbiased(torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g), "imq", 8.0) for _ in range(5)
    ]
    assert abs(float(np.mean([s.item() for s in same]))) < 2e-3
    shifted = mmd_unbiased(torch.randn(200, 4, generator=g) + 1.0, torch.randn(200, 4, generator=g), "imq", 8.0)
    assert shifted.item() > 0.05


def test_info_vae_weights_its_terms_as_the_paper_says():
    model, x = tiny_model(5), binary_images(32)
    cfg = OmegaConf.structured(InfoVAEConfig)
    cfg.alpha, cfg["lambda"] = 0.5, 10.0
    torch.manual_seed(0)
    terms = InfoVAE(cfg, ctx())(model, x, None, None)
    expected = terms["recon"] + 0.5 * terms["kl"] + (0.5 + 10.0 - 1) * terms["mmd"]
    torch.testing.assert_close(terms["loss"], expected)


# ----- free bits and capacity ------------------------------------------------------------------------------------
def test_free_bits_give_no_kl_gradient_below_the_threshold():
    model, x = tiny_model(6), binary_images(64)
    with torch.no_grad():
        out = model(x)
        per_dim = StandardNormal(LATENT).kl_per_dim(out.mu, out.logvar).mean(0)
    ordered = per_dim.sort().values
    threshold = float(ordered[0] + ordered[1]) / 2  # above the smallest dimension's KL, below the others
    objective = ELBO(ELBOConfig(free_bits=threshold), ctx())
    mu = out.mu.clone().requires_grad_()
    logvar = out.logvar.clone().requires_grad_()

    class Fixed(nn.Module):  # the encoder's outputs as leaves: the KL's gradient w.r.t. them is readable
        def forward(self, x):
            return mu, logvar

    fixed = VAE(Fixed(), model.decoder, LATENT, StandardNormal(LATENT), BernoulliLikelihood())
    torch.manual_seed(0)
    terms = objective(fixed, x, None, None)
    (terms["loss"] - terms["recon"]).backward()  # the KL part only
    grad = mu.grad.abs().sum(0) + logvar.grad.abs().sum(0)
    below = per_dim < threshold
    assert below.any() and (~below).any()
    assert torch.all(grad[below] == 0) and torch.all(grad[~below] > 0)


def test_capacity_annealing_targets_a_rising_kl():
    objective = ELBO(ELBOConfig(beta=100.0, capacity_max=25.0, capacity_steps=100), ctx())
    assert [round(objective.schedule_values(s)["capacity"], 6) for s in (0, 50, 100, 500)] == [0.0, 12.5, 25.0, 25.0]
    model, x = tiny_model(7), binary_images(16)
    torch.manual_seed(0)
    terms = objective(model, x, None, torch.tensor(50.0))
    torch.testing.assert_close(terms["loss"], terms["recon"] + 100.0 * (terms["kl"] - 12.5).abs())


def test_dreg_under_torch_compile_is_the_eager_dreg_step():
    """The hook on z survives compilation: with inductor's random ops falling back to eager (same noise), the
    compiled DReG step gives the eager one's weights, and not the plain IWAE step's."""
    import torch._inductor.config as inductor

    from vae_cli.config.enums import Precision
    from vae_cli.config.training import OptimConfig, TrainerConfig
    from vae_cli.training.optim import build_optimizer
    from vae_cli.training.step import TrainStep

    def weights_after_steps(compile: bool, estimator: str) -> list[torch.Tensor]:
        model = tiny_model(8)
        objective = IWAE(IWAEConfig(k=4, estimator=estimator), ctx())
        optimizer = build_optimizer(OptimConfig(lr=1e-2), model.parameters(), fused=True)
        step = TrainStep(
            model,
            objective,
            optimizer,
            TrainerConfig(batch_size=16, compile=compile, precision=Precision.fp32),
            torch.device("cpu"),
        )
        x = binary_images(16, seed=2)
        for i in range(3):
            torch.manual_seed(i)
            step(x, torch.full((16,), -1), i)
        return [p.detach().clone() for p in model.parameters()]

    def gap(a, b) -> float:
        return max((p - q).abs().max().item() for p, q in zip(a, b, strict=True))

    previous = inductor.fallback_random
    inductor.fallback_random = True
    try:
        compiled = weights_after_steps(True, "dreg")
    finally:
        inductor.fallback_random = previous
    eager, plain = weights_after_steps(False, "dreg"), weights_after_steps(False, "iwae")
    assert gap(compiled, eager) < 1e-5 < gap(compiled, plain)


def test_factor_vaes_beta_weighs_the_kl_term():
    model = tiny_model(1)
    torch.manual_seed(101)
    objective = FactorVAE(FactorVAEConfig(gamma=6.0, beta=3.0, disc_hidden=[32, 32]), ctx())
    x = binary_images(16)
    torch.manual_seed(3)
    terms = objective(model, x, None, None)
    torch.testing.assert_close(terms["loss"], terms["recon"] + 3.0 * terms["kl"] + 6.0 * terms["tc"])

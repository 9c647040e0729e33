"""The posteriors (vae_cli/models/posteriors/) against independent computations: flows against a numerical change of
variables (bisection inverses and finite differences), IAF's autoregressive Jacobian (torch.autograd.functional),
vMF against scipy.stats.vonmises_fisher, a quadrature of its w-marginal and Wood's acceptance rate, the wrapped
normal against a quadrature over the Poincare disc, and every posterior's log q by the importance-sampling identity
E_q[p(x, z) / q(z|x)] = p(x) on a linear-Gaussian model whose p(x) is known in closed form (or by brute force
over the prior)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats
from torch import nn
from torch.distributions import MultivariateNormal

from vae_cli.config.posteriors import IAFConfig, PlanarConfig, RadialConfig
from vae_cli.models.likelihoods.gaussian import GaussianLikelihood
from vae_cli.models.networks.heads import ContextHead, split_head
from vae_cli.models.posteriors.base import PosteriorParams
from vae_cli.models.posteriors.gaussian import GaussianPosterior
from vae_cli.models.posteriors.iaf import FORGET_BIAS, IAFPosterior, module_step
from vae_cli.models.posteriors.iaf_step import IAFStepFunction
from vae_cli.models.posteriors.planar import PlanarPosterior, invertible_u, planar_step
from vae_cli.models.posteriors.planar_steps import PlanarStepsFunction
from vae_cli.models.posteriors.radial import RadialPosterior, radial_step
from vae_cli.models.posteriors.vmf import (
    UniformSphere,
    VMFKLToUniform,
    VMFPosterior,
    _beta_half,
    log_bessel_iv_and_ratio,
    log_normalizer,
    mean_resultant,
    proposals_per_entry,
    vmf_kl_to_uniform,
    wood_accepted_eps,
    wood_constants,
    wood_transform,
)
from vae_cli.models.posteriors.wrapped_normal import Ball, WrappedNormalPosterior, WrappedNormalPrior
from vae_cli.models.priors import StandardNormal
from vae_cli.models.vae import VAE

torch.set_default_dtype(torch.float32)


def params(b: int, d: int, context: int = 0, seed: int = 0, scale: float = 0.5) -> PosteriorParams:
    g = torch.Generator().manual_seed(seed)
    ctx = scale * torch.randn(b, context, generator=g) if context else None
    return PosteriorParams(torch.randn(b, d, generator=g), 0.3 * torch.randn(b, d, generator=g), ctx)


# ----- flows ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "posterior",
    [PlanarPosterior(3, 0), RadialPosterior(3, 0), IAFPosterior(3, 0, [8], 4)],
    ids=["planar", "radial", "iaf"],
)
def test_a_flow_with_no_steps_is_the_gaussian_exactly(posterior):
    p = params(4, 3)
    eps = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(1))
    flow, gauss = posterior.draw(p, eps), GaussianPosterior(3).draw(p, eps)
    assert posterior.context_dim == 0
    assert torch.equal(flow.z, gauss.z) and torch.equal(flow.log_q, gauss.log_q)


def _inverse_1d(f, y: float, lo: float = -60.0, hi: float = 60.0) -> float:
    for _ in range(200):  # bisection on a monotone map
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < y else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("kind", ["planar", "radial"])
def test_one_dimensional_flow_density_matches_a_numerical_change_of_variables(kind):
    """q(y) from the module (base density minus the log-determinant) against the derivative of the pushed-forward
    CDF, Phi((f^-1(y) - mu) / sigma), with f^-1 by bisection on the flow's forward map only."""
    torch.manual_seed(3)
    mu, logvar = torch.tensor([[0.3]]), torch.tensor([[math.log(0.8)]])
    if kind == "planar":
        # w.u = -3 would break invertibility; the parameterization keeps w.u_hat > -1.
        raw = [torch.tensor([[-3.0]]), torch.tensor([[1.0]]), torch.tensor([[0.2]])]
        post, step = PlanarPosterior(1, 1), planar_step
    else:
        raw = [torch.tensor([[0.5]]), torch.tensor([[0.1]]), torch.tensor([[-0.4]])]
        post, step = RadialPosterior(1, 1), radial_step
    context = torch.cat(raw, dim=-1)
    p = PosteriorParams(mu, logvar, context)
    sigma = math.exp(0.5 * logvar.item())

    def f(z0: float) -> float:
        return step(torch.tensor([[z0]], dtype=torch.float64), *(r.double() for r in raw))[0].item()

    ys = np.linspace(-4, 4, 81)
    h = 1e-4
    for y in ys:
        z0 = _inverse_1d(f, y)
        eps = torch.tensor([[[(z0 - mu.item()) / sigma]]])
        d = post.draw(p, eps)
        assert d.z.item() == pytest.approx(y, abs=1e-4)
        cdf = lambda t: stats.norm.cdf((_inverse_1d(f, t) - mu.item()) / sigma)  # noqa: E731
        numeric = (cdf(y + h) - cdf(y - h)) / (2 * h)
        assert d.log_q.exp().item() == pytest.approx(numeric, rel=2e-3, abs=1e-6)
    # The density integrates to 1 over the line.
    total = integrate.quad(
        lambda y: post.draw(p, torch.tensor([[[(_inverse_1d(f, y) - mu.item()) / sigma]]])).log_q.exp().item(),
        -15,
        15,
        limit=200,
    )[0]
    assert total == pytest.approx(1.0, abs=1e-3)


def test_planar_transform_is_planar_step_applied_flow_after_flow():
    # The batched transform against the one-step definition, iterated (also with IWAE's leading sample axis).
    post = PlanarPosterior(4, 5).double()
    g = torch.Generator().manual_seed(7)
    context = torch.randn(3, post.context_dim, generator=g, dtype=torch.float64)
    for z in (
        torch.randn(3, 4, generator=g, dtype=torch.float64),
        torch.randn(2, 3, 4, generator=g, dtype=torch.float64),
    ):
        want_z, want_log_det = z, torch.zeros(z.shape[:-1], dtype=torch.float64)
        for t in range(5):
            u, w, b = context.view(3, 5, 9)[:, t].split([4, 4, 1], dim=-1)
            want_z, ld = planar_step(want_z, u, w, b)
            want_log_det = want_log_det + ld
        got_z, got_log_det = post.transform(z, context)
        torch.testing.assert_close(got_z, want_z, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got_log_det, want_log_det, rtol=1e-12, atol=1e-12)


def _planar_through_autograd(z: torch.Tensor, context: torch.Tensor, flows: int):
    """``planar_step`` applied flow after flow, through autograd: the definition the fused steps must match."""
    b, d = context.shape[0], z.shape[-1]
    log_det = torch.zeros(z.shape[:-1], dtype=z.dtype)
    for t in range(flows):
        u, w, bias = context.view(b, flows, 2 * d + 1)[:, t].split([d, d, 1], dim=-1)
        z, ld = planar_step(z, u, w, bias)
        log_det = log_det + ld
    return z, log_det


@pytest.mark.parametrize("leading", [(3,), (2, 3)], ids=["batch", "iwae-draws"])
def test_planar_steps_function_gradients_match_autograd_through_planar_step(leading):
    # The hand-written backward (planar_steps.py) against autograd through the one-step definition, float64: the
    # gradients of z0 and of every flow's (u, w, b) through the context, with K draws sharing an image's flows.
    post = PlanarPosterior(4, 5).double()
    g = torch.Generator().manual_seed(21)
    results = []
    for transform in (post.transform, lambda z, c: _planar_through_autograd(z, c, 5)):
        z = torch.randn(*leading, 4, generator=g.manual_seed(22), dtype=torch.float64, requires_grad=True)
        context = torch.randn(3, post.context_dim, generator=g, dtype=torch.float64, requires_grad=True)
        out, log_det = transform(z, context)
        weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)  # not symmetric in the dims
        ((out * weights).sum() + (log_det**2).sum() / 10).backward()
        results.append((out.detach(), log_det.detach(), z.grad, context.grad))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_planar_steps_function_passes_gradcheck():
    g = torch.Generator().manual_seed(23)
    z = torch.randn(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    u_hat, w = (torch.randn(4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    b = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(PlanarStepsFunction.apply, (z, u_hat, w, b))


def test_planar_steps_under_bf16_autocast_run_in_fp32():
    # Under autocast the encoder gives bf16; the steps and the log-determinants are computed in fp32 (the old
    # autograd path summed them in bf16): closer to the float64 values than bf16 rounding of the inputs allows.
    post = PlanarPosterior(20, 10)
    g = torch.Generator().manual_seed(24)
    z = torch.randn(64, 20, generator=g).bfloat16()
    context = (0.5 * torch.randn(64, post.context_dim, generator=g)).bfloat16()
    with torch.autocast("cpu", torch.bfloat16):
        out, log_det = post.transform(z, context)
    want_z, want_ld = _planar_through_autograd(z.double(), context.double(), 10)
    assert out.dtype == torch.float32 and log_det.dtype == torch.float32
    torch.testing.assert_close(out.double(), want_z, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_det.double(), want_ld, rtol=1e-5, atol=1e-5)


def test_planar_parameterization_keeps_the_flow_invertible():
    """w.u_hat >= -1 for any u, w (Rezende & Mohamed, appendix A.1): then f is monotone along w, so invertible."""
    g = torch.Generator().manual_seed(0)
    u, w = torch.randn(1000, 4, generator=g) * 3, torch.randn(1000, 4, generator=g) * 3
    assert ((w * u).sum(-1) < -1).sum() > 100  # many raw pairs break the condition
    assert ((w.double() * invertible_u(u.double(), w.double())).sum(-1) >= -1 - 1e-9).all()
    assert ((w * invertible_u(u, w)).sum(-1) >= -1 - 1e-4).all()  # float32 round-off of a ~50 cancellation


@pytest.mark.parametrize("kind", ["planar", "radial", "iaf"])
def test_two_dimensional_log_determinants_match_finite_differences(kind):
    d = 2
    post = {
        "planar": PlanarPosterior(d, 3),
        "radial": RadialPosterior(d, 3),
        "iaf": IAFPosterior(d, 3, [6, 6], 3),
    }[kind].double()
    p = params(1, d, post.context_dim, seed=4, scale=1.0)
    ctx = None if p.context is None else p.context.double()
    for point in torch.randn(10, 1, d, generator=torch.Generator().manual_seed(5)).double():
        _, log_det = post.transform(point, ctx)
        jac = torch.autograd.functional.jacobian(lambda z: post.transform(z.view(1, d), ctx)[0].view(d), point.view(d))
        h = 1e-6
        fd = torch.stack(
            [
                (post.transform(point + h * e, ctx)[0] - post.transform(point - h * e, ctx)[0]).view(d) / (2 * h)
                for e in torch.eye(d, dtype=torch.float64)
            ],
            dim=1,
        )
        assert torch.allclose(jac, fd, atol=1e-6)
        assert log_det.item() == pytest.approx(torch.linalg.slogdet(fd)[1].item(), abs=1e-6)


def test_iaf_transform_with_the_merged_context_product_equals_each_made_reading_h():
    # One product for every step's context projections (and shared by K draws) against each MADE's own layers.
    post = IAFPosterior(4, 3, [10, 10], 5).double()
    g = torch.Generator().manual_seed(8)
    h = torch.randn(3, 5, generator=g, dtype=torch.float64)
    for z in (
        torch.randn(3, 4, generator=g, dtype=torch.float64),
        torch.randn(2, 3, 4, generator=g, dtype=torch.float64),
    ):
        want_z, want_log_det = z, torch.zeros(z.shape[:-1], dtype=torch.float64)
        h_k = h.expand(*z.shape[:-1], 5)
        for t, made in enumerate(post.steps):
            if t > 0:
                want_z = want_z.flip(-1)
            m, s = made(want_z, h_k)
            sigma = torch.sigmoid(s + FORGET_BIAS)
            want_z = sigma * want_z + (1 - sigma) * m
            want_log_det = want_log_det + torch.log(sigma).sum(-1)
        got_z, got_log_det = post.transform(z, h)
        torch.testing.assert_close(got_z, want_z, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got_log_det, want_log_det, rtol=1e-12, atol=1e-12)


def _iaf_through_autograd(post: IAFPosterior, z: torch.Tensor, h: torch.Tensor | None):
    """transform with every step through the MADE module and autograd (``module_step``), not ``iaf_step``."""
    log_det = z.new_zeros(z.shape[:-1])
    projected = post.project_context(h) if h is not None and post.context_dim > 0 else [None] * post.flows
    for t, made in enumerate(post.steps):
        if t > 0:
            z = z.flip(-1)
        z, step_log_det = module_step(made, z, projected[t], post.affine)
        log_det = log_det + step_log_det
    return (z.flip(-1) if post.flows > 1 and post.flows % 2 == 0 else z), log_det


def _iaf_grads(post: IAFPosterior, z: torch.Tensor, h: torch.Tensor | None, transform, dtype=None):
    post.zero_grad(set_to_none=True)
    leaves = [t.detach().clone().requires_grad_() for t in (z, h) if t is not None]
    z_in, h_in = leaves[0], (leaves[1] if h is not None else None)
    with torch.autocast("cpu", torch.bfloat16, enabled=dtype == torch.bfloat16):
        out, log_det = transform(post, z_in, h_in)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)  # not symmetric in the dimensions
    ((out * weights).sum() + (log_det.float() ** 2).sum() / 10).backward()
    grads = [p.grad.clone() for p in post.parameters()] + [t.grad.clone() for t in leaves]
    return out.detach(), log_det.detach(), grads


@pytest.mark.parametrize("affine", [False, True], ids=["gated", "affine"])
@pytest.mark.parametrize("context", [5, 0], ids=["context", "no-context"])
@pytest.mark.parametrize("leading", [(3,), (2, 3)], ids=["batch", "iwae-draws"])
def test_iaf_step_function_matches_the_made_module_through_autograd(context, leading, affine):
    # The fused step (iaf_step.py, hand-written backward) against the MADE module and the update through autograd,
    # float64: values, and gradients for every weight, bias, z and h, with K draws sharing h (IWAE).
    post = IAFPosterior(4, 3, [10, 10], context, affine).double()
    g = torch.Generator().manual_seed(12)
    for p in post.parameters():  # away from the initialization, so that every term is exercised
        p.data.add_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.3)
    z = torch.randn(*leading, 4, generator=g, dtype=torch.float64)
    h = torch.randn(3, context, generator=g, dtype=torch.float64) if context else None
    got_z, got_ld, got_grads = _iaf_grads(post, z, h, IAFPosterior.transform)
    want_z, want_ld, want_grads = _iaf_grads(post, z, h, _iaf_through_autograd)
    torch.testing.assert_close(got_z, want_z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_ld, want_ld, rtol=1e-12, atol=1e-12)
    assert len(got_grads) == len(want_grads)
    for got, want in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # The masked weights' gradients are zero where the mask is (the weights never leave the mask's pattern).
    for made in post.steps:
        for weight, _bias, mask in made.masked_layers():
            assert weight.grad is not None and (weight.grad[mask == 0] == 0).all()


@pytest.mark.parametrize("affine", [False, True], ids=["gated", "affine"])
def test_iaf_step_function_passes_gradcheck(affine):
    post = IAFPosterior(3, 1, [5], 2).double()
    made = post.steps[0]
    g = torch.Generator().manual_seed(13)
    layers = [
        (w.detach().clone().requires_grad_(), b.detach().clone().requires_grad_(), m)
        for w, b, m in made.masked_layers()
    ]
    z = torch.randn(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    c1 = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    flat = [t for layer in layers for t in layer]
    step = lambda *a: IAFStepFunction.apply(*a[:3], FORGET_BIAS, affine, *a[3:])  # noqa: E731
    assert torch.autograd.gradcheck(step, (z, c0, c1, *flat))


@pytest.mark.parametrize("affine", [False, True], ids=["gated", "affine"])
def test_iaf_step_function_under_bf16_autocast_matches_the_module(affine):
    # Under autocast the forward does the module's ops in the module's dtypes: the same values, bit for bit; the
    # gradients differ only by the order of bf16 roundings.
    post = IAFPosterior(20, 4, [64, 64], 8, affine)
    g = torch.Generator().manual_seed(14)
    z, h = torch.randn(32, 20, generator=g), torch.randn(32, 8, generator=g)
    got_z, got_ld, got_grads = _iaf_grads(post, z, h, IAFPosterior.transform, torch.bfloat16)
    want_z, want_ld, want_grads = _iaf_grads(post, z, h, _iaf_through_autograd, torch.bfloat16)
    assert got_z.dtype == torch.float32 and torch.equal(got_z, want_z) and torch.equal(got_ld, want_ld)
    for got, want in zip(got_grads, want_grads, strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=0.05, atol=0.02 * want.abs().max().item())


def test_iaf_step_is_autoregressive_with_the_gated_diagonal():
    d = 5
    post = IAFPosterior(d, 1, [16, 16], 3).double()
    h = torch.randn(1, 3, dtype=torch.float64)
    z = torch.randn(1, d, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: post.transform(v.view(1, d), h)[0].view(d), z.view(d))
    assert torch.count_nonzero(torch.triu(jac, diagonal=1)) == 0  # z'_i depends on z_<=i only
    _m, s = post.steps[0](z, h)
    assert torch.allclose(torch.diagonal(jac), torch.sigmoid(s + FORGET_BIAS).view(d))
    # The context reaches every output (pythae's IAF leaves it out).
    jh = torch.autograd.functional.jacobian(lambda c: post.transform(z, c.view(1, 3))[0].view(d), h.view(3))
    assert (jh.abs().sum(dim=1) > 0).all()


@pytest.mark.parametrize("context", [3, 0], ids=["context", "no-context"])
def test_iaf_affine_step_has_the_exp_s_diagonal_and_its_log_det_is_the_jacobians(context):
    # posterior.step=affine: z' = z exp(s) + m. Its Jacobian (torch.autograd.functional.jacobian) is lower
    # triangular with diagonal exp(s) from the MADE's own outputs, and the transform's log |det| over 3 steps is
    # slogdet of the whole chain's Jacobian, taken numerically (an independent computation of the change of volume).
    d = 5
    post = IAFPosterior(d, 3, [16, 16], context, affine=True).double()
    g = torch.Generator().manual_seed(21)
    for p in post.parameters():  # away from the initialization: s well away from 0
        p.data.add_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.3)
    h = torch.randn(1, context, generator=g, dtype=torch.float64) if context else None
    z = torch.randn(1, d, generator=g, dtype=torch.float64)
    one = IAFPosterior(d, 1, [16, 16], context, affine=True).double()
    one.steps[0].load_state_dict(post.steps[0].state_dict())
    jac = torch.autograd.functional.jacobian(lambda v: one.transform(v.view(1, d), h)[0].view(d), z.view(d))
    assert torch.count_nonzero(torch.triu(jac, diagonal=1)) == 0
    _m, s = one.steps[0](z, h)
    torch.testing.assert_close(torch.diagonal(jac), torch.exp(s).view(d), rtol=1e-12, atol=0)
    assert s.abs().max() > 0.1  # the test would not tell exp(s) from 1 otherwise
    whole = torch.autograd.functional.jacobian(lambda v: post.transform(v.view(1, d), h)[0].view(d), z.view(d))
    _, log_det = post.transform(z, h)
    assert log_det.item() == pytest.approx(torch.linalg.slogdet(whole)[1].item(), abs=1e-10)


def test_iaf_step_is_a_config_key_that_reaches_the_posterior():
    # posterior.step reaches the posterior through the schema and the builder: gated by default (the paper's),
    # affine on request; a value outside the two is refused by the schema.
    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    from vae_cli.config.posteriors import IAFConfig
    from vae_cli.models.posteriors.iaf import build

    node = OmegaConf.structured(IAFConfig)
    assert build(node, 4).affine is False
    node.step = "affine"
    assert build(node, 4).affine is True
    with pytest.raises(ValidationError):
        node.step = "sigmoid"


# ----- vMF ----------------------------------------------------------------------------------------------------------
def vmf_params(mu: np.ndarray, kappa: float) -> PosteriorParams:
    raw = (kappa - 1) + math.log(-math.expm1(-(kappa - 1)))  # softplus(raw) + 1 = kappa, without overflow
    m = torch.tensor(mu, dtype=torch.float32).view(1, -1)
    return PosteriorParams(m, torch.full_like(m, raw))


@pytest.mark.parametrize(("m", "kappa"), [(3, 2.0), (5, 10.0), (10, 40.0)])
def test_vmf_log_density_matches_scipy(m, kappa):
    rng = np.random.default_rng(0)
    mu = rng.normal(size=m)
    mu /= np.linalg.norm(mu)
    z = rng.normal(size=(50, m))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    ours = VMFPosterior(m).log_prob(torch.tensor(z, dtype=torch.float32), vmf_params(mu, kappa))
    theirs = stats.vonmises_fisher(mu, kappa).logpdf(z)
    assert np.allclose(ours.numpy(), theirs, atol=2e-4)


@pytest.mark.parametrize(("m", "kappa"), [(3, 1.5), (3, 20.0), (8, 5.0), (20, 50.0)])
def test_vmf_samples_have_the_mean_resultant_length_and_acceptance_rate(m, kappa):
    n = 40_000
    p = vmf_params(np.eye(m)[1], kappa)
    g = torch.Generator().manual_seed(0)
    d = VMFPosterior(m).draw(p, torch.randn(n, 1, m, generator=g), generator=g)
    assert torch.allclose(d.z.norm(dim=-1), torch.ones(n, 1), atol=1e-5)
    w = d.z[:, 0, 1].double()
    # E[mu.z] = A_m(kappa): by quadrature of the w-marginal exp(kappa w) (1 - w^2)^((m-3)/2) on [-1, 1].
    dens = lambda t: math.exp(kappa * (t - 1)) * (1 - t * t) ** ((m - 3) / 2)  # noqa: E731
    quad = integrate.quad(lambda t: t * dens(t), -1, 1)[0] / integrate.quad(dens, -1, 1)[0]
    assert mean_resultant(m, torch.tensor(kappa, dtype=torch.float64)).item() == pytest.approx(quad, rel=1e-6)
    assert w.mean().item() == pytest.approx(quad, abs=4 * w.std().item() / math.sqrt(n))
    # The directions orthogonal to mu are uniform: their mean is 0.
    assert d.z[:, 0, [0, *list(range(2, m))]].mean(0).abs().max() < 4 / math.sqrt(n)
    # Wood's acceptance probability, E_eps[exp((m-1) log t - t + d)] over eps ~ Beta((m-1)/2, (m-1)/2).
    a, b, dd = (v.item() for v in wood_constants(m, torch.tensor(kappa, dtype=torch.float64)))
    beta = stats.beta((m - 1) / 2, (m - 1) / 2)

    def accept(e: float) -> float:
        t = 2 * a * b / (1 - (1 - b) * e)
        return math.exp((m - 1) * math.log(t) - t + dd) * beta.pdf(e)

    rate = integrate.quad(accept, 0, 1, limit=200)[0]
    counts: list[int] = []
    wood_accepted_eps(m, torch.full((n,), kappa, dtype=torch.float64), torch.Generator().manual_seed(1), counts)
    proposals, samples = counts
    assert samples / proposals == pytest.approx(rate, abs=4 * math.sqrt(rate * (1 - rate) / proposals) + 1e-3)


@pytest.mark.parametrize(("m", "kappa"), [(20, 150.0), (3, 20.0)])
def test_wood_sampler_in_small_batches_draws_the_w_marginal_at_wood_s_rate(m, kappa):
    """A training batch (128 entries) makes 6 proposals per entry at once (16 in the last rounds) and keeps each entry's first accepted
    one; that must still be the rejection sampler: w = mu.z distributed as exp(kappa w) (1 - w^2)^((m-3)/2) on
    [-1, 1] (KS test against its CDF by quadrature) and samples / proposals at Wood's acceptance probability.
    kappa = 150 at m = 20 is where a trained S-VAE sits and where the envelope accepts least (~73%)."""
    assert proposals_per_entry(128) == 6 and proposals_per_entry(10) == 16 and proposals_per_entry(40_000) == 1
    g = torch.Generator().manual_seed(5)
    counts: list[int] = []
    kappa_t = torch.full((128,), kappa, dtype=torch.float64)
    eps = torch.cat([wood_accepted_eps(m, kappa_t, g, counts) for _ in range(250)])
    proposals = sum(counts[0::2])
    samples = sum(counts[1::2])
    assert samples == eps.numel() == 32_000
    w, _, _, _ = wood_transform(m, kappa_t.repeat(250), eps)
    grid = np.linspace(-1, 1, 400_001)
    log_dens = kappa * (grid - 1) + 0.5 * (m - 3) * np.log(np.clip(1 - grid * grid, 1e-300, None))
    cdf = integrate.cumulative_trapezoid(np.exp(log_dens), grid, initial=0.0)
    cdf /= cdf[-1]
    assert stats.kstest(w.numpy(), lambda t: np.interp(t, grid, cdf)).pvalue > 1e-3
    a, b, dd = (v.item() for v in wood_constants(m, torch.tensor(kappa, dtype=torch.float64)))
    beta = stats.beta((m - 1) / 2, (m - 1) / 2)
    rate = integrate.quad(
        lambda e: (
            math.exp((m - 1) * math.log(2 * a * b / (1 - (1 - b) * e)) - 2 * a * b / (1 - (1 - b) * e) + dd)
            * beta.pdf(e)
        ),
        0,
        1,
        limit=200,
    )[0]
    assert samples / proposals == pytest.approx(rate, abs=4 * math.sqrt(rate * (1 - rate) / proposals) + 1e-3)


@pytest.mark.parametrize(("m", "kappa"), [(3, 1.2), (10, 8.0), (20, 100.0), (64, 1.0e4), (64, 3.0)])
def test_vmf_kl_to_the_uniform_sphere_matches_scipy_entropy_and_monte_carlo(m, kappa):
    k = torch.tensor([kappa], dtype=torch.float64, requires_grad=True)
    kl = vmf_kl_to_uniform(m, k)
    area = math.log(2) + (m / 2) * math.log(math.pi) - math.lgamma(m / 2)
    mu = np.eye(m)[0]
    assert kl.item() == pytest.approx(area - stats.vonmises_fisher(mu, kappa).entropy(), rel=1e-4, abs=1e-4)
    kl.sum().backward()
    assert torch.isfinite(k.grad).all() and k.grad.item() > 0  # more concentrated: further from uniform
    # Monte Carlo: mean of log q(z) - log p(z) over draws.
    n = 20_000
    p = vmf_params(mu, kappa)
    g = torch.Generator().manual_seed(2)
    post = VMFPosterior(m)
    d = post.draw(p, torch.randn(n, 1, m, generator=g), generator=g)
    mc = (d.log_q - UniformSphere(m).log_prob(d.z)).double()
    assert mc.mean().item() == pytest.approx(kl.item(), abs=4 * mc.std().item() / math.sqrt(n) + 1e-3)
    # And the model's KL (from the raw encoder outputs) is the same closed form.
    assert post.kl(p.mu, p.logvar, d.z[0], d.log_q[0], UniformSphere(m)).item() == pytest.approx(kl.item(), rel=1e-4)


def test_vmf_log_normalizer_has_no_nan_at_high_dimension_and_concentration():
    for m in (3, 64, 256):
        k = torch.tensor([1.0, 30.0, 1.0e4, 1.0e5], dtype=torch.float64, requires_grad=True)
        c = log_normalizer(m, k)
        c.sum().backward()
        assert torch.isfinite(c).all() and torch.isfinite(k.grad).all()
        expected = stats.vonmises_fisher(np.eye(m)[0], 30.0).logpdf(np.eye(m)[0]) - 30.0
        assert c[1].item() == pytest.approx(expected, rel=1e-6)


def _wood_through_autograd(m: int, kappa: torch.Tensor, eps: torch.Tensor):
    """(w, sqrt(1 - w^2), log q, score) written out with autograd (log C through ``log_normalizer``): the formulas
    ``WoodTransform`` must match, value and gradient."""
    _, b, _ = wood_constants(m, kappa)
    w = (1 - (1 + b) * eps) / (1 - (1 - b) * eps)
    sine = torch.sqrt((1 - w.pow(2)).clamp_min(1e-30))
    log_q = kappa * w + log_normalizer(m, kappa)
    score = log_q + 0.5 * (m - 3) * torch.log(1 - w.pow(2)) + torch.log(2 * b) - 2 * torch.log(1 - (1 - b) * eps)
    return w, sine, log_q, score


@pytest.mark.parametrize("m", [3, 20, 64])
def test_wood_transform_matches_autograd_through_its_formulas(m):
    g = torch.Generator().manual_seed(31)
    weights = [torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(4)]
    results = []
    for transform in (lambda k, e: wood_transform(m, k, e), lambda k, e: _wood_through_autograd(m, k, e)):
        kappa = torch.tensor([1.5, 7.0, 40.0, 900.0], dtype=torch.float64, requires_grad=True)
        eps = wood_accepted_eps(m, kappa.detach().expand(3, 4), torch.Generator().manual_seed(32))  # [K, B]
        outs = transform(kappa, eps)
        sum((o * wt).sum() for o, wt in zip(outs, weights, strict=True)).backward()
        results.append([o.detach() for o in outs] + [kappa.grad])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


def test_wood_transform_and_log_bessel_pass_gradcheck():
    kappa = torch.tensor([1.2, 5.0, 30.0], dtype=torch.float64, requires_grad=True)
    eps = torch.tensor([[0.3, 0.5, 0.7], [0.45, 0.55, 0.2]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda k: wood_transform(10, k, eps), (kappa,))
    # log I_v and I_(v+1)/I_v from one host call: both outputs' derivatives (d A/dk = 1 - A^2 - (2v+1) A / k)
    assert torch.autograd.gradcheck(lambda k: log_bessel_iv_and_ratio(4.5, k), (kappa,))
    # the KL's closed-form derivative k A'(k) (vmf_kl_to_uniform returns fp32: gradcheck the float64 function)
    assert torch.autograd.gradcheck(lambda k: VMFKLToUniform.apply(k, 11), (kappa,))
    log_iv, ratio = log_bessel_iv_and_ratio(4.5, kappa.detach())
    k = kappa.detach().numpy()
    assert np.allclose(log_iv.numpy(), np.log(special.iv(4.5, k)), rtol=1e-12)
    assert np.allclose(ratio.numpy(), special.iv(5.5, k) / special.iv(4.5, k), rtol=1e-12)


@pytest.mark.parametrize("m", [3, 20])
def test_wood_proposals_are_beta_distributed(m):
    # The envelope's eps ~ Beta((m-1)/2, (m-1)/2), drawn as a ratio of gamma draws from the given generator.
    draws = _beta_half(m, (20_000,), torch.Generator().manual_seed(33), torch.device("cpu"))
    assert stats.kstest(draws.numpy(), stats.beta((m - 1) / 2, (m - 1) / 2).cdf).pvalue > 1e-3
    again = _beta_half(m, (20_000,), torch.Generator().manual_seed(33), torch.device("cpu"))
    assert torch.equal(draws, again)


def test_vmf_gradient_in_kappa_is_unbiased_with_the_correction_term():
    """d/dkappa E[mu.z] = A_m'(kappa) (finite differences of the closed form): the reparameterized gradient with
    the rejection sampler's correction term (reconstruction's surrogate) matches it; without it, it is off."""
    m, kappa, n = 3, 2.0, 200_000
    torch.manual_seed(0)
    raw = torch.tensor([[math.log(math.expm1(kappa - 1))]], requires_grad=True)
    mu = torch.tensor([[1.0, 0.0, 0.0]])
    p = PosteriorParams(mu, raw.expand(1, m))
    d = VMFPosterior(m).draw(p, torch.randn(n, 1, m), score=True)
    f = d.z[:, 0, 0]
    (g_rep,) = torch.autograd.grad(f.mean(), raw, retain_graph=True)
    surrogate = f + f.detach() * (d.score[:, 0] - d.score[:, 0].detach())
    (g_all,) = torch.autograd.grad(surrogate.mean(), raw)
    h = 1e-4
    a = lambda k: mean_resultant(m, torch.tensor(k, dtype=torch.float64)).item()  # noqa: E731
    dkappa_draw = 1 / (1 + math.exp(-raw.item()))  # softplus' derivative
    exact = (a(kappa + h) - a(kappa - h)) / (2 * h) * dkappa_draw
    assert g_all.item() == pytest.approx(exact, rel=0.05)
    assert abs(g_rep.item() - exact) > 0.1 * abs(exact)


# ----- Poincare ball ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [1.0, 0.5])
def test_wrapped_normal_integrates_to_one_over_the_disc(c):
    """The density is with respect to the ball's Riemannian volume lambda_z^2 dz: integrated in polar coordinates
    (r, theta) over the disc of radius 1/sqrt(c)."""
    post = WrappedNormalPosterior(2, c).double()
    mu_raw = torch.tensor([[0.4, -0.3]], dtype=torch.float64)
    p = PosteriorParams(mu_raw, torch.tensor([[math.log(0.3), math.log(0.15)]], dtype=torch.float64))
    radius = 1 / math.sqrt(c)
    rs = np.linspace(0, radius * (1 - 1e-9), 1201)
    ts = np.linspace(0, 2 * math.pi, 721)
    rr, tt = np.meshgrid(rs, ts, indexing="ij")
    pts = torch.tensor(np.stack([rr * np.cos(tt), rr * np.sin(tt)], -1).reshape(-1, 1, 2))
    log_q = post.log_prob(pts, p).double().view(rr.shape).numpy()
    lam2 = (2 / (1 - c * rr**2)) ** 2
    integrand = np.exp(log_q) * lam2 * rr
    total = np.trapezoid(np.trapezoid(integrand, ts, axis=1), rs)
    assert total == pytest.approx(1.0, abs=2e-3)
    prior = WrappedNormalPrior(2, 1.0)
    prior.attach_posterior(post)
    log_p = prior.log_prob(pts).double().view(rr.shape).numpy()
    assert np.trapezoid(np.trapezoid(np.exp(log_p) * lam2 * rr, ts, axis=1), rs) == pytest.approx(1.0, abs=2e-3)


def test_wrapped_normal_samples_lie_at_their_tangent_distance_with_the_density_of_their_point():
    ball = Ball(1.0)
    post = WrappedNormalPosterior(3, 1.0)
    p = params(4, 3, seed=7)
    eps = torch.randn(6, 4, 3, generator=torch.Generator().manual_seed(8))
    d = post.draw(p, eps)
    mu = ball.expmap0(p.mu.double())
    v = torch.exp(0.5 * p.logvar.double()) * eps.double()
    # The geodesic distance d(mu, z) = 2/sqrt(c) artanh(sqrt(c) |-mu (+) z|) is |v|.
    dist = 2 * torch.atanh(ball.mobius_add(-mu, d.z.double()).norm(dim=-1))
    assert torch.allclose(dist, v.norm(dim=-1), atol=1e-4)
    assert torch.allclose(post.log_prob(d.z, p), d.log_q, atol=2e-3)
    assert (d.z.norm(dim=-1) < 1).all()


# ----- every posterior's log q: E_q[p(x, z) / q(z | x)] = p(x) ---------------------------------------------------
class FixedEncoder(ContextHead, nn.Module):
    """Gives one image's posterior parameters (mu, logvar[, context]), whatever the image."""

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor, context_scale: float = 0.15) -> None:
        super().__init__()
        self.mu, self.logvar, self.context_scale = mu, logvar, context_scale
        self.head = nn.Linear(1, 2 * mu.shape[-1])

    def forward(self, x):
        b = x.shape[0]
        out = torch.cat([self.mu, self.logvar], -1).expand(b, -1)
        if self.context_dim:
            g = torch.Generator().manual_seed(11)
            ctx = self.context_scale * torch.randn(1, self.context_dim, generator=g)
            out = torch.cat([out, ctx.expand(b, -1)], -1)
        return split_head(out, self.context_dim)


class LinearDecoder(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, z):
        return (z @ self.weight.T + self.bias).view(-1, 1, 2, 2)


def linear_gaussian_model(posterior, prior, mu, logvar, d: int = 2, std: float = 0.5):
    g = torch.Generator().manual_seed(3)
    weight, bias = torch.randn(4, d, generator=g), torch.randn(4, generator=g)
    encoder = FixedEncoder(mu, logvar)
    encoder.add_context(posterior.context_dim)
    model = VAE(encoder, LinearDecoder(weight, bias), d, prior, GaussianLikelihood(std), posterior=posterior)
    return model, weight, bias, std


def importance_log_px(model, x, n: int, seed: int = 0) -> tuple[float, float]:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ll, lp, lq, _ = model.log_weights(x, None, torch.randn(n, 1, model.latent_dim, generator=g), generator=g)
    log_w = (ll + lp - lq).double().view(-1)
    est = torch.logsumexp(log_w, 0).item() - math.log(n)
    w = torch.exp(log_w - log_w.max())
    rel_se = (w.std() / w.mean()).item() / math.sqrt(n)
    return est, rel_se


X = torch.tensor([[[[0.3, -1.2], [0.8, 0.1]]]])


@pytest.mark.parametrize(
    "posterior",
    [
        GaussianPosterior(2),
        PlanarPosterior(2, 4),
        RadialPosterior(2, 4),
        IAFPosterior(2, 2, [8, 8], 4),
    ],
    ids=["gaussian", "planar", "radial", "iaf"],
)
def test_flat_posteriors_are_densities_by_the_importance_sampling_identity(posterior):
    # A base Gaussian wider than the exact posterior, so that the flows' contractions leave the weights light-tailed.
    torch.manual_seed(0)
    model, w, b, std = linear_gaussian_model(
        posterior, StandardNormal(2), torch.tensor([[0.2, -0.4]]), torch.full((1, 2), math.log(4.0)), std=1.5
    )
    exact = MultivariateNormal(b, w @ w.T + std**2 * torch.eye(4)).log_prob(X.view(-1)).item()
    est, rel_se = importance_log_px(model, X, 200_000)
    assert rel_se < 0.005
    assert est == pytest.approx(exact, abs=5 * rel_se + 2e-3)


def test_vmf_is_a_density_by_the_importance_sampling_identity():
    m = 3
    posterior = VMFPosterior(m)
    prior = UniformSphere(m)
    mu = torch.tensor([[0.3, -0.8, 0.5]])
    raw = math.log(math.expm1(4.0 - 1))
    model, w, b, std = linear_gaussian_model(posterior, prior, mu, torch.full((1, m), raw), d=m, std=0.8)
    est, rel_se = importance_log_px(model, X, 200_000)
    # Brute force over the prior: p(x) = E_{z ~ U(S^2)}[p(x | z)], z from normalized Gaussians.
    z = torch.nn.functional.normalize(torch.randn(2_000_000, m, generator=torch.Generator().manual_seed(5)), dim=-1)
    means = z @ w.T + b
    log_lik = torch.distributions.Normal(means, std).log_prob(X.view(1, -1)).sum(-1).double()
    brute = torch.logsumexp(log_lik, 0).item() - math.log(z.shape[0])
    assert est == pytest.approx(brute, abs=5 * rel_se + 5e-3)


def test_wrapped_normal_is_a_density_by_the_importance_sampling_identity():
    d = 2
    posterior = WrappedNormalPosterior(d, 1.0)
    prior = WrappedNormalPrior(d, 1.0)
    model, w, b, std = linear_gaussian_model(
        posterior, prior, torch.tensor([[0.3, -0.2]]), torch.tensor([[math.log(0.3), math.log(0.4)]]), std=0.8
    )
    est, rel_se = importance_log_px(model, X, 200_000)
    # Brute force over the prior's samples, decoded as the model decodes (the ball's log map at the origin).
    z = prior.sample(2_000_000, generator=torch.Generator().manual_seed(6))
    means = Ball(1.0).logmap0(z.double()).float() @ w.T + b
    log_lik = torch.distributions.Normal(means, std).log_prob(X.view(1, -1)).sum(-1).double()
    brute = torch.logsumexp(log_lik, 0).item() - math.log(z.shape[0])
    assert est == pytest.approx(brute, abs=5 * rel_se + 5e-3)


def test_posterior_configs_build_their_flows():
    from omegaconf import OmegaConf

    from vae_cli.models.posteriors import iaf, planar, radial

    assert planar.build(OmegaConf.structured(PlanarConfig(flows=3)), 4).context_dim == 3 * 9
    assert radial.build(OmegaConf.structured(RadialConfig(flows=2)), 4).context_dim == 2 * 6
    assert iaf.build(OmegaConf.structured(IAFConfig(flows=2, context=7)), 4).context_dim == 7

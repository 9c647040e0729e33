"""log I_v(kappa) and I_(v+1)(kappa) / I_v(kappa) in torch (models/posteriors/bessel.py), against mpmath at 50
digits; the Debye polynomials against DLMF's; and the vMF terms built on them compile into one graph (no host call,
no graph break) that computes what the eager functions do."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from vae_cli.models.posteriors import bessel
from vae_cli.models.posteriors.bessel import SERIES_BELOW, debye_polynomials, log_iv_and_ratio
from vae_cli.models.posteriors.vmf import VMFKLToUniform, wood_accepted_eps, wood_transform

mpmath = pytest.importorskip("mpmath")  # sympy's, which torch depends on


def test_debye_polynomials_are_dlmfs():
    # DLMF 10.41.10: u_1 = (3t - 5t^3)/24, u_2 = (81t^2 - 462t^4 + 385t^6)/1152,
    # u_3 = (30375t^3 - 369603t^5 + 765765t^7 - 425425t^9)/414720
    u = debye_polynomials(4)

    def poly(coefficients: dict[int, int], denominator: int) -> list[Fraction]:
        out = [Fraction(0)] * (max(coefficients) + 1)
        for power, c in coefficients.items():
            out[power] = Fraction(c, denominator)
        return out

    def trimmed(p: list[Fraction]) -> list[Fraction]:
        while p and p[-1] == 0:
            p = p[:-1]
        return p

    assert trimmed(u[0]) == [1]
    assert trimmed(u[1]) == poly({1: 3, 3: -5}, 24)
    assert trimmed(u[2]) == poly({2: 81, 4: -462, 6: 385}, 1152)
    assert trimmed(u[3]) == poly({3: 30375, 5: -369603, 7: 765765, 9: -425425}, 414720)


ORDERS = [0.0, 0.5, 1.0, 1.5, 4.5, 9.0, 15.5, 31.0, 39.5, 63.0, 127.5]


@pytest.mark.parametrize("v", ORDERS)
def test_log_bessel_and_its_ratio_match_mpmath(v):
    mpmath.mp.dps = 50
    kappas = [10 ** (e / 8) for e in range(-24, 49)]  # 1e-3 .. 1e6
    # and both sides of where each order switches from the series to Debye's expansion
    for order in (v, v + 1):
        if order < SERIES_BELOW:
            edge = math.sqrt(SERIES_BELOW**2 - order**2)
            kappas += [edge * 0.999, edge, edge * 1.001]
    log_iv, ratio = log_iv_and_ratio(v, torch.tensor(kappas, dtype=torch.float64))
    for k, got_log, got_ratio in zip(kappas, log_iv.tolist(), ratio.tolist(), strict=True):
        want_log = mpmath.log(mpmath.besseli(v, k))
        want_ratio = mpmath.exp(mpmath.log(mpmath.besseli(v + 1, k)) - want_log)
        assert abs(got_log - float(want_log)) <= 1e-13 * max(1.0, abs(float(want_log))), (v, k)
        assert abs(got_ratio - float(want_ratio)) <= 1e-12 * float(want_ratio), (v, k)


def test_log_bessel_keeps_kappas_shape_and_dtype():
    kappa = torch.tensor([[1.0, 30.0], [45.0, 1.0e4]], dtype=torch.float32)
    log_iv, ratio = log_iv_and_ratio(9.0, kappa)
    assert log_iv.shape == ratio.shape == kappa.shape and log_iv.dtype == ratio.dtype == torch.float32
    want = log_iv_and_ratio(9.0, kappa.double().flatten())[0].float().view(2, 2)
    assert torch.equal(log_iv, want)
    with pytest.raises(ValueError, match="order must be >= 0"):
        log_iv_and_ratio(-0.5, kappa)


def test_the_vmf_draw_and_kl_compile_into_one_graph_and_match_eager():
    """The draw's transform and the KL to the uniform sphere trace without a graph break (fullgraph: a host call or a
    ``torch.compiler.disable`` in them fails here), and the compiled graph gives the eager values and gradients."""
    m = 20
    kappa0 = torch.tensor([1.5, 7.0, 40.0, 900.0, 3.0e4], dtype=torch.float64)
    eps = wood_accepted_eps(m, kappa0.expand(3, 5), torch.Generator().manual_seed(4))  # [K, B], constants
    g = torch.Generator().manual_seed(3)
    weights = [torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(4)]

    def terms(kappa: torch.Tensor) -> torch.Tensor:
        outs = wood_transform(m, kappa, eps)
        return sum((o * w).sum() for o, w in zip(outs, weights, strict=True)) + VMFKLToUniform.apply(kappa, m).sum()

    results = []
    # Compiled first, with the constants' cache empty (as at a run's first step: filling it there was a side effect
    # that dynamo refused), then eagerly; kappa is computed from a leaf, as the encoder's is.
    bessel._CONSTANTS.clear()
    for fn in (torch.compile(terms, fullgraph=True), terms):
        raw = kappa0.clone().requires_grad_()
        value = fn(raw * 1.0)
        value.backward()
        results.append((value.detach(), raw.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-10, atol=1e-12)

"""log I_v(kappa) and the ratio I_(v+1)(kappa) / I_v(kappa) of the modified Bessel function of the first kind, in
torch (float64, on kappa's device), for a real order v >= 0 and kappa > 0: what the von Mises-Fisher posterior's
normalizer, KL and mean resultant need (``vmf.py``).

Why not scipy's ``ive`` (what ``vmf.py`` called before, on the host): every S-VAE training step made two
device -> host -> device round trips, each a sync on a GPU, and under ``trainer.compile`` each was a graph break
(the compiled S-VAE step ran at 0.87x the eager one on this project's CPU; without the breaks 1.15x, README
"issue 22, a sixth round"). On a CPU's eager step the two cost the same (~200 us a call here, 0.96-1.02x on the
step). torch itself has only orders 0 and 1.

Two expansions, each used where it converges to float64 accuracy (checked against mpmath at 50 digits over
v in [0, 127.5], kappa in [1e-3, 1e6]: 5e-15 relative in log I_v, ~1e-13 in the ratio; ``tests/unit/test_posteriors.py``):

- the power series, for sqrt(v^2 + kappa^2) < SERIES_BELOW (all terms positive):
  I_v(k) = (k/2)^v / Gamma(v+1) * sum_j prod_(i<=j) (k/2)^2 / (i (i+v));
- Debye's uniform asymptotic expansion (DLMF 10.41.3) elsewhere, with s = sqrt(v^2 + k^2):
  I_v(k) ~ exp(s + v log(k / (v + s))) / sqrt(2 pi s) * sum_n u_n(t) / v^n,  t = v / s,
  where u_n(t) / v^n is a polynomial in 1/s (u_n(t) holds only the powers t^n ... t^3n), so it holds at v = 0 too
  (there it is Hankel's large-argument expansion). The polynomials u_n come from DLMF 10.41.10, in fractions. The
  ratio's logarithm is taken from the two expansions' terms, not as a difference of two logs of size ~kappa (which
  lost 2e-10 of it at kappa = 5e5).

Both are evaluated on every entry and the valid one is kept (no data-dependent branch: no host sync). No autograd:
the callers' derivatives are closed forms of the two values (d/dk log I_v = A + v/k, A' = 1 - A^2 - (2v+1) A/k).
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

DEBYE_TERMS = 13  # u_0 .. u_12 (9 already agree with mpmath to 5e-15 from SERIES_BELOW on: a margin)
SERIES_BELOW = 40.0  # sqrt(v^2 + kappa^2) below this: the power series
SERIES_TERMS = 64  # for kappa < 40 the terms peak near j = kappa/2; by j = 63 they are below 1e-23 of the peak


def debye_polynomials(count: int) -> list[list[Fraction]]:
    """Coefficients of u_0 .. u_(count-1) by power of t (DLMF 10.41.10):
    u_(n+1)(t) = t^2 (1 - t^2) u_n'(t) / 2 + 1/8 int_0^t (1 - 5 s^2) u_n(s) ds,  u_0 = 1."""
    polys = [[Fraction(1)]]
    for _ in range(count - 1):
        u = polys[-1]
        nxt = [Fraction(0)] * (len(u) + 3)
        for i in range(1, len(u)):  # t^2 (1 - t^2) / 2 * i u_i t^(i-1)
            nxt[i + 1] += Fraction(i) * u[i] / 2
            nxt[i + 3] -= Fraction(i) * u[i] / 2
        for i, c in enumerate(u):  # 1/8 int_0^t (1 - 5 s^2) u_i s^i ds
            nxt[i + 1] += c / (8 * (i + 1))
            nxt[i + 3] -= 5 * c / (8 * (i + 3))
        polys.append(nxt)
    return polys


# u_n's coefficients by power of t, exact fractions rounded once (the sums below are of a few terms each).
_DEBYE = [[float(c) for c in u] for u in debye_polynomials(DEBYE_TERMS)]
# The constants per (order, device), for the eager path (on a GPU they are made once, not copied from the host at
# every call). torch.compile does not read it: it would guard on the dict's contents (a recompile when an eager call
# fills it) and refuses a write inside a traced autograd function; a compiled graph makes them at trace time and
# holds them as its own constants.
_CONSTANTS: dict[tuple[float, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _constant_values(v: float) -> tuple[list[list[float]], list[list[float]], list[float]]:
    size = 3 * (DEBYE_TERMS - 1) + 1
    debye = [[0.0] * size, [0.0] * size]
    series: list[list[float]] = [[], []]
    for o, order in enumerate((v, v + 1.0)):
        for n, u in enumerate(_DEBYE):
            for j in range(n + 1):
                debye[o][n + 2 * j] += u[n + 2 * j] * order ** (2 * j)
        series[o] = [1 / (j * (j + order)) for j in range(1, SERIES_TERMS)]
    return debye, series, [-math.lgamma(v + 1.0), -math.lgamma(v + 2.0)]


def _constants(v: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For the orders (v, v + 1), as float64 tensors on ``device``:

    - ``orders`` [2, 1];
    - ``debye`` [2, 1, M]: sum_n u_n(t) / v^n = sum_m debye[m] s^-m (t = v / s, so the term c t^(n+2j) of u_n
      over v^n is c v^(2j) s^-(n+2j): one polynomial in 1/s per order);
    - ``series`` [2, 1, J - 1]: 1 / (j (j + v)), j = 1 .. J - 1, the ratio of the series' consecutive terms over
      (kappa/2)^2;
    - ``log_first`` [2, 1]: -log Gamma(v + 1), the series' first term without its power of kappa/2."""
    if not torch.compiler.is_compiling():
        key = (v, str(device))
        if key not in _CONSTANTS:
            _CONSTANTS[key] = _constant_tensors(v, device)
        return _CONSTANTS[key]
    return _constant_tensors(v, device)


def _constant_tensors(v: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    debye, series, log_first = _constant_values(v)
    as_tensor = lambda values: torch.tensor(values, dtype=torch.float64, device=device)  # noqa: E731
    return (
        as_tensor([[v], [v + 1.0]]),
        as_tensor(debye).unsqueeze(1),
        as_tensor(series).unsqueeze(1),
        as_tensor(log_first).unsqueeze(1),
    )


@torch.no_grad()
def log_iv_and_ratio(v: float, kappa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log I_v(kappa), I_(v+1)(kappa) / I_v(kappa)) for a fixed order ``v >= 0`` and ``kappa > 0``, elementwise,
    in kappa's device and dtype (computed in float64). No gradient (see the module's docstring)."""
    if v < 0:
        raise ValueError(f"the order must be >= 0, got {v}")
    orders, debye_poly, series_ratio, log_first = _constants(float(v), kappa.device)
    k = kappa.detach().to(torch.float64).reshape(1, -1)  # [1, N]
    # Debye, both orders at once: [2, N]
    s = torch.sqrt(orders.square() + k.square())
    inv_s = s.reciprocal().unsqueeze(-1).expand(-1, -1, debye_poly.shape[-1] - 1)
    powers = torch.cat([torch.ones_like(inv_s[..., :1]), torch.cumprod(inv_s, dim=-1)], dim=-1)
    log_tail = torch.log((powers * debye_poly).sum(-1))
    log_k_over = torch.log(k / (orders + s))  # log(k / (v + s)) per order
    debye = s + orders * log_k_over - 0.5 * torch.log(2 * math.pi * s) + log_tail
    # log I_(v+1) - log I_v from Debye without subtracting the two (each ~kappa: at kappa = 5e5 the difference of
    # the logs lost 2e-10 of the ratio): s1 - s0 = (2v + 1) / (s1 + s0), and the rest in log1p form.
    s0, s1 = s[0], s[1]
    gap = (2 * v + 1) / (s1 + s0)
    debye_diff = (
        gap
        + log_k_over[1]
        + v * torch.log1p(-(1 + gap) / (v + 1 + s1))
        - 0.5 * torch.log1p(gap / s0)
        + log_tail[1]
        - log_tail[0]
    )
    # The power series, both orders: I_v(k) = (k/2)^v / Gamma(v + 1) * (1 + sum_j prod_(i<=j) (k/2)^2 / (i (i + v)))
    half = k.clamp_min(1e-300) / 2
    terms = torch.cumprod((half.square()).unsqueeze(-1) * series_ratio, dim=-1)  # [2, N, J - 1]
    series = orders * torch.log(half) + log_first + torch.log1p(terms.sum(-1))
    use_debye = s >= SERIES_BELOW
    log_i = torch.where(use_debye, debye, series)
    diff = torch.where(use_debye[0] & use_debye[1], debye_diff, log_i[1] - log_i[0])
    return log_i[0].reshape(kappa.shape).to(kappa.dtype), torch.exp(diff).reshape(kappa.shape).to(kappa.dtype)

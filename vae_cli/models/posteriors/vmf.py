"""``posterior=vmf``: the von Mises-Fisher posterior on the unit sphere S^(m-1) (Davidson et al. 2018, the S-VAE).

    q(z | mu, kappa) = C_m(kappa) exp(kappa mu.z),   C_m(kappa) = kappa^(m/2-1) / ((2 pi)^(m/2) I_(m/2-1)(kappa))

Direction mu = the encoder's mu normalized; concentration kappa = softplus(.) + 1 from the first unit of its logvar
head (the S-VAE's single kappa per image; the head's other units are unused).

Sampling is Wood's (1994) algorithm: w = mu.z is drawn by rejection from the envelope
w = (1 - (1 + b) eps) / (1 - (1 - b) eps), eps ~ Beta((m-1)/2, (m-1)/2), accepted when
(m - 1) log t - t + d >= log u (t = 2ab / (1 - (1 - b) eps)); a direction v uniform on S^(m-2) completes
z' = (w, sqrt(1 - w^2) v) around e_1, and a Householder reflection takes e_1 to mu. The Beta draws are ratios of
chi-squares made of Gaussian draws, so a seeded generator fixes every sample (vae-eval's estimates repeat).

The gradient reparameterizes the accepted eps (w = h(eps, kappa)) and adds the correction term of the rejection
sampler (Naesseth et al. 2017, Davidson et al. eq. 7): f(z) grad log pi(eps; kappa), with
log pi = log q_w(h(eps, kappa); kappa) + log |dh/deps| + const. ``Draw.score`` carries log pi; the objective's
reconstruction adds f.detach() * (score - score.detach()), which is 0 in value and that term in gradient.

KL to the uniform prior on S^(m-1), in closed form:  kappa A_m(kappa) + log C_m(kappa) + log |S^(m-1)|,
A_m = I_(m/2) / I_(m/2-1). log I_v is taken from scipy's exponentially scaled ``ive`` in float64 (a custom autograd
function whose derivative is I_(v+1)/I_v + v/kappa), with the small-kappa series where ive underflows: no NaN at
m = 64, kappa = 1e4 (tests). It runs on the CPU: a host round trip per batch, which is why CUDA graphs are refused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import special
from torch.nn import functional as F

from vae_cli.models.posteriors.base import Draw, Posterior, PosteriorParams
from vae_cli.models.priors import Prior, randn_from

KAPPA_MIN = 1.0


def _log_iv_numpy(v: float, kappa: np.ndarray) -> np.ndarray:
    kappa = np.atleast_1d(kappa)
    with np.errstate(divide="ignore"):
        scaled = special.ive(v, kappa)
        out = np.log(scaled) + kappa
    small = ~np.isfinite(out) | (scaled <= 0)
    if small.any():  # I_v(k) ~ (k/2)^v / Gamma(v + 1) where ive underflows (large v, small kappa)
        k = kappa[small]
        out[small] = v * np.log(k / 2) - special.gammaln(v + 1)
    return out


def _ratio_numpy(v: float, kappa: np.ndarray) -> np.ndarray:
    """I_(v+1)(kappa) / I_v(kappa), computed from the log-Bessels (no overflow, no 0/0)."""
    return np.exp(_log_iv_numpy(v + 1, kappa) - _log_iv_numpy(v, kappa))


class LogBesselI(torch.autograd.Function):
    """log I_v(kappa) for a fixed order v, differentiable in kappa: d/dk log I_v = I_(v+1)/I_v + v/k."""

    @staticmethod
    def forward(ctx, kappa: torch.Tensor, v: float) -> torch.Tensor:
        k = kappa.detach().double().cpu().numpy()
        ctx.save_for_backward(kappa)
        ctx.v = v
        return torch.from_numpy(_log_iv_numpy(v, k).reshape(k.shape)).to(kappa.device, kappa.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (kappa,) = ctx.saved_tensors
        k = kappa.detach().double().cpu().numpy()
        d = torch.from_numpy(_ratio_numpy(ctx.v, k).reshape(k.shape) + ctx.v / k).to(kappa.device, kappa.dtype)
        return grad * d, None


@torch.compiler.disable  # scipy on the host: a graph break under trainer.compile, run eagerly
def log_bessel_iv(v: float, kappa: torch.Tensor) -> torch.Tensor:
    return LogBesselI.apply(kappa, v)


def log_normalizer(m: int, kappa: torch.Tensor, log_iv: torch.Tensor | None = None) -> torch.Tensor:
    """log C_m(kappa), float64 in, the vMF's log normalizing constant on S^(m-1) (``log_iv``: log I_(m/2-1)(kappa)
    when the caller has it already)."""
    v = m / 2 - 1
    if log_iv is None:
        log_iv = log_bessel_iv(v, kappa)
    return v * torch.log(kappa) - (m / 2) * math.log(2 * math.pi) - log_iv


def mean_resultant(m: int, kappa: torch.Tensor) -> torch.Tensor:
    """A_m(kappa) = E[mu.z] = I_(m/2)(kappa) / I_(m/2-1)(kappa)."""
    v = m / 2 - 1
    return torch.exp(log_bessel_iv(v + 1, kappa) - log_bessel_iv(v, kappa))


def log_sphere_area(m: int) -> float:
    """log |S^(m-1)| = log(2 pi^(m/2) / Gamma(m/2))."""
    return math.log(2) + (m / 2) * math.log(math.pi) - math.lgamma(m / 2)


def vmf_kl_to_uniform(m: int, kappa: torch.Tensor) -> torch.Tensor:
    """kappa A_m(kappa) + log C_m(kappa) + log |S^(m-1)|, with log I_v taken once for both terms (a host round
    trip per Bessel call: two here, not three)."""
    k = kappa.double()
    v = m / 2 - 1
    log_iv = log_bessel_iv(v, k)
    resultant = torch.exp(log_bessel_iv(v + 1, k) - log_iv)
    return (k * resultant + log_normalizer(m, k, log_iv) + log_sphere_area(m)).float()


def wood_constants(m: int, kappa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, b, d) of Wood's envelope, float64; b in the form that does not cancel for large kappa."""
    k = kappa.double()
    root = torch.sqrt(4 * k.pow(2) + (m - 1) ** 2)
    b = (m - 1) / (2 * k + root)
    a = ((m - 1) + 2 * k + root) / 4
    d = 4 * a * b / (1 + b) - (m - 1) * math.log(m - 1)
    return a, b, d


def _beta_half(m: int, shape: tuple[int, ...], generator, device) -> torch.Tensor:
    """Beta((m-1)/2, (m-1)/2) draws as X / (X + Y), X, Y ~ chi-square(m - 1) made of Gaussian draws."""
    g = torch.randn((*shape, 2, m - 1), generator=generator, device=device, dtype=torch.float64).pow(2).sum(-1)
    return g[..., 0] / (g[..., 0] + g[..., 1])


@torch.compiler.disable  # a loop whose sizes depend on the draws: run eagerly under trainer.compile
def wood_accepted_eps(
    m: int, kappa: torch.Tensor, generator: torch.Generator | None = None, counts: list[int] | None = None
) -> torch.Tensor:
    """The accepted eps of Wood's rejection sampler for each entry of ``kappa`` (no gradient). ``counts``, if given,
    receives (proposals made, samples) for the acceptance-rate test."""
    with torch.no_grad():
        a, b, d = wood_constants(m, kappa.detach())
        device = generator.device if generator is not None else kappa.device
        a, b, d = a.to(device), b.to(device), d.to(device)
        eps = torch.zeros_like(b)
        todo = torch.ones_like(b, dtype=torch.bool)
        proposals = 0
        while bool(todo.any()):
            n = int(todo.sum())
            proposals += n
            e = _beta_half(m, (n,), generator, device)
            u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
            bb, aa, dd = b[todo], a[todo], d[todo]
            t = 2 * aa * bb / (1 - (1 - bb) * e)
            accept = (m - 1) * torch.log(t) - t + dd >= torch.log(u)
            idx = todo.nonzero(as_tuple=True)
            chosen = tuple(i[accept] for i in idx)
            eps[chosen] = e[accept]
            todo[chosen] = False
        if counts is not None:
            counts += [proposals, int(b.numel())]
        return eps.to(kappa.device)


class VMFPosterior(Posterior):
    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.m = latent_dim

    @staticmethod
    def direction(p: PosteriorParams) -> torch.Tensor:
        return F.normalize(p.mu.float(), dim=-1)

    @staticmethod
    def kappa(p: PosteriorParams) -> torch.Tensor:
        return F.softplus(p.logvar[..., :1].float()) + KAPPA_MIN  # [B, 1]

    def location(self, p: PosteriorParams) -> tuple[torch.Tensor, torch.Tensor]:
        # The direction, and log(1/kappa) in every column: the spread, in the place of a Gaussian's log-variance.
        return self.direction(p), (-torch.log(self.kappa(p))).expand_as(p.mu)

    def draw(self, p: PosteriorParams, eps, generator=None, stop_q=False, score: bool = False) -> Draw:
        m = self.m
        mu, kappa = self.direction(p), self.kappa(p)  # [B, D], [B, 1]
        shape = eps.shape[:-1]  # [..., B]
        kappa_s = kappa.squeeze(-1).expand(shape)
        e = wood_accepted_eps(m, kappa_s, generator)  # float64, [..., B]
        _, b, _ = wood_constants(m, kappa_s)  # differentiable in kappa
        w = (1 - (1 + b) * e) / (1 - (1 - b) * e)
        # A direction uniform on S^(m-2) from the given Gaussian noise.
        v = F.normalize(eps[..., 1:].double(), dim=-1) if m > 2 else torch.sign(eps[..., 1:].double() + 1e-300)
        # clamp_min: sqrt has an infinite gradient at 0 (a NaN in s-vae-pytorch before its PR #8)
        z1 = torch.cat([w.unsqueeze(-1), torch.sqrt((1 - w.pow(2)).clamp_min(1e-30)).unsqueeze(-1) * v], dim=-1)
        z = householder(z1, mu.double()).float()
        k64 = kappa.double().squeeze(-1)
        log_c = log_normalizer(m, k64)
        log_q = (k64 * w + log_c).float()  # kappa mu.z + log C, with mu.z = w
        draw_score = None
        if score:
            # log pi(eps; kappa) = log q_w(w) + log |dh/deps| (+ terms free of kappa)
            log_qw = k64 * w + 0.5 * (m - 3) * torch.log((1 - w.pow(2)).clamp_min(1e-300)) + log_c
            log_jac = torch.log(2 * b) - 2 * torch.log(1 - (1 - b) * e)
            draw_score = (log_qw + log_jac).float()
        return Draw(z=z, log_q=log_q, score=draw_score)

    def rsample(self, p: PosteriorParams) -> Draw:
        return self.draw(p, torch.randn_like(p.mu), score=torch.is_grad_enabled())

    def log_prob(self, z: torch.Tensor, p: PosteriorParams) -> torch.Tensor:
        mu, kappa = self.direction(p), self.kappa(p).double().squeeze(-1)
        return (kappa * (z.double() * mu.double()).sum(-1) + log_normalizer(self.m, kappa)).float()

    def kl(self, mu, logvar, z, log_q, prior) -> torch.Tensor:
        if getattr(prior, "uniform_sphere", False):
            return vmf_kl_to_uniform(self.m, F.softplus(logvar[..., 0].float()) + KAPPA_MIN)
        return super().kl(mu, logvar, z, log_q, prior)


def householder(z: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """The reflection that takes e_1 to ``mu`` ``[B, D]``, applied to ``z`` ``[..., B, D]``."""
    e1 = torch.zeros_like(mu)
    e1[..., 0] = 1
    u = e1 - mu
    norm = u.norm(dim=-1, keepdim=True)
    u = torch.where(norm > 1e-12, u / norm.clamp_min(1e-12), torch.zeros_like(u))
    return z - 2 * (z * u).sum(-1, keepdim=True) * u


def build(cfg: Any, latent_dim: int) -> VMFPosterior:
    return VMFPosterior(latent_dim)


class UniformSphere(Prior):
    """``prior=uniform_sphere``: the uniform law on S^(D-1); its KL to a vMF is in closed form (``VMFPosterior.kl``)."""

    uniform_sphere = True

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return torch.full(z.shape[:-1], -log_sphere_area(self.latent_dim), device=z.device)

    def sample(self, n, generator=None, temperature=1.0, device=None) -> torch.Tensor:
        # A direction is uniform whatever the temperature: the sphere has no scale to cool.
        return F.normalize(randn_from(n, self.latent_dim, generator, torch.device(device or "cpu")), dim=-1)


def build_prior(cfg: Any, latent_dim: int, image_shape: tuple[int, int, int], init_images=None) -> UniformSphere:
    return UniformSphere(latent_dim)

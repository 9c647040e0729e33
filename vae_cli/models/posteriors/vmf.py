"""``posterior=vmf``: the von Mises-Fisher posterior on the unit sphere S^(m-1) (Davidson et al. 2018, the S-VAE).

    q(z | mu, kappa) = C_m(kappa) exp(kappa mu.z),   C_m(kappa) = kappa^(m/2-1) / ((2 pi)^(m/2) I_(m/2-1)(kappa))

Direction mu = the encoder's mu normalized; concentration kappa = softplus(.) + 1 from the first unit of its logvar
head (the S-VAE's single kappa per image; the head's other units are unused).

Sampling is Wood's (1994) algorithm: w = mu.z is drawn by rejection from the envelope
w = (1 - (1 + b) eps) / (1 - (1 - b) eps), eps ~ Beta((m-1)/2, (m-1)/2), accepted when
(m - 1) log t - t + d >= log u (t = 2ab / (1 - (1 - b) eps)); a direction v uniform on S^(m-2) completes
z' = (w, sqrt(1 - w^2) v) around e_1, and a Householder reflection takes e_1 to mu. The Beta draws are ratios of
gamma draws from the given generator, so a seeded generator fixes every sample (vae-eval's estimates repeat).

The gradient reparameterizes the accepted eps (w = h(eps, kappa)) and adds the correction term of the rejection
sampler (Naesseth et al. 2017, Davidson et al. eq. 7): f(z) grad log pi(eps; kappa), with
log pi = log q_w(h(eps, kappa); kappa) + log |dh/deps| + const. ``Draw.score`` carries log pi; the objective's
reconstruction adds f.detach() * (score - score.detach()), which is 0 in value and that term in gradient.

KL to the uniform prior on S^(m-1), in closed form:  kappa A_m(kappa) + log C_m(kappa) + log |S^(m-1)|,
A_m = I_(m/2) / I_(m/2-1). log I_v and A_m are computed together, in float64 on kappa's device (``bessel.py``: a
power series and Debye's expansion, pinned against mpmath; no NaN at m = 256, kappa = 1e5). Their derivatives are
functions of the two (d/dk log I_v = A + v/k, A' = 1 - A^2 - (m-1) A / k), so the backward needs no second call.
Until issue 22's sixth round they came from scipy's ``ive`` on the host: two round trips per step (a GPU sync each)
and two graph breaks under ``trainer.compile``. The rejection loop remains data-dependent (its length is known only
after the draws), which is why CUDA graphs are refused and why it runs eagerly under ``trainer.compile``.

Speed (issue 22): the draw's per-sample scalars (w, sqrt(1 - w^2), log q, the score) and the KL are autograd
functions with closed-form backward passes (``WoodTransform``, ``VMFKLToUniform``: the same formulas written out,
~60 small float64 operations and their backward nodes before), every entry makes several proposals at once and
the loop goes on only for the entries that had none accepted (``proposals_per_entry``: a trained S-VAE's
concentrations are where Wood's envelope accepts least, ~70%), and the Beta proposals are two gamma draws rather
than 2(m-1) Gaussians.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from vae_cli.models.posteriors.base import Draw, Posterior, PosteriorParams
from vae_cli.models.posteriors.bessel import log_iv_and_ratio
from vae_cli.models.priors import Prior, randn_from

KAPPA_MIN = 1.0


class LogBesselI(torch.autograd.Function):
    """(log I_v(kappa), I_(v+1)(kappa) / I_v(kappa)) for a fixed order v, differentiable in kappa, from one
    evaluation: the KL and the normalizer need both, and their derivatives are functions of the two, so the backward
    needs no second one:  d/dk log I_v = A + v/k,  d/dk A = 1 - A^2 - (2v + 1) A / k  (A = I_(v+1)/I_v)."""

    @staticmethod
    def forward(ctx, kappa: torch.Tensor, v: float) -> tuple[torch.Tensor, torch.Tensor]:
        log_iv_t, ratio_t = log_iv_and_ratio(v, kappa)
        ctx.save_for_backward(kappa, ratio_t)
        ctx.v = v
        return log_iv_t, ratio_t

    @staticmethod
    def backward(ctx, grad_log_iv: torch.Tensor | None, grad_ratio: torch.Tensor | None):
        kappa, ratio = ctx.saved_tensors
        grad = torch.zeros_like(kappa)
        if grad_log_iv is not None:
            grad = grad + grad_log_iv * (ratio + ctx.v / kappa)
        if grad_ratio is not None:
            grad = grad + grad_ratio * (1 - ratio.square() - (2 * ctx.v + 1) * ratio / kappa)
        return grad, None


def log_bessel_iv_and_ratio(v: float, kappa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log I_v(kappa) and I_(v+1)(kappa) / I_v(kappa): one evaluation forward, none in the backward."""
    return LogBesselI.apply(kappa, v)


def log_bessel_iv(v: float, kappa: torch.Tensor) -> torch.Tensor:
    return log_bessel_iv_and_ratio(v, kappa)[0]


def log_normalizer(m: int, kappa: torch.Tensor, log_iv: torch.Tensor | None = None) -> torch.Tensor:
    """log C_m(kappa), float64 in, the vMF's log normalizing constant on S^(m-1) (``log_iv``: log I_(m/2-1)(kappa)
    when the caller has it already)."""
    v = m / 2 - 1
    if log_iv is None:
        log_iv = log_bessel_iv(v, kappa)
    return v * torch.log(kappa) - (m / 2) * math.log(2 * math.pi) - log_iv


def mean_resultant(m: int, kappa: torch.Tensor) -> torch.Tensor:
    """A_m(kappa) = E[mu.z] = I_(m/2)(kappa) / I_(m/2-1)(kappa)."""
    return log_bessel_iv_and_ratio(m / 2 - 1, kappa)[1]


def log_sphere_area(m: int) -> float:
    """log |S^(m-1)| = log(2 pi^(m/2) / Gamma(m/2))."""
    return math.log(2) + (m / 2) * math.log(math.pi) - math.lgamma(m / 2)


class VMFKLToUniform(torch.autograd.Function):
    """KL(vMF(mu, kappa) || uniform on S^(m-1)) = kappa A_m + log C_m(kappa) + log |S^(m-1)| per entry of kappa
    (float64), with its derivative in closed form: d/dk = A + k A' + v/k - (A + v/k) = k A'(k)
    = k (1 - A^2) - (m - 1) A. One Bessel evaluation forward, none backward, ~5 operations each way."""

    @staticmethod
    def forward(ctx, kappa: torch.Tensor, m: int) -> torch.Tensor:
        log_iv, resultant = log_iv_and_ratio(m / 2 - 1, kappa)
        ctx.save_for_backward(kappa, resultant)
        ctx.m = m
        return kappa * resultant + log_normalizer(m, kappa, log_iv) + log_sphere_area(m)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        kappa, resultant = ctx.saved_tensors
        return grad * (kappa * (1 - resultant.square()) - (ctx.m - 1) * resultant), None


def vmf_kl_to_uniform(m: int, kappa: torch.Tensor) -> torch.Tensor:
    """kappa A_m(kappa) + log C_m(kappa) + log |S^(m-1)| (``VMFKLToUniform``), in fp32."""
    return VMFKLToUniform.apply(kappa.double(), m).float()


def _wood_b(m: int, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, sqrt(4k^2 + (m-1)^2)) of Wood's envelope: b in the form that does not cancel for large kappa."""
    root = torch.sqrt(4 * k.square() + (m - 1) ** 2)
    return (m - 1) / (2 * k + root), root


def wood_constants(m: int, kappa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, b, d) of Wood's envelope, float64."""
    k = kappa.double()
    b, root = _wood_b(m, k)
    a = ((m - 1) + 2 * k + root) / 4
    d = 4 * a * b / (1 + b) - (m - 1) * math.log(m - 1)
    return a, b, d


def _beta_half(m: int, shape: tuple[int, ...], generator, device) -> torch.Tensor:
    """Beta((m-1)/2, (m-1)/2) draws as X / (X + Y), X, Y ~ Gamma((m-1)/2) (torch's Marsaglia-Tsang sampler, the one
    torch.distributions.Gamma uses, called directly because it takes a generator; 2 draws per proposal where
    chi-squares made of Gaussians took 2(m-1), the largest cost of the loop)."""
    alpha = torch.full((*shape, 2), (m - 1) / 2, dtype=torch.float64, device=device)
    g = torch._standard_gamma(alpha, generator=generator)
    return g[..., 0] / (g[..., 0] + g[..., 1])


# Proposals per round of the rejection loop, summed over the entries still waiting: a round's fixed cost (~20 small
# operations, an index and a nonzero: ~100 us on this project's CPU) is about what ~800 proposals cost (two gamma
# draws each, ~50 ns a draw). Of 128 to 2048, 768 timed best for a batch of 128 at kappa 1-350 (m = 20).
PROPOSALS_PER_ROUND = 768
MAX_PROPOSALS_PER_ENTRY = 16


def proposals_per_entry(waiting: int) -> int:
    """How many proposals each waiting entry makes in one round: several while few wait (Wood's envelope accepts
    only ~70% at the concentrations a trained S-VAE has, kappa ~ 100-300 at m = 20, so one proposal per round left
    a batch of 128 looping ~4 more rounds), one when many do (vae-eval's K x B draws); 16 at most (the last
    rounds, for the few entries left)."""
    return max(1, min(MAX_PROPOSALS_PER_ENTRY, PROPOSALS_PER_ROUND // max(waiting, 1)))


@torch.compiler.disable  # a loop whose sizes depend on the draws: run eagerly under trainer.compile
def wood_accepted_eps(
    m: int, kappa: torch.Tensor, generator: torch.Generator | None = None, counts: list[int] | None = None
) -> torch.Tensor:
    """The accepted eps of Wood's rejection sampler for each entry of ``kappa`` (no gradient). ``counts``, if given,
    receives (proposals made, samples) for the acceptance-rate test: an entry's proposals up to and including its
    first accepted one (those it drew after it are never looked at), so that samples / proposals estimates Wood's
    acceptance probability."""
    with torch.no_grad():
        a, b, d = wood_constants(m, kappa.detach().reshape(-1))
        device = generator.device if generator is not None else kappa.device
        a, b, d = a.to(device), b.to(device), d.to(device)

        def propose(aa: torch.Tensor, bb: torch.Tensor, dd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
            """r proposals per entry at once; each entry keeps its first accepted one: (eps, accepted, proposals
            counted, only when ``counts`` asks: a host read)."""
            r = proposals_per_entry(bb.numel())
            e = _beta_half(m, (r, *bb.shape), generator, device)  # [r, N]
            u = torch.rand((r, *bb.shape), generator=generator, device=device, dtype=torch.float64)
            t = 2 * aa * bb / (1 - (1 - bb) * e)
            ok = (m - 1) * torch.log(t) - t + dd >= torch.log(u)
            first = ok.to(torch.uint8).argmax(0)  # the first accepted proposal (0 where none was)
            accepted = ok.any(0)
            used = int(torch.where(accepted, first + 1, r).sum()) if counts is not None else 0
            return e.gather(0, first.unsqueeze(0)).squeeze(0), accepted, used

        # Every entry proposes on the whole tensor, then those whose proposals were all rejected go again, by index.
        eps, accepted, proposals = propose(a, b, d)
        todo = (~accepted).nonzero().squeeze(-1)
        while todo.numel():
            e, ok, used = propose(a[todo], b[todo], d[todo])
            proposals += used
            eps[todo[ok]] = e[ok]
            todo = todo[~ok]
        if counts is not None:
            counts += [proposals, int(b.numel())]
        return eps.view(kappa.shape).to(kappa.device)


class WoodTransform(torch.autograd.Function):
    """The per-sample scalars of a vMF draw from the accepted eps, in one forward and a closed-form backward (the
    same formulas as autograd through them took ~60 small float64 operations and their backward nodes, most of the
    S-VAE's extra cost per step):

        b = (m-1) / (2 kappa + sqrt(4 kappa^2 + (m-1)^2)),   w = (1 - (1+b) eps) / (1 - (1-b) eps),
        s = sqrt(1 - w^2),   log q = kappa w + log C_m(kappa),
        score = log q + (m-3)/2 log(1 - w^2) + log(2b) - 2 log(1 - (1-b) eps)   (log pi(eps; kappa), see the top)

    kappa ``[B]`` float64 (differentiable), eps ``[..., B]`` float64 (the accepted proposals, constants). Derivatives:
    db/dk = -2b / sqrt(4k^2 + (m-1)^2), dw/db = -2 eps (1 - eps) / (1 - (1-b) eps)^2, d log C/dk = -A_m(k). Pinned
    against autograd through the formulas in float64 (tests)."""

    @staticmethod
    def forward(ctx, kappa: torch.Tensor, eps: torch.Tensor, m: int):
        v = m / 2 - 1
        log_iv, resultant = log_iv_and_ratio(v, kappa)
        b, root = _wood_b(m, kappa)
        den = 1 - (1 - b) * eps
        w = (1 - (1 + b) * eps) / den
        one_minus_w2 = 1 - w.square()
        # clamp_min: sqrt has an infinite gradient at 0 (a NaN in s-vae-pytorch before its PR #8)
        sine = torch.sqrt(one_minus_w2.clamp_min(1e-30))
        log_c = v * torch.log(kappa) - (m / 2) * math.log(2 * math.pi) - log_iv
        log_q = kappa * w + log_c
        score = (
            log_q + 0.5 * (m - 3) * torch.log(one_minus_w2.clamp_min(1e-300)) + torch.log(2 * b) - 2 * torch.log(den)
        )
        ctx.save_for_backward(kappa, eps, resultant, root, b, den, w, one_minus_w2, sine)
        ctx.m = m
        return w, sine, log_q, score

    @staticmethod
    def backward(ctx, g_w, g_sine, g_log_q, g_score):
        kappa, eps, resultant, root, b, den, w, one_minus_w2, sine = ctx.saved_tensors
        m = ctx.m
        d_sine = torch.where(one_minus_w2 >= 1e-30, -w / sine, 0.0)
        d_log_1mw2 = torch.where(one_minus_w2 >= 1e-300, -(m - 3) * w / one_minus_w2, 0.0)
        g_w_total = g_w + g_sine * d_sine + (g_log_q + g_score) * kappa + g_score * d_log_1mw2
        g_b = g_w_total * (-2 * eps * (1 - eps) / den.square()) + g_score * (1 / b - 2 * eps / den)
        g_kappa = g_b * (-2 * b / root) + (g_log_q + g_score) * (w - resultant)
        return g_kappa.sum_to_size(kappa.shape), None, None


def wood_transform(
    m: int, kappa: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(w, sqrt(1 - w^2), log q, score) of ``WoodTransform``."""
    return WoodTransform.apply(kappa, eps, m)


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
        k64 = kappa.double().squeeze(-1)  # [B]
        e = wood_accepted_eps(m, k64.expand(shape), generator)  # float64, [..., B]
        w, sine, log_q, draw_score = wood_transform(m, k64, e)  # differentiable in kappa
        # A direction uniform on S^(m-2) from the given Gaussian noise.
        v = F.normalize(eps[..., 1:].double(), dim=-1) if m > 2 else torch.sign(eps[..., 1:].double() + 1e-300)
        z1 = torch.cat([w.unsqueeze(-1), sine.unsqueeze(-1) * v], dim=-1)
        z = householder(z1, mu.double()).float()
        log_q = log_q.float()  # kappa mu.z + log C, with mu.z = w
        # log pi(eps; kappa) = log q_w(w) + log |dh/deps| (+ terms free of kappa)
        draw_score = draw_score.float() if score else None
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

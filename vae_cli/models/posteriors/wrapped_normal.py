"""``posterior=wrapped_normal``: the Poincare-ball VAE's posterior (Mathieu et al. 2019, "Continuous hierarchical
representations with Poincare variational auto-encoders"), on the ball B_c^D of curvature -c (radius 1/sqrt(c)).

    lambda_x = 2 / (1 - c |x|^2)                           (the conformal factor)
    exp_0(u) = tanh(sqrt(c) |u|) u / (sqrt(c) |u|),        log_0(y) = artanh(sqrt(c) |y|) y / (sqrt(c) |y|)
    exp_mu(u) = mu (+)_c exp_0-like(tanh(sqrt(c) lambda_mu |u| / 2) u / (sqrt(c) |u|))   ((+)_c: Moebius addition)

A sample: v ~ N(0, diag sigma^2) in the tangent space at the origin, transported to mu (a scaling by
lambda_0 / lambda_mu on the ball) and mapped by exp_mu: z = exp_mu(v / lambda_mu), so that d(mu, z) = |v| and
lambda_mu log_mu(z) = v. Its density with respect to the ball's Riemannian volume (Mathieu et al., eq. 5):

    log q(z) = log N(lambda_mu log_mu(z); 0, diag sigma^2) + (D - 1) log(sqrt(c) r / sinh(sqrt(c) r)),  r = d(mu, z)

The prior (``prior=wrapped_normal``) is the same law at the origin; the KL is log q - log p at the sample (both
densities are with respect to the same volume, so the KL does not depend on it). The encoder's mu is mapped onto the
ball by exp_0; the decoder reads log_0(z) (the paper's simpler option; no gyroplane layer). Geometry runs in
float64 (points near the boundary cancel in float32), clamped to 1 - 1e-5 of the radius.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vae_cli.models.posteriors.base import LOG_2PI, Draw, Posterior, PosteriorParams
from vae_cli.models.priors import Prior, randn_from

BOUNDARY = 1e-5


class Ball:
    """The Poincare ball of curvature -c: its maps, in float64."""

    def __init__(self, curvature: float) -> None:
        self.c = float(curvature)
        self.sqrt_c = math.sqrt(self.c)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-15)
        most = (1 - BOUNDARY) / self.sqrt_c
        return torch.where(norm > most, x / norm * most, x)

    def lam(self, x: torch.Tensor) -> torch.Tensor:
        return 2 / (1 - self.c * x.pow(2).sum(-1, keepdim=True)).clamp_min(1e-15)

    def mobius_add(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = self.c
        xy = (x * y).sum(-1, keepdim=True)
        x2, y2 = x.pow(2).sum(-1, keepdim=True), y.pow(2).sum(-1, keepdim=True)
        num = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
        return num / (1 + 2 * c * xy + c**2 * x2 * y2).clamp_min(1e-15)

    def expmap0(self, u: torch.Tensor) -> torch.Tensor:
        norm = u.norm(dim=-1, keepdim=True).clamp_min(1e-15)
        return self.project(torch.tanh(self.sqrt_c * norm) * u / (self.sqrt_c * norm))

    def logmap0(self, y: torch.Tensor) -> torch.Tensor:
        y = self.project(y)
        norm = y.norm(dim=-1, keepdim=True).clamp_min(1e-15)
        return torch.atanh((self.sqrt_c * norm).clamp_max(1 - 1e-15)) * y / (self.sqrt_c * norm)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        norm = u.norm(dim=-1, keepdim=True).clamp_min(1e-15)
        second = torch.tanh(self.sqrt_c * self.lam(x) * norm / 2) * u / (self.sqrt_c * norm)
        return self.project(self.mobius_add(x, second))

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        sub = self.mobius_add(-x, y)
        norm = sub.norm(dim=-1, keepdim=True).clamp_min(1e-15)
        scale = 2 / (self.sqrt_c * self.lam(x)) * torch.atanh((self.sqrt_c * norm).clamp_max(1 - 1e-15))
        return scale * sub / norm

    def log_volume_ratio(self, r: torch.Tensor, dim: int) -> torch.Tensor:
        """(D - 1) log(sqrt(c) r / sinh(sqrt(c) r)), stable for small and large r."""
        x = self.sqrt_c * r
        log_sinh = x + torch.log1p(-torch.exp(-2 * x.clamp_min(1e-6))) - math.log(2)
        return (dim - 1) * torch.where(x < 1e-3, -x.pow(2) / 6, torch.log(x.clamp_min(1e-15)) - log_sinh)


def wrapped_normal_log_prob(ball: Ball, v: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q of the point whose transported tangent vector is ``v`` (lambda_mu log_mu(z)), float64 ``[...]``."""
    d = v.shape[-1]
    gauss = -0.5 * (v.pow(2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)
    return gauss + ball.log_volume_ratio(v.norm(dim=-1), d)


class WrappedNormalPosterior(Posterior):
    maps_latent = True

    def __init__(self, latent_dim: int, curvature: float) -> None:
        super().__init__(latent_dim)
        self.ball = Ball(curvature)

    def center(self, p: PosteriorParams) -> torch.Tensor:
        return self.ball.expmap0(p.mu.double())

    def location(self, p: PosteriorParams) -> tuple[torch.Tensor, torch.Tensor]:
        return self.center(p).to(p.mu.dtype), p.logvar

    def draw(self, p: PosteriorParams, eps, generator=None, stop_q=False) -> Draw:
        mu, logvar = self.center(p), p.logvar.double()
        v = torch.exp(0.5 * logvar) * eps.double()
        z = self.ball.expmap(mu, v / self.ball.lam(mu))
        return Draw(z=z.float(), log_q=wrapped_normal_log_prob(self.ball, v, logvar).float())

    def log_prob(self, z: torch.Tensor, p: PosteriorParams) -> torch.Tensor:
        mu = self.center(p)
        v = self.ball.lam(mu) * self.ball.logmap(mu, self.ball.project(z.double()))
        return wrapped_normal_log_prob(self.ball, v, p.logvar.double()).float()

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        return self.ball.logmap0(z.double()).to(z.dtype)


def build(cfg: Any, latent_dim: int) -> WrappedNormalPosterior:
    return WrappedNormalPosterior(latent_dim, float(cfg.curvature))


class WrappedNormalPrior(Prior):
    """``prior=wrapped_normal``: the wrapped normal at the origin of the posterior's ball, standard deviation
    ``scale``: v ~ N(0, scale^2 I), z = exp_0(v / lambda_0) with lambda_0 = 2."""

    def __init__(self, latent_dim: int, scale: float) -> None:
        super().__init__(latent_dim)
        self.scale = float(scale)
        self.ball: Ball | None = None

    def attach_posterior(self, posterior: Posterior) -> None:
        self.ball = getattr(posterior, "ball", None)

    def _ball(self) -> Ball:
        if self.ball is None:
            raise RuntimeError("prior=wrapped_normal needs posterior=wrapped_normal (its ball)")
        return self.ball

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        ball = self._ball()
        v = 2 * ball.logmap0(z.double())
        logvar = torch.full_like(v, 2 * math.log(self.scale))
        return wrapped_normal_log_prob(ball, v, logvar).float()

    def sample(self, n, generator=None, temperature=1.0, device=None) -> torch.Tensor:
        v = temperature * self.scale * randn_from(n, self.latent_dim, generator, torch.device(device or "cpu"))
        return self._ball().expmap0(v.double() / 2).float()


def build_prior(cfg: Any, latent_dim: int, image_shape: tuple[int, int, int], init_images=None) -> WrappedNormalPrior:
    return WrappedNormalPrior(latent_dim, float(cfg.scale))

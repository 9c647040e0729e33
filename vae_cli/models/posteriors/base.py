"""The contract of every posterior q(z|x), a part of the flat VAE (``models/vae.py``).

The encoder gives ``PosteriorParams``: (mu, logvar) and, for a posterior that asks for it (``context_dim`` > 0), a
context vector h (an IAF's context, a planar flow's per-image parameters). The posterior turns them and base noise
into samples and their log-densities:

- ``rsample(p)``: one reparameterized draw per image (training); ``draw(p, eps, generator)``: K draws from given
  Gaussian noise ``eps`` ``[K, B, D]`` (importance weighting; a sampler that needs more randomness than eps, vMF's
  rejection loop, takes it from ``generator``). Both return a ``Draw``: z, log q(z|x) at z, and the sampler's
  score-function term where its gradient has one (vMF's).
- ``kl(out, prior)``: KL(q || p) per image, in closed form where one exists, else log q - log p at the sample.
- ``location(p)``: the point that stands for q(z|x) (the sample at zero noise: mu, a flow of mu, the direction of a
  vMF, a point of the ball) and a log-scale: what latent views, reconstructions and disentanglement scores read.
- ``decoder_input(z)``: what the decoder sees of z (the ball's log map at the origin for the Poincare VAE).

Geometry (flat, sphere, poincare) is the catalog's fact; the prior of a run lives in the same space (checked by
config/posteriors.py), and ``attach`` tells the prior the posterior's space (the ball's curvature).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)


@dataclass
class PosteriorParams:
    mu: torch.Tensor  # [B, D]
    logvar: torch.Tensor  # [B, D]
    context: torch.Tensor | None = None  # [B, context_dim]


@dataclass
class Draw:
    z: torch.Tensor  # [..., B, D]
    log_q: torch.Tensor | None  # [..., B]; None where the posterior leaves it to its KL (the Gaussian, in training)
    # log pi(eps; params) of a rejection sampler's accepted noise (Naesseth et al. 2017): its gradient, times the
    # sample's objective, is the sampler's correction term; None for a plain reparameterization.
    score: torch.Tensor | None = None


def gaussian_base(p: PosteriorParams, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z0 = mu + sigma * eps and log N(z0; mu, sigma^2), the latter written with eps (no division by sigma)."""
    eps = eps.to(p.mu.dtype)
    z = p.mu + torch.exp(0.5 * p.logvar) * eps
    log_q = -0.5 * (eps.float().pow(2) + p.logvar.float() + LOG_2PI).sum(-1)
    return z, log_q


class Posterior(nn.Module):
    """q(z|x) over ``latent_dim`` dimensions."""

    # Units the encoder adds to its head for this posterior (beside mu and logvar).
    context_dim: int = 0
    # True when decoder_input is not the identity (the decoder reads z through a map).
    maps_latent: bool = False

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def draw(
        self,
        p: PosteriorParams,
        eps: torch.Tensor,
        generator: torch.Generator | None = None,
        stop_q: bool = False,
    ) -> Draw:
        raise NotImplementedError

    def rsample(self, p: PosteriorParams) -> Draw:
        return self.draw(p, torch.randn_like(p.mu))

    def log_prob(self, z: torch.Tensor, p: PosteriorParams) -> torch.Tensor:
        """log q(z|x) at any z ``[..., B, D]`` (the Gaussian, vMF, wrapped normal; a planar or radial flow has no
        closed-form inverse, so no density away from its own samples)."""
        raise NotImplementedError(f"{type(self).__name__} has no density at arbitrary points")

    def kl(
        self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, log_q: torch.Tensor | None, prior
    ) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per image ``[B]``: the one-sample estimate log q - log p at the sample z by default."""
        assert log_q is not None
        return log_q.float() - prior.log_prob(z)

    def closed_form_kl_per_dim(self, prior, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor | None:
        """Each dimension's KL in closed form ``[B, D]`` (only a diagonal Gaussian to a factorized prior)."""
        return None

    def location(self, p: PosteriorParams) -> tuple[torch.Tensor, torch.Tensor]:
        return p.mu, p.logvar

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        return z

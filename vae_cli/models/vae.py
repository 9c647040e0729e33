"""The VAE, composed of four parts: an encoder to q(z|x) = N(mu, sigma^2), a decoder to the parameters of p(x|z), a
prior p(z) and a likelihood p(x|z). For a CVAE (``num_classes > 0``) the one-hot label joins the encoder's and the
decoder's inputs: q(z|x, y) and p(x|z, y), with p(z) independent of y.

The model returns named outputs and no loss: objectives (``vae_cli.objectives``) combine these parts, so a beta-VAE, an
IWAE or a beta-TCVAE is this same model with another objective, and a VampPrior VAE the same model with another
prior.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from vae_cli.models.likelihoods.base import Likelihood
from vae_cli.models.priors import LOG_2PI, Prior, build_prior, diag_normal_log_prob
from vae_cli.models.protocol import NoExtraTerms, VAEOutput


class VAE(NoExtraTerms, nn.Module):
    # One latent layer: free bits and KL terms are per dimension (a hierarchical model names its layers).

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int,
        prior: Prior,
        likelihood: Likelihood,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.prior = prior
        self.likelihood = likelihood
        self.num_classes = num_classes
        prior.attach(self.encode)  # a prior built from the encoder (the VampPrior) keeps a handle on it

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def condition(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """The one-hot label a CVAE's networks take (None for an unconditional model, whatever ``y`` is)."""
        if not self.conditional:
            return None
        if y is None:
            raise ValueError("a conditional VAE needs the labels y")
        return nn.functional.one_hot(y.long(), self.num_classes).float()

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I): the sample is a differentiable function of (mu, logvar)."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.condition(y)
        return self.encoder(x) if c is None else self.encoder(x, c)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = self.condition(y)
        return self.decoder(z) if c is None else self.decoder(z, c)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> VAEOutput:
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar)
        return VAEOutput(params=self.decode(z, y), mu=mu, logvar=logvar, z=z)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ----- what objectives and evaluation ask (a hierarchical model answers the same questions) -------------
    def kl(self, out: VAEOutput) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per image ``[B]``: closed form where the prior has one, else log q(z|x) - log p(z) at
        the sample ``out.z``."""
        return self.prior.kl(out.mu, out.logvar, out.z)

    def closed_form_kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor | None:
        """Each dimension's KL ``[B, D]`` where the prior gives it in closed form (N(0, I)), else None."""
        return self.prior.kl_per_dim(mu, logvar)

    def kl_layers(self, out: VAEOutput) -> torch.Tensor:
        """``[B, 0]``: one latent layer has no per-layer split."""
        return out.mu.new_zeros(out.mu.shape[0], 0)

    def log_weights(
        self, x: torch.Tensor, y: torch.Tensor | None, eps: torch.Tensor, stop_q: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log p(x|z), log p(z), log q(z|x), z)`` for K posterior draws per image: the first three ``[K, B]``,
        z ``[K, B, D]``, with z = mu + sigma * eps for ``eps`` ``[K, B, D]``. ``stop_q`` evaluates log q with
        stopped (mu, logvar) (DReG: the encoder is then reached through z only)."""
        k, b = eps.shape[0], x.shape[0]
        mu, logvar = self.encode(x, y)
        eps = eps.to(mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        y_rep = None if y is None else y.repeat(k)
        params = self.decode(z.reshape(k * b, -1), y_rep)
        x_rep = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
        log_px_z = self.likelihood.log_prob(x_rep, params).view(k, b)
        log_pz = self.prior.log_prob(z.reshape(k * b, -1)).view(k, b)
        if stop_q:
            log_qz = diag_normal_log_prob(z, mu.detach(), logvar.detach()).sum(-1)
        else:
            # Written with eps: the same value, and no division by sigma.
            log_qz = -0.5 * (eps.float().pow(2) + logvar.float() + LOG_2PI).sum(-1)
        return log_px_z, log_pz, log_qz, z

    def prior_sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """n draws of z ~ p(z), made from the generator (on its device, CPU by default), on the model's device."""
        return self.prior.sample(n, generator=generator, temperature=temperature, device=self.device)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Decode n draws from the prior (given labels ``y`` for a CVAE); returns likelihood parameters (see
        ``Likelihood.mean`` for images)."""
        z = self.prior_sample(n, generator, temperature)
        return self.decode(z, None if y is None else y.to(z.device))


# An architecture's encoder/decoder pair: (model config, image shape, condition size, decoder output channels).
Networks = Callable[[Any, tuple[int, int, int], int, int], tuple[nn.Module, nn.Module]]


def flat_builder(networks: Networks) -> Callable[..., VAE]:
    """The catalog builder of a flat architecture (config/architectures.py) from its encoder/decoder pair: the
    pair, then ``cfg.prior`` (built after the networks, so their initial weights do not depend on the prior)."""

    def build(
        cfg: Any,
        image_shape: tuple[int, int, int],
        likelihood: Likelihood,
        num_classes: int = 0,
        init_images: torch.Tensor | None = None,
    ) -> VAE:
        cond = num_classes if cfg.model.conditional else 0
        encoder, decoder = networks(cfg.model, image_shape, cond, likelihood.param_channels(image_shape[0]))
        latent_dim = int(cfg.model.latent_dim)
        prior = build_prior(cfg.prior, latent_dim, image_shape, init_images)
        return VAE(encoder, decoder, latent_dim, prior, likelihood, num_classes=cond)

    return build

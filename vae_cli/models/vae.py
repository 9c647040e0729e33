"""The VAE, composed of five parts: an encoder to the parameters of q(z|x), the posterior q(z|x) itself (a diagonal
Gaussian N(mu, sigma^2) by default; flows, a vMF, a wrapped normal: ``models/posteriors/``), a decoder to the
parameters of p(x|z), a prior p(z) and a likelihood p(x|z). For a CVAE (``num_classes > 0``) the one-hot label joins
the encoder's and the decoder's inputs: q(z|x, y) and p(x|z, y), with p(z) independent of y.

The model returns named outputs and no loss: objectives (``vae_cli.objectives``) combine these parts, so a beta-VAE, an
IWAE or a beta-TCVAE is this same model with another objective, and a VampPrior VAE the same model with another
prior, and a planar-flow VAE the same model with another posterior.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from vae_cli.config.catalog import POSTERIORS
from vae_cli.models.likelihoods.base import Likelihood
from vae_cli.models.posteriors.base import Draw, Posterior, PosteriorParams
from vae_cli.models.priors import Prior, build_prior
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
        posterior: Posterior | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.prior = prior
        self.likelihood = likelihood
        self.num_classes = num_classes
        if posterior is None:  # a model built in code without one: the Gaussian
            posterior = POSTERIORS.load("gaussian")(None, latent_dim)
        self.posterior = posterior
        # A prior built from the encoder (the VampPrior) keeps a handle on it: its components are the Gaussians the
        # encoder gives the pseudo-inputs (a flow posterior's base Gaussians).
        prior.attach(self.encode_gaussian)
        prior.attach_posterior(posterior)  # a prior on the posterior's space (the Poincare ball) learns it here

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

    def posterior_params(self, x: torch.Tensor, y: torch.Tensor | None = None) -> PosteriorParams:
        """What the encoder gives the posterior: (mu, logvar) and, where the posterior asks for one, a context."""
        c = self.condition(y)
        return PosteriorParams(*(self.encoder(x) if c is None else self.encoder(x, c)))

    def encode_gaussian(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's (mu, logvar): the Gaussian itself, or a flow posterior's base Gaussian."""
        p = self.posterior_params(x, y)
        return p.mu, p.logvar

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The point that stands for q(z|x) and a log-scale (``Posterior.location``): (mu, logvar) for the Gaussian."""
        return self.posterior.location(self.posterior_params(x, y))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.posterior.maps_latent:  # the decoder reads z through the posterior's map (the ball's log map)
            z = self.posterior.decoder_input(z)
        c = self.condition(y)
        return self.decoder(z) if c is None else self.decoder(z, c)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> VAEOutput:
        p = self.posterior_params(x, y)
        d = self.posterior.rsample(p)
        return VAEOutput(params=self.decode(d.z, y), mu=p.mu, logvar=p.logvar, z=d.z, log_q=d.log_q, score=d.score)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ----- what objectives and evaluation ask (a hierarchical model answers the same questions) -------------
    def kl(self, out: VAEOutput) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per image ``[B]``: closed form where the pair has one (Gaussian to N(0, I), vMF to
        the uniform sphere), else log q(z|x) - log p(z) at the sample ``out.z``."""
        return self.posterior.kl(out.mu, out.logvar, out.z, out.log_q, self.prior)

    def closed_form_kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor | None:
        """Each dimension's KL ``[B, D]`` where it is in closed form (a Gaussian posterior, prior N(0, I)), else
        None."""
        return self.posterior.closed_form_kl_per_dim(self.prior, mu, logvar)

    def kl_layers(self, out: VAEOutput) -> torch.Tensor:
        """``[B, 0]``: one latent layer has no per-layer split."""
        return out.mu.new_zeros(out.mu.shape[0], 0)

    def log_weights(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None,
        eps: torch.Tensor,
        stop_q: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log p(x|z), log p(z), log q(z|x), z)`` for K posterior draws per image: the first three ``[K, B]``,
        z ``[K, B, D]``, drawn from the Gaussian noise ``eps`` ``[K, B, D]`` (and, for a sampler that needs more,
        ``generator``). ``stop_q`` evaluates log q with stopped (mu, logvar) (DReG: the encoder is then reached
        through z only)."""
        d = self.draw_posterior(x, y, eps, stop_q=stop_q, generator=generator)
        log_px_z, log_pz = self.log_joint(x, y, d.z)
        assert d.log_q is not None
        return log_px_z, log_pz, d.log_q, d.z

    def draw_posterior(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None,
        eps: torch.Tensor,
        stop_q: bool = False,
        generator: torch.Generator | None = None,
    ) -> Draw:
        """K draws of z ~ q(z|x) per image from ``eps`` ``[K, B, D]``, with log q(z|x) at each ``[K, B]``."""
        p = self.posterior_params(x, y)
        return self.posterior.draw(p, eps.to(p.mu.dtype), generator=generator, stop_q=stop_q)

    def log_joint(self, x: torch.Tensor, y: torch.Tensor | None, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(x|z), log p(z))`` ``[K, B]`` each for latents ``z`` ``[K, B, D]`` of the images ``x``."""
        k, b = z.shape[0], x.shape[0]
        y_rep = None if y is None else y.repeat(k)
        params = self.decode(z.reshape(k * b, -1), y_rep)
        x_rep = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
        log_px_z = self.likelihood.log_prob(x_rep, params).view(k, b)
        log_pz = self.prior.log_prob(z.reshape(k * b, -1)).view(k, b)
        return log_px_z, log_pz

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
    pair, then ``cfg.prior`` (built after the networks, so their initial weights do not depend on the prior), then
    ``cfg.posterior`` (its flows' weights, and the encoder head's context units it asks for)."""

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
        # Built after the networks and the prior, so their initial weights do not depend on the posterior.
        posterior_cfg = OmegaConf.select(cfg, "posterior", default=None) if OmegaConf.is_config(cfg) else None
        name = POSTERIORS.option_of(posterior_cfg) or "gaussian"
        posterior = POSTERIORS.load(name)(posterior_cfg, latent_dim)
        encoder.add_context(posterior.context_dim)
        return VAE(encoder, decoder, latent_dim, prior, likelihood, num_classes=cond, posterior=posterior)

    return build

"""What a VAE is made of: networks (``networks``), priors (``priors``), likelihoods (``likelihoods``) and the model
that composes them (``vae``). ``build_model`` puts them together from a config."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from vae_cli.models.likelihoods import Likelihood, build_likelihood
from vae_cli.models.networks import build_networks
from vae_cli.models.priors import Prior, build_prior
from vae_cli.models.vae import VAE, VAEOutput


def build_model(
    cfg: DictConfig,
    image_shape: tuple[int, int, int],
    num_classes: int = 0,
    init_images: torch.Tensor | None = None,
) -> VAE:
    """The VAE that ``cfg`` (its ``model``, ``likelihood`` and ``prior`` groups) describes, for images of
    ``image_shape``. ``num_classes`` is the dataset's for a CVAE (``model.conditional``), else ignored;
    ``init_images`` (float, in [0, 1]) seed a VampPrior's pseudo-inputs with ``prior.init=data``."""
    m = cfg.model
    classes = num_classes if m.conditional else 0
    encoder, decoder = build_networks(m, image_shape, cond_dim=classes)
    prior = build_prior(cfg.prior, m.latent_dim, image_shape, init_images)
    return VAE(encoder, decoder, m.latent_dim, prior, build_likelihood(cfg.likelihood), num_classes=classes)


__all__ = ["VAE", "Likelihood", "Prior", "VAEOutput", "build_model"]

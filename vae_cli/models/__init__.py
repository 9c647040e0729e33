"""What a VAE is made of: networks (``networks``), priors (``priors``), likelihoods (``likelihoods``), the flat model
that composes them (``vae``) and the hierarchical one (``hierarchical``). ``build_model`` puts them together from a
config."""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from vae_cli.config import Arch, Binarize
from vae_cli.models.hierarchical import HierarchicalVAE, build_hierarchical
from vae_cli.models.likelihoods import Likelihood, build_likelihood
from vae_cli.models.networks import build_networks
from vae_cli.models.priors import Prior, build_prior
from vae_cli.models.vae import VAE, VAEOutput
from vae_cli.models.vqvae import VQVAE, build_vqvae

# What the trainer, objectives and tools work with: either model answers the same questions.
Model = VAE | HierarchicalVAE | VQVAE


def build_model(
    cfg: DictConfig,
    image_shape: tuple[int, int, int],
    num_classes: int = 0,
    init_images: torch.Tensor | None = None,
) -> Model:
    """The model that ``cfg`` (its ``model``, ``likelihood`` and ``prior`` groups) describes, for images of
    ``image_shape``. ``num_classes`` is the dataset's for a CVAE (``model.conditional``), else ignored;
    ``init_images`` (float, in [0, 1]) seed a VampPrior's pseudo-inputs with ``prior.init=data``."""
    m = cfg.model
    # Configs built in code (tests, notebooks) may leave the dataset out: grey levels then.
    binarized = Binarize(OmegaConf.select(cfg, "dataset.binarize", default="none")) != Binarize.none
    likelihood = build_likelihood(cfg.likelihood, binarized=binarized)
    if Arch(m.arch) == Arch.hvae:
        return build_hierarchical(m, image_shape, likelihood)
    if Arch(m.arch) == Arch.vqvae:
        return build_vqvae(m, cfg.prior, image_shape, likelihood)
    classes = num_classes if m.conditional else 0
    out_channels = likelihood.param_channels(image_shape[0])
    encoder, decoder = build_networks(m, image_shape, cond_dim=classes, out_channels=out_channels)
    prior = build_prior(cfg.prior, m.latent_dim, image_shape, init_images)
    return VAE(encoder, decoder, m.latent_dim, prior, likelihood, num_classes=classes)


__all__ = ["VAE", "VQVAE", "HierarchicalVAE", "Likelihood", "Model", "Prior", "VAEOutput", "build_model"]

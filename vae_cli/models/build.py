"""A model from a config: each part through its family's catalog (config/catalog.py), knowing none by name.

``build_model`` makes the likelihood (``likelihood`` group), then hands it to the architecture's builder
(``model.arch``), which makes the networks and, for a flat model, the prior (``prior`` group).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import OmegaConf

from vae_cli.config.catalog import ARCHITECTURES, LIKELIHOODS
from vae_cli.config.enums import Binarize
from vae_cli.models.likelihoods.base import Likelihood
from vae_cli.models.protocol import Model


def build_likelihood(cfg: Any, binarized: bool = False) -> Likelihood:
    """The likelihood the ``likelihood`` group names; ``binarized``: the data are 0/1 pixels (a Bernoulli is then
    a probability of them, not a cross-entropy against grey levels)."""
    return LIKELIHOODS.load(cfg.name)(cfg, binarized=binarized)


def build_model(
    cfg: Any,
    image_shape: tuple[int, int, int],
    num_classes: int = 0,
    init_images: torch.Tensor | None = None,
) -> Model:
    """The model that ``cfg`` (its ``model``, ``likelihood`` and ``prior`` groups) describes, for images of
    ``image_shape``. ``num_classes`` is the dataset's for a CVAE (``model.conditional``), else ignored;
    ``init_images`` (float, in [0, 1]) seed a VampPrior's pseudo-inputs with ``prior.init=data``."""
    # Configs built in code (tests, notebooks) may leave the dataset out: grey levels then.
    binarized = Binarize(OmegaConf.select(cfg, "dataset.binarize", default="none")) != Binarize.none
    likelihood = build_likelihood(cfg.likelihood, binarized=binarized)
    return ARCHITECTURES.load(cfg.model.arch)(cfg, image_shape, likelihood, num_classes, init_images)

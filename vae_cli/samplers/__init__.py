"""Post-hoc latent samplers, one module each (gmm, flow, two_stage, prior); ``base`` holds the contract.

``build_sampler`` finds ``cfg.name`` in the sampler catalog (config/samplers.py); vae-fit-sampler fits one to a run's
training codes (vae_cli/runs/samplers.py), vae-sample and vae-eval draw codes from it and decode them.
"""

from __future__ import annotations

from typing import Any

from vae_cli.config.catalog import SAMPLERS
from vae_cli.models.priors import Prior
from vae_cli.samplers.base import LatentSampler


def build_sampler(cfg: Any, latent_dim: int, prior: Prior) -> LatentSampler:
    """The sampler ``cfg`` names, for codes of ``latent_dim`` dimensions (``prior``: the model's own, which
    ``prior`` samples)."""
    return SAMPLERS.load(cfg.name)(cfg, latent_dim, prior)

"""Objectives, one module each (docs/models.md has every formula and the test that pins it).

``build_objective`` maps ``loss.name`` to its class; nothing else in vae-cli knows objectives by name.
"""

from __future__ import annotations

from typing import Any

from vae_cli.losses.base import Objective, ObjectiveContext, Terms
from vae_cli.losses.beta_tcvae import BetaTCVAE
from vae_cli.losses.dip_vae import DIPVAE
from vae_cli.losses.elbo import ELBO
from vae_cli.losses.factor_vae import FactorVAE
from vae_cli.losses.info_vae import InfoVAE
from vae_cli.losses.iwae import IWAE

OBJECTIVES: dict[str, type[Objective]] = {
    "elbo": ELBO,
    "iwae": IWAE,
    "beta_tcvae": BetaTCVAE,
    "factor_vae": FactorVAE,
    "dip_vae": DIPVAE,
    "info_vae": InfoVAE,
}


def build_objective(cfg: Any, context: ObjectiveContext) -> Objective:
    """The objective ``cfg`` (the ``loss`` group) names."""
    return OBJECTIVES[cfg.name](cfg, context)


__all__ = ["OBJECTIVES", "Objective", "ObjectiveContext", "Terms", "build_objective"]

"""Objectives, one module each (docs/models.md has every formula and the test that pins it); ``base`` holds the
contract every objective follows.

``build_objective`` finds ``loss.name`` in the objective catalog (config/objectives.py); nothing else in vae-cli knows
an objective by name.
"""

from __future__ import annotations

from typing import Any

from vae_cli.config.catalog import OBJECTIVES
from vae_cli.config.objectives import least_batch
from vae_cli.models.likelihoods.base import Measures
from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective, ObjectiveContext


def build_objective(cfg: Any, context: ObjectiveContext, model: Model | None = None) -> Objective:
    """The objective ``cfg`` (the ``loss`` group) names, for a model described by ``context``; given the model, the
    objective shapes its layers where it constrains them (``Objective.shape_model``)."""
    objective = OBJECTIVES.load(cfg.name)(cfg, context)
    objective.least_batch = least_batch(cfg)[0]
    objective.no_bound = no_bound_reason(cfg, model)
    if model is not None:
        objective.shape_model(model)
    return objective


def no_bound_reason(cfg: Any, model: Model | None) -> str:
    """Why a model trained with this objective (and the model's likelihood) has no bound on log p(x); "" when it
    has one."""
    if not OBJECTIVES[cfg.name].bound:
        return (
            f"loss={cfg.name} trains an autoencoder whose encoder is a point (z = the mean of q(z|x)): it has no KL "
            f"and no bound on log p(x), so no ELBO, IW log-likelihood or bits/dim is reported for it"
        )
    if model is not None and model.likelihood.measures == Measures.score:
        return (
            f"its reconstruction term ({type(model.likelihood).__name__}) is a score, not a distribution of the "
            f"images: there is no bound on log p(x), so no ELBO, IW log-likelihood or bits/dim is reported for it"
        )
    return ""

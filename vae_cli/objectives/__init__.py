"""Objectives, one module each (docs/models.md has every formula and the test that pins it); ``base`` holds the
contract every objective follows.

``build_objective`` finds ``loss.name`` in the objective catalog (config/objectives.py); nothing else in vae-cli knows
an objective by name.
"""

from __future__ import annotations

from typing import Any

from vae_cli.config.catalog import OBJECTIVES
from vae_cli.config.objectives import least_batch
from vae_cli.objectives.base import Objective, ObjectiveContext


def build_objective(cfg: Any, context: ObjectiveContext) -> Objective:
    """The objective ``cfg`` (the ``loss`` group) names, for a model described by ``context``."""
    objective = OBJECTIVES.load(cfg.name)(cfg, context)
    objective.least_batch = least_batch(cfg)[0]
    return objective

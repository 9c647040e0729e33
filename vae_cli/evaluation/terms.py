"""An objective's terms over a split: what validation, best.pt and the test numbers of metrics.json report."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from vae_cli.datasets.batches import Batch
from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective


@torch.no_grad()
def evaluate(model: Model, objective: Objective, batches: Iterable[Batch]) -> dict[str, float]:
    """Per-sample means of every term of ``objective`` over ``(images, labels)`` batches on the model's device
    (batch statistics such as an MMD are averaged over batches, weighted by their size)."""
    was_training = model.training
    model.eval()
    objective.eval()
    sums = torch.zeros(len(objective.terms), device=model.device)
    count = 0
    for x, y in batches:
        terms = objective(model, x, y, None)
        sums += torch.stack([terms[name].float() for name in objective.terms]) * x.shape[0]
        count += x.shape[0]
    model.train(was_training)
    objective.train(was_training)
    values = (sums / max(1, count)).tolist()
    return dict(zip(objective.terms, values, strict=True))

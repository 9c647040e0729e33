"""``loss=ae``: a plain autoencoder.

    z = mu(x)  (the encoder's mean: a point, not a distribution),  loss = -log p(x | z)

The reconstruction term is the likelihood's (likelihood=bernoulli: binary cross-entropy; gaussian: squared error /
2 sigma^2 + a constant; msssim: 1 - MS-SSIM). There is no KL and no bound on log p(x): the catalog says so
(``bound=False``) and vae-eval reports reconstruction error and sample quality instead. New images come from
decoding N(0, I) draws (poor: nothing pulls the codes there) or from a sampler fitted to the codes (vae-fit-sampler).
"""

from __future__ import annotations

from typing import Any

import torch

from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms, point_reconstruction


class AE(Objective):
    terms = ("loss", "recon")

    def __init__(self, cfg: Any, context: ObjectiveContext) -> None:
        super().__init__()

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        _, _, recon = point_reconstruction(model, x, y)
        recon = recon.mean()
        return {"loss": recon, "recon": recon}

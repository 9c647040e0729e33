"""``loss=rae``: the regularized autoencoder (Ghosh et al., 2020, "From variational to deterministic autoencoders").

    z = mu(x),  loss = -log p(x | z) + beta * |z|^2 / 2 + lambda * R(decoder)

with R one of (``loss.regularizer``):

- ``l2``: |theta_decoder|^2, the decoder's weights (biases too, as the paper's weight decay);
- ``gp``: |dD(z)/dz|_F^2, the squared Frobenius norm of the decoder's Jacobian at the code, estimated without
  building the Jacobian by one Hutchinson probe per image, E_v |v^T J|^2 = |J|_F^2 for v ~ N(0, I) over the decoder's
  outputs (a double backward: refused under torch.compile);
- ``spectral``: no term; every linear and convolution layer of the decoder is spectrally normalized
  (``torch.nn.utils.parametrizations.spectral_norm``, one power iteration per step), applied to the model when the
  objective is built, so checkpoints hold the normalized layers and load back into them.

With beta = lambda = 0 (and l2 or gp) it is ``loss=ae`` exactly (tests/unit/test_autoencoders.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from vae_cli.config.objectives import RAERegularizer
from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms, point_reconstruction

NORMALIZED_LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def decoder_weight_norm(model: Model) -> torch.Tensor:
    """sum of squares of every decoder parameter."""
    return sum(p.float().pow(2).sum() for p in model.decoder.parameters())  # type: ignore[attr-defined]


def jacobian_norm_estimate(params: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """A one-probe Hutchinson estimate of |d params / dz|_F^2 per image ``[B]`` (the graph is kept: it is a loss)."""
    probe = torch.randn_like(params)
    (grad,) = torch.autograd.grad((params * probe).sum(), z, create_graph=True)
    return grad.float().pow(2).sum(dim=1)


class RAE(Objective):
    terms = ("loss", "recon", "embedding", "decoder_reg")

    def __init__(self, cfg: Any, context: ObjectiveContext) -> None:
        super().__init__()
        self.regularizer = RAERegularizer(cfg.regularizer)
        self.beta = float(cfg.embedding_weight)
        self.lam = float(cfg.decoder_weight)

    def shape_model(self, model: Model) -> None:
        if self.regularizer != RAERegularizer.spectral:
            return
        decoder: nn.Module = model.decoder  # type: ignore[attr-defined]
        for module in list(decoder.modules()):
            if isinstance(module, NORMALIZED_LAYERS):
                # ConvTranspose2d's output channels are dim 1 of its weight.
                spectral_norm(module, dim=1 if isinstance(module, nn.ConvTranspose2d) else 0)

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        if self.regularizer == RAERegularizer.gp and torch.is_grad_enabled():
            mu, _ = model.encode(x, y)
            z = mu if mu.requires_grad else mu.detach().requires_grad_(True)
            params = model.decode(z, y)
            recon = -model.likelihood.log_prob(x, params)
            reg = jacobian_norm_estimate(params, z).mean()
        else:
            z, _, recon = point_reconstruction(model, x, y)
            if self.regularizer == RAERegularizer.l2:
                reg = decoder_weight_norm(model)
            else:  # spectral (a constraint, no term), or gp without a graph (evaluation): not estimated
                reg = z.new_zeros((), dtype=torch.float32)
        recon = recon.mean()
        embedding = 0.5 * z.float().pow(2).sum(dim=1).mean()
        loss = recon + self.beta * embedding + self.lam * reg
        return {"loss": loss, "recon": recon, "embedding": embedding, "decoder_reg": reg.detach()}

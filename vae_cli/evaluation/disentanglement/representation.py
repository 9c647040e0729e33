"""A trained model as a representation: the mean of q(z|x), as disentanglement_lib scores a VAE."""

from __future__ import annotations

import numpy as np
import torch

from vae_cli.datasets.preprocess import to_unit_float
from vae_cli.evaluation.disentanglement.sampling import Representation
from vae_cli.process.errors import ConfigError


def check_scorable(model: torch.nn.Module) -> None:
    """Refuse models whose code is not one vector of Gaussian means."""
    if hasattr(model, "codes"):
        raise ConfigError(
            "A VQ-VAE's code is a grid of discrete codebook entries, not a vector of latent factors; the "
            "disentanglement metrics score models with a Gaussian encoder (model=mlp, conv or resnet)."
        )
    if getattr(model, "num_classes", 0) > 0:
        raise ConfigError(
            "A conditional model (model.conditional=true) encodes each image together with its label, so its code "
            "is not a representation of the image alone; score an unconditional model."
        )


def encoder_mean(model: torch.nn.Module, batch_size: int = 1024) -> Representation:
    """uint8 observations -> the encoder's mean, in ``batch_size`` chunks, without gradients."""
    check_scorable(model)
    device = next(model.parameters()).device

    @torch.no_grad()
    def represent(observations: np.ndarray) -> np.ndarray:
        was_training = model.training
        model.eval()
        try:
            out = []
            for start in range(0, len(observations), batch_size):
                x = to_unit_float(
                    torch.from_numpy(np.ascontiguousarray(observations[start : start + batch_size])).to(device)
                )
                mu, _ = model.encode(x, None)
                out.append(mu.float().flatten(1).cpu().numpy())
            return np.concatenate(out).astype(np.float64)
        finally:
            model.train(was_training)

    return represent

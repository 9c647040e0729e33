"""``loss=wae``: the Wasserstein autoencoder with an MMD penalty (Tolstikhin et al., 2018).

    z_i = mu(x_i)  (deterministic encoder, as the paper's experiments),  p_i ~ p(z)
    loss = mean_i -log p(x_i | z_i) + lambda * MMD(q(z), p(z))

MMD is the unbiased estimate between the batch's codes and as many prior draws, with the kernel summed over
several scales C * s (``objectives/mmd.py``; C = 2 * latent_dim * sigma_p^2, s in ``loss.scales``), as
Tolstikhin's code does. The MMD is a batch statistic, computed in fp32 whatever the step's precision.
"""

from __future__ import annotations

from typing import Any

import torch

from vae_cli.config.objectives import MMDKernel
from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective, ObjectiveContext, Terms, no_autocast, point_reconstruction
from vae_cli.objectives.mmd import mmd_unbiased


class WAE(Objective):
    terms = ("loss", "recon", "mmd")

    def __init__(self, cfg: Any, context: ObjectiveContext) -> None:
        super().__init__()
        self.kernel = MMDKernel(cfg.kernel)
        self.lam = float(cfg["lambda"])
        base = 2.0 * context.latent_dim * float(cfg.kernel_scale)
        # A buffer: on the run's device once, so the step copies nothing from the host (CUDA graphs capture it).
        self.register_buffer("scales", torch.tensor([base * float(s) for s in cfg.scales]), persistent=False)

    def forward(self, model: Model, x: torch.Tensor, y: torch.Tensor | None, step: torch.Tensor | None) -> Terms:
        z, _, recon = point_reconstruction(model, x, y)
        recon = recon.mean()
        with no_autocast(z):
            codes = z.float()
            prior_z = model.prior.sample(codes.shape[0], device=codes.device).float()
            mmd = mmd_unbiased(codes, prior_z, self.kernel, self.scales) if codes.shape[0] > 1 else codes.new_zeros(())
        return {"loss": recon + self.lam * mmd, "recon": recon, "mmd": mmd}

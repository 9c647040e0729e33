"""``posterior=planar``: planar flows after the Gaussian (Rezende & Mohamed 2015, eq. 10-12).

    f(z) = z + u_hat tanh(w.z + b),    log |det df/dz| = log |1 + u_hat . (1 - tanh^2(w.z + b)) w|

Invertibility needs w.u_hat >= -1: u_hat = u + (m(w.u) - w.u) w / |w|^2 with m(a) = -1 + softplus(a) (the paper's
appendix A.1), so w.u_hat = m(w.u) > -1 for every u. The parameters (u, w, b) of each flow come from the encoder
per image (amortized, as in the paper; pythae's VAE_LinNF learns one global set instead).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from vae_cli.models.posteriors.flow import AmortizedFlowPosterior
from vae_cli.models.posteriors.planar_steps import PlanarStepsFunction


def invertible_u(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """u_hat = u + (m(w.u) - w.u) w / |w|^2, m(a) = -1 + softplus(a): w.u_hat = m(w.u) > -1."""
    wu = (w * u).sum(-1, keepdim=True)
    return u + (F.softplus(wu) - 1 - wu) * w / (w.pow(2).sum(-1, keepdim=True) + 1e-12)


def planar_step(
    z: torch.Tensor, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One planar flow on ``z`` ``[..., B, D]`` with per-image ``u, w`` ``[B, D]``, ``b`` ``[B, 1]``: the definition
    that ``PlanarPosterior.transform`` batches over the flows (the tests apply it T times against the transform)."""
    u_hat = invertible_u(u, w)
    a = torch.tanh((z * w).sum(-1, keepdim=True) + b)
    psi_u = ((1 - a.pow(2)) * (w * u_hat).sum(-1, keepdim=True)).squeeze(-1)
    return z + u_hat * a, torch.log((1 + psi_u).abs() + 1e-12)


class PlanarPosterior(AmortizedFlowPosterior):
    def __init__(self, latent_dim: int, flows: int) -> None:
        super().__init__(latent_dim, flows, [latent_dim, latent_dim, 1])  # u, w, b

    def transform(self, z: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The T steps of ``planar_step``: the invertible u_hat of every flow in one batched pass, then the steps
        as one autograd function (``planar_steps.py``: the steps are tiny [B, D] tensors, so their cost is the
        number of operations; tests/unit/test_posteriors.py checks it against applying ``planar_step`` T times).
        """
        if self.flows == 0:
            return z, z.new_zeros(z.shape[:-1])
        assert context is not None
        d = self.latent_dim
        # In fp32 whatever autocast made the context: on a CPU, bf16 elementwise work on these [B, T, D] tensors
        # (u_hat's ~10 ops and their backward) ran 5-10x slower than fp32, and the steps run in fp32 anyway.
        context = context.to(torch.promote_types(context.dtype, torch.float32))
        per_flow_params = context.view(context.shape[0], self.flows, 2 * d + 1)  # [B, T, 2D + 1]
        u, w, b = per_flow_params.split([d, d, 1], dim=-1)
        return PlanarStepsFunction.apply(z, invertible_u(u, w), w, b.squeeze(-1))


def build(cfg: Any, latent_dim: int) -> PlanarPosterior:
    return PlanarPosterior(latent_dim, int(cfg.flows))

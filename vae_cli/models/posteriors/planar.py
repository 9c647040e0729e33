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
        """The T steps of ``planar_step``, with everything that does not depend on z done once for all of them.

        Only w.z + b, tanh and the update are sequential; u_hat, w.u_hat (T x the parameterization's ~10 ops on
        [B, D]) and the log-determinants (collected tanh values, one pass) are batched over the flows. The steps are
        tiny ([B, D] tensors), so their cost is the number of operations: this makes ~5 per step forward instead of
        ~25 (tests/unit/test_posteriors.py checks it against applying ``planar_step`` T times).
        """
        if self.flows == 0:
            return z, z.new_zeros(z.shape[:-1])
        assert context is not None
        d = self.latent_dim
        per_flow_params = context.view(context.shape[0], self.flows, 2 * d + 1)  # [B, T, 2D + 1]
        u, w, b = per_flow_params.split([d, d, 1], dim=-1)
        u_hat = invertible_u(u, w)  # [B, T, D]
        w_dot_u_hat = (w * u_hat).sum(-1)  # [B, T]
        activations = []
        # unbind, not w[:, t]: one backward node that stacks the T gradients, instead of T that each fill a zero
        # [B, T, D] tensor
        for u_t, w_t, b_t in zip(u_hat.unbind(1), w.unbind(1), b.unbind(1), strict=True):
            a = torch.tanh((z * w_t).sum(-1, keepdim=True) + b_t)  # [..., B, 1]
            z = torch.addcmul(z, u_t, a)
            activations.append(a)
        a = torch.stack(activations).squeeze(-1)  # [T, ..., B]
        w_dot_u_hat = w_dot_u_hat.t().reshape(self.flows, *([1] * (a.dim() - 2)), -1)  # [T, 1.., B]
        psi_u = (1 - a.pow(2)) * w_dot_u_hat
        return z, torch.log((1 + psi_u).abs() + 1e-12).sum(0)


def build(cfg: Any, latent_dim: int) -> PlanarPosterior:
    return PlanarPosterior(latent_dim, int(cfg.flows))

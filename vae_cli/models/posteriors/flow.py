"""What the flow posteriors (planar, radial, iaf) share: a Gaussian base sample z0 pushed through T invertible
steps, with the exact change of variables

    log q(z_T | x) = log N(z0; mu, sigma^2) - sum_t log |det d z_t / d z_(t-1)|

Their parameters come from the encoder's context h (amortized: per image) and, for IAF, from MADE networks that
also take h. There is no density at an arbitrary z (a planar or radial step has no closed-form inverse): the KL is
log q - log p at the sample, and objectives that need more are refused by the config checks. With ``flows=0`` the
posterior is the Gaussian exactly (tests/unit/test_posteriors.py).
"""

from __future__ import annotations

import torch

from vae_cli.models.posteriors.base import Draw, Posterior, PosteriorParams, gaussian_base


class FlowPosterior(Posterior):
    def __init__(self, latent_dim: int, flows: int) -> None:
        super().__init__(latent_dim)
        self.flows = flows

    def transform(self, z: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_T, sum_t log |det J_t|) for base samples ``z`` ``[..., B, D]`` and the images' context ``[B, C]``."""
        raise NotImplementedError

    def draw(self, p: PosteriorParams, eps, generator=None, stop_q=False) -> Draw:
        z0, log_q0 = gaussian_base(p, eps)
        z, log_det = self.transform(z0, p.context)
        return Draw(z=z, log_q=log_q0 - log_det.float())

    def location(self, p: PosteriorParams) -> tuple[torch.Tensor, torch.Tensor]:
        z, _ = self.transform(p.mu, p.context)
        return z, p.logvar


class AmortizedFlowPosterior(FlowPosterior):
    """T steps of one kind whose parameters (``sizes`` units each) the encoder gives per image (radial; planar keeps
    the layout but batches its steps in its own ``transform``)."""

    sizes: list[int]

    def __init__(self, latent_dim: int, flows: int, sizes: list[int]) -> None:
        super().__init__(latent_dim, flows)
        self.sizes = sizes
        self.context_dim = flows * sum(sizes)

    @staticmethod
    def step(z: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on ``z`` ``[..., B, D]`` with one image's parameters: (f(z), log |det df/dz|)."""
        raise NotImplementedError

    def transform(self, z, context):
        log_det = z.new_zeros(z.shape[:-1])
        if self.flows == 0:
            return z, log_det
        for params in per_flow(context, self.flows, self.sizes):
            z, ld = self.step(z, *params)
            log_det = log_det + ld
        return z, log_det


def per_flow(context: torch.Tensor | None, flows: int, sizes: list[int]) -> list[list[torch.Tensor]]:
    """The context ``[B, flows * sum(sizes)]`` cut into each flow's parameters (a list of ``[B, size]`` each)."""
    assert context is not None
    chunks = context.view(context.shape[0], flows, sum(sizes)).unbind(1)
    return [list(c.split(sizes, dim=-1)) for c in chunks]

"""``posterior=iaf``: inverse autoregressive flow after the Gaussian (Kingma et al. 2016, section 4 and fig. 2).

The encoder gives (mu, logvar) and a context h; each of the T steps is a MADE (Germain et al. 2015) that reads the
current z and h and outputs (m, s) with m_d, s_d depending on z_<d only (masked weights; h reaches every hidden
unit and every output, unmasked: pythae's IAF leaves h out, a deviation from the paper):

    sigma = sigmoid(s + 1),   z <- sigma * z + (1 - sigma) * m,   log |det| = sum_d log sigma_d

(the +1 is the forget-gate bias: each step starts close to the identity), or with ``posterior.step=affine``

    z <- z * exp(s) + m,   log |det| = sum_d s_d

(the authors' code, MAF, pythae and zuko: a step can widen as well as narrow; with ``posterior.context=0`` about 2
nats better than the gated update on binarized Fashion-MNIST at 3 epochs: docs/models.md). The Jacobian of a step is
triangular with diagonal sigma or exp(s) (tests/unit/test_posteriors.py checks it with
torch.autograd.functional.jacobian); the order of z is reversed between steps so that every dimension is transformed
given every other one somewhere in the chain.

Written here rather than taken from a flow library: zuko's masked autoregressive transform takes a context too, but
its step is the affine z * exp(s) + m, not the gated update of the paper; nflows has had no release since 2020; and
an IAF step is ~40 lines, so vae-cli needs no new dependency and the masks are pinned by its own test.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vae_cli.config.enums import IAFStep
from vae_cli.models.elementwise import elu, log_sigmoid
from vae_cli.models.posteriors.flow import FlowPosterior
from vae_cli.models.posteriors.iaf_step import iaf_step

FORGET_BIAS = 1.0


class MaskedLinear(nn.Linear):
    def __init__(self, n_in: int, n_out: int, mask: torch.Tensor) -> None:
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """(m, s) = MADE(z, h): ``[..., D]`` each, output d connected to inputs < d only; h joins every hidden unit."""

    def __init__(self, dim: int, hidden: list[int], context: int) -> None:
        super().__init__()
        inputs = torch.arange(1, dim + 1)
        degrees = [inputs]
        for width in hidden:
            degrees.append(torch.arange(width) % max(1, dim - 1) + 1)
        layers = []
        for d_in, d_out in itertools.pairwise(degrees):
            layers.append(MaskedLinear(len(d_in), len(d_out), d_out[:, None] >= d_in[None, :]))
        self.hidden = nn.ModuleList(layers)
        out_degrees = torch.cat([inputs, inputs])  # m then s
        self.out = MaskedLinear(len(degrees[-1]), 2 * dim, out_degrees[:, None] > degrees[-1][None, :])
        self.context = nn.Linear(context, hidden[0]) if context > 0 else None
        # h also reaches the outputs directly: the first dimension, which reads no z, still depends on the image.
        self.context_out = nn.Linear(context, 2 * dim, bias=False) if context > 0 else None

    def masked_layers(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(weight, bias, mask) of each masked linear, the output layer last (what ``iaf_step`` takes)."""
        return [(layer.weight, layer.bias, layer.mask) for layer in [*self.hidden, self.out]]

    def forward(
        self,
        z: torch.Tensor,
        h: torch.Tensor | None,
        projected: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``projected``: (context(h), context_out(h)) when the caller computed them already (``IAFPosterior``
        does it for all steps in one product); they broadcast against z's leading axes."""
        if projected is None and self.context is not None and h is not None:
            projected = (self.context(h), self.context_out(h))
        a = self.hidden[0](z)
        if projected is not None:
            a = a + projected[0]
        a = elu(a)
        for layer in self.hidden[1:]:
            a = elu(layer(a))
        out = self.out(a)
        if projected is not None:
            out = out + projected[1]
        return out.chunk(2, dim=-1)


def module_step(
    made: MADE, z: torch.Tensor, projected: tuple[torch.Tensor, torch.Tensor] | None, affine: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step through the MADE module and autograd: the definition ``iaf_step`` is tested against."""
    m, s = made(z, None, projected)
    # The update and its log-determinant in fp32 at least, under bf16 autocast too.
    wide = torch.promote_types(z.dtype, torch.float32)
    m, s = m.to(wide), s.to(wide)
    if affine:
        return z * torch.exp(s) + m, s.sum(-1)
    sigma = torch.sigmoid(s + FORGET_BIAS)
    return sigma * z + (1 - sigma) * m, log_sigmoid(s + FORGET_BIAS).sum(-1)


class IAFPosterior(FlowPosterior):
    def __init__(self, latent_dim: int, flows: int, hidden: list[int], context: int, affine: bool = False) -> None:
        super().__init__(latent_dim, flows)
        self.affine = affine
        self.context_dim = context if flows > 0 else 0
        self.steps = nn.ModuleList(MADE(latent_dim, hidden, self.context_dim) for _ in range(flows))

    def project_context(self, context: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every step's (context(h), context_out(h)) ``[B, H0]``, ``[B, 2D]`` from one matrix product: the 2T small
        products of the steps are one, and K draws per image (IWAE) share it instead of repeating it K times."""
        steps = list(self.steps)
        weight = torch.cat([m.context.weight for m in steps] + [m.context_out.weight for m in steps])
        bias = torch.cat(
            [m.context.bias for m in steps] + [m.context.bias.new_zeros(m.context_out.out_features) for m in steps]
        )
        sizes = [m.context.out_features for m in steps] + [m.context_out.out_features for m in steps]
        parts = F.linear(context, weight, bias).split(sizes, dim=-1)
        return list(zip(parts[: len(steps)], parts[len(steps) :], strict=True))

    def transform(self, z, context):
        log_det = z.new_zeros(z.shape[:-1])
        projected: list = [None] * self.flows
        if context is not None and self.context_dim > 0:
            projected = self.project_context(context)  # [B, .]: broadcasts against K draws per image
        for t, made in enumerate(self.steps):
            if t > 0:
                z = z.flip(-1)
            # MADE and the update as one autograd function (iaf_step.py; the same values as ``module_step``).
            c0, c1 = projected[t] if projected[t] is not None else (None, None)
            z, step_log_det = iaf_step(z, c0, c1, FORGET_BIAS, made.masked_layers(), self.affine)
            log_det = log_det + step_log_det
        if self.flows > 1 and self.flows % 2 == 0:
            z = z.flip(-1)  # back to the encoder's order (a permutation: no volume change)
        return z, log_det


def build(cfg: Any, latent_dim: int) -> IAFPosterior:
    affine = IAFStep(cfg.step) == IAFStep.affine
    return IAFPosterior(latent_dim, int(cfg.flows), [int(h) for h in cfg.hidden], int(cfg.context), affine)

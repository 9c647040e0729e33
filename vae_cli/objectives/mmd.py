"""The maximum mean discrepancy between a batch of codes and as many prior draws (InfoVAE, WAE-MMD).

    MMD = 1/(n(n-1)) sum_{i != j} [k(z_i, z_j) + k(p_i, p_j)] - 2/n^2 sum_{i, j} k(z_i, p_j)

the unbiased estimate (the diagonals left out), with k(a, b) = C / (C + |a - b|^2) (``imq``, inverse multiquadric)
or exp(-|a - b|^2 / C) (``rbf``). Several scales sum their kernels, as Tolstikhin et al.'s WAE code does for the IMQ
kernel (C = 2 * latent_dim * prior variance * s for s in 0.1, 0.2, 0.5, 1, 2, 5, 10): a sum of characteristic
kernels is characteristic, and the sum keeps a gradient where a single bandwidth's kernel is flat.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

from vae_cli.config.objectives import MMDKernel


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a_i - b_j|^2 ``[N, M]`` as |a_i|^2 + |b_j|^2 - 2 a_i.b_j, clamped at 0, in the inputs' precision.

    One [N, D] x [D, M] product instead of the [N, M, D] difference tensor: 2.7-3.9x faster forward + backward for a
    batch of 128 codes (``benchmarks/pairwise_terms.py``), the MMD's whole cost. The expansion cancels where a_i is
    near b_j, which costs float32 ~1e-6 absolute on |a - b|^2 for codes of norm ~5; against the kernels' scales
    (C >= 4 here) that moves the MMD by ~1e-5 relative, far below its sampling noise (tests: float32 against the
    exact float64 value). The diagonals that cancel worst (a_i = a_i) are left out of the unbiased estimate.
    Autocast is off inside: a bf16 product would cancel at ~1e-2.
    """
    with torch.autocast(a.device.type, enabled=False):
        cross = a @ b.t()
        return (a.pow(2).sum(-1)[:, None] + b.pow(2).sum(-1)[None, :]).sub_(cross, alpha=2).clamp_min_(0)


def kernels_and_slopes(
    sq: torch.Tensor, kernel: MMDKernel, scales: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_s k_s(sq) and sum_s dk_s/dsq, elementwise over the squared distances ``sq``, for one scale or a tensor
    ``[S]`` of them (one [S, ...] pass): imq k = C / (C + sq), dk/dsq = -k^2 / C; rbf k = exp(-sq / C),
    dk/dsq = -k / C."""
    multi = isinstance(scales, torch.Tensor)
    c = scales.to(sq.dtype).view(-1, *([1] * sq.dim())) if multi else scales
    if MMDKernel(kernel) == MMDKernel.imq:
        k = c / (c + sq)
        slope = k.square().div_(c).neg_()
    else:
        k = torch.exp(-sq / c)
        slope = (k / c).neg_()
    return (k.sum(0), slope.sum(0)) if multi else (k, slope)


class UnbiasedMMD(torch.autograd.Function):
    """The unbiased MMD^2 between the rows of ``z`` ``[n, D]`` and ``p`` ``[m, D]`` (the prior draws: a gradient
    only where they need one, a learned prior's), from one kernel matrix over the stacked rows x = [z; p] and a
    closed-form backward.

    MMD = sum_ij W_ij k(|x_i - x_j|^2) with W = 1/(n(n-1)) on the z-z block and 1/(m(m-1)) on the p-p block off
    their diagonals, -1/(nm) on the two cross blocks, 0 on the diagonal. With A = W * dk/dsq (symmetric) and
    d|x_i - x_j|^2/dx_i = 2 (x_i - x_j):  dMMD/dx_i = 4 (x_i sum_j A_ij - sum_j A_ij x_j). Three kernel matrices and
    autograd through them took ~35 small operations forward and as many backward nodes (~0.7 ms for 128 codes,
    ~20% of an InfoVAE step on this project's CPU); this is ~15 each way. Pinned against the elementwise differences
    in float64 and gradcheck (tests/unit/test_objectives.py)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, p: torch.Tensor, kernel: MMDKernel, scales: float | torch.Tensor):  # type: ignore[override]
        n, m = z.shape[0], p.shape[0]
        x = torch.cat([z.detach(), p.detach()])
        k, slope = kernels_and_slopes(squared_distances(x, x), kernel, scales)
        within_z = (k[:n, :n].sum() - k[:n, :n].diagonal().sum()) / (n * (n - 1))
        within_p = (k[n:, n:].sum() - k[n:, n:].diagonal().sum()) / (m * (m - 1))
        ctx.save_for_backward(x, slope)
        ctx.n = n
        return within_z + within_p - 2 * k[:n, n:].mean()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, slope = ctx.saved_tensors
        n, m = ctx.n, x.shape[0] - ctx.n
        # The rows of A = W * dk/dsq that are asked for: the codes', and the prior draws' where they need a gradient
        # (a learned prior's samples). A copy: the saved slopes stay as saved (a retained graph's second backward).
        rows = x.shape[0] if ctx.needs_input_grad[1] else n
        a = slope[:rows].clone()
        a[:n, :n].mul_(1.0 / (n * (n - 1))).diagonal().zero_()
        a[:n, n:].mul_(-1.0 / (n * m))
        if rows > n:
            a[n:, :n].mul_(-1.0 / (n * m))
            a[n:, n:].mul_(1.0 / (m * (m - 1))).diagonal().zero_()
        with torch.autocast(x.device.type, enabled=False):
            grad_x = (a.sum(1, keepdim=True) * x[:rows]).sub_(a @ x).mul_(4 * grad)
        return (grad_x[:n] if ctx.needs_input_grad[0] else None), (grad_x[n:] if rows > n else None), None, None


def mmd_unbiased(
    z: torch.Tensor, p: torch.Tensor, kernel: MMDKernel, scales: float | Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """The unbiased MMD^2 estimate between the rows of ``z`` and of ``p`` (each at least 2 rows). Several scales are
    best given as a tensor on the device, made once (``WAE`` keeps a buffer): a list is turned into one per call, a
    host-to-device copy that a CUDA graph could not capture."""
    if not isinstance(scales, int | float | torch.Tensor):
        scales = torch.tensor([float(c) for c in scales], dtype=z.dtype, device=z.device)
    return UnbiasedMMD.apply(z, p, MMDKernel(kernel), scales)

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

from vae_cli.config.objectives import MMDKernel


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a_i - b_j|^2 ``[N, M]``, taken elementwise (exact: no |a|^2 + |b|^2 - 2ab cancellation)."""
    return (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)


def kernel_matrix(a: torch.Tensor, b: torch.Tensor, kernel: MMDKernel, scales: Sequence[float]) -> torch.Tensor:
    """sum_s k_s(a_i, b_j) ``[N, M]`` over the kernel scales C_s."""
    sq = squared_distances(a, b)
    total = torch.zeros_like(sq)
    for c in scales:
        total = total + (c / (c + sq) if MMDKernel(kernel) == MMDKernel.imq else torch.exp(-sq / c))
    return total


def mmd_unbiased(z: torch.Tensor, p: torch.Tensor, kernel: MMDKernel, scales: float | Sequence[float]) -> torch.Tensor:
    """The unbiased MMD^2 estimate between the rows of ``z`` and of ``p`` (each at least 2 rows)."""
    scales = [scales] if isinstance(scales, int | float) else list(scales)
    n, m = z.shape[0], p.shape[0]
    kzz, kpp, kzp = (
        kernel_matrix(z, z, kernel, scales),
        kernel_matrix(p, p, kernel, scales),
        kernel_matrix(z, p, kernel, scales),
    )
    off_zz = (kzz.sum() - kzz.diagonal().sum()) / (n * (n - 1))
    off_pp = (kpp.sum() - kpp.diagonal().sum()) / (m * (m - 1))
    return off_zz + off_pp - 2 * kzp.mean()

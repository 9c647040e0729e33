"""Pictures of the latent space: traversals, interpolations (linear and spherical), the 2-D manifold, scatter plots.

Used by ``vae-sample`` (PNG files) and by training (TensorBoard images through ``vae_cli.training.latent_monitor``).
Functions take latents and return latents, image tensors ``[N, C, H, W]`` in [0, 1], or PIL images; none of them
draws random numbers, so callers control every seed.
"""

from __future__ import annotations

import torch
from PIL import Image

from vae_cli.evaluation.plots import scatter_plot
from vae_cli.models.protocol import Model


class MeanDecoder:
    """z (and, for a CVAE, labels y) -> the likelihood's mean image in [0, 1] (Bernoulli: sigmoid of logits),
    decoded in batches."""

    def __init__(self, model: Model, batch_size: int = 1024) -> None:
        self.model = model
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        device = self.model.device
        if self.model.conditional and y is None:
            y = torch.zeros(z.shape[0], dtype=torch.long)
        parts = []
        for i in range(0, z.shape[0], self.batch_size):
            labels = None if y is None else y[i : i + self.batch_size].to(device)
            params = self.model.decode(z[i : i + self.batch_size].to(device), labels)
            parts.append(self.model.likelihood.mean(params).cpu())
        return torch.cat(parts)


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight lines from ``z0`` to ``z1`` (both ``[P, D]``) at fractions ``t`` ``[T]``: ``[P, T, D]``."""
    t = t.to(z0)[None, :, None]
    return (1 - t) * z0[:, None] + t * z1[:, None]


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Spherical interpolation (great circle between the directions, radius interpolated with it): ``[P, T, D]``.

    Under a Gaussian prior, the midpoint of a straight line has a much smaller norm than typical samples
    (it passes near the origin, where no data lives); slerp keeps intermediate points at typical norms.
    Nearly parallel pairs fall back to ``lerp`` (the formula divides by sin(angle)).
    """
    cos = torch.nn.functional.cosine_similarity(z0, z1, dim=-1).clamp(-1, 1)
    omega = torch.arccos(cos)[:, None, None]  # [P, 1, 1]
    tt = t.to(z0)[None, :, None]
    sin = torch.sin(omega)
    safe = sin.abs() > eps
    w0 = torch.where(safe, torch.sin((1 - tt) * omega) / torch.where(safe, sin, 1), 1 - tt)
    w1 = torch.where(safe, torch.sin(tt * omega) / torch.where(safe, sin, 1), tt)
    return w0 * z0[:, None] + w1 * z1[:, None]


def interpolation_grid(
    decode: MeanDecoder,
    x0: torch.Tensor,
    x1: torch.Tensor,
    z0: torch.Tensor,
    z1: torch.Tensor,
    steps: int,
    spherical: bool,
    y0: torch.Tensor | None = None,
) -> torch.Tensor:
    """One row per pair: the real image ``x0``, ``steps`` decoded points from z0 to z1, the real image ``x1``.

    Returns ``[P * (steps + 2), C, H, W]`` (``nrow = steps + 2``).
    """
    t = torch.linspace(0, 1, steps)
    path = (slerp if spherical else lerp)(z0, z1, t)  # [P, T, D]
    labels = None if y0 is None else y0.cpu().repeat_interleave(steps)  # a CVAE keeps the first image's label
    decoded = decode(path.reshape(-1, path.shape[-1]), labels).view(z0.shape[0], steps, *x0.shape[1:])
    rows = torch.cat([x0.cpu().float()[:, None], decoded, x1.cpu().float()[:, None]], dim=1)
    return rows.reshape(-1, *x0.shape[1:])


def dims_by_usage(model: Model, mu: torch.Tensor, logvar: torch.Tensor) -> list[int]:
    """Latent dimensions, most used first: by mean KL where the prior has it per dimension, else by the variance
    of the posterior means (the active-units statistic)."""
    per_dim = model.closed_form_kl_per_dim(mu, logvar)
    return dims_by_kl(per_dim.mean(dim=0) if per_dim is not None else mu.float().var(dim=0, unbiased=False))


def dims_by_kl(kl_per_dim: list[float] | torch.Tensor) -> list[int]:
    """Latent dimensions ordered by mean KL, largest first: the dimensions the model uses come first."""
    kl = torch.as_tensor(kl_per_dim, dtype=torch.float64)
    # Stable sort on -kl: ties keep index order, so the picture is deterministic.
    return torch.sort(-kl, stable=True).indices.tolist()


def traversal_latents(z_base: torch.Tensor, dims: list[int], values: torch.Tensor) -> torch.Tensor:
    """For each dimension in ``dims`` (a row), ``z_base`` with that one coordinate set to each of ``values``.

    ``[len(dims) * len(values), D]``, row-major, for a grid with ``nrow = len(values)``.
    """
    z = z_base.detach().cpu().float().expand(len(dims), len(values), z_base.shape[-1]).clone()
    for row, d in enumerate(dims):
        z[row, :, d] = values.float()
    return z.reshape(-1, z_base.shape[-1])


def manifold_latents(n: int, lo: float = 0.05, hi: float = 0.95) -> torch.Tensor:
    """An ``n x n`` grid of 2-D latents at evenly spaced prior quantiles (Kingma & Welling's figure 4).

    Rows go from high z2 (top) to low z2; columns from low to high z1, as on a plot. ``[n * n, 2]``.
    """
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(lo, hi, n, dtype=torch.float64)).float()
    z1 = q.repeat(n)
    z2 = q.flip(0).repeat_interleave(n)
    return torch.stack([z1, z2], dim=1)


def pca_2d(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project ``[N, D]`` points on their two principal axes (deterministic SVD, no random sketching).

    Returns the ``[N, 2]`` projection and the fraction of variance each axis explains. Axis signs are fixed so
    that the largest-magnitude loading is positive (SVD signs are otherwise arbitrary and would flip between
    epochs).
    """
    x = points.detach().double().cpu()
    x = x - x.mean(dim=0)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    axes = vh[:2]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
    axes = axes * torch.where(signs == 0, 1.0, signs)
    total = s.pow(2).sum()
    explained = s[:2].pow(2) / total if total > 0 else torch.zeros(2, dtype=x.dtype)
    proj = x @ axes.T
    if proj.shape[1] < 2:  # latent_dim 1: plot against zero
        proj = torch.cat([proj, torch.zeros_like(proj)], dim=1)
        explained = torch.cat([explained, torch.zeros(1, dtype=x.dtype)])
    return proj, explained


def latent_scatter(
    mu: torch.Tensor,
    labels: torch.Tensor | None,
    title: str,
    size: int = 480,
    class_names: tuple[str, ...] | list[str] = (),
) -> Image.Image:
    """Posterior means coloured by class: the latents themselves when 2-D, else their first two principal axes.

    Unlabelled data (labels all -1) is drawn in one colour without a legend.
    """
    if labels is not None and bool((labels < 0).all()):
        labels = None
    if mu.shape[1] == 2:
        return scatter_plot(mu, labels, title, "z1", "z2", size=size, class_names=class_names)
    proj, explained = pca_2d(mu)
    return scatter_plot(
        proj,
        labels,
        f"{title} (PCA of {mu.shape[1]}-D mu)",
        f"PC1 ({100 * explained[0]:.0f}% var)",
        f"PC2 ({100 * explained[1]:.0f}% var)",
        size=size,
        class_names=class_names,
    )

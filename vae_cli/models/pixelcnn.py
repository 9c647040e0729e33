"""Priors over a VQ-VAE's code grid: uniform (the first stage's) and a gated PixelCNN (van den Oord et al., 2016),
the second stage that makes the VQ-VAE a generative model.

    p(c) = prod_{i,j in raster order} p(c_ij | c_<ij)

The gated PixelCNN has two stacks so that it has no blind spot: a vertical stack that sees every row above, and a
horizontal stack that sees the current row to the left, with the vertical stack's features added in. Causality is
by shifts rather than masks: the codes enter the vertical stack shifted down one row and the horizontal stack
shifted right one column; after that, the vertical convolution (k//2 + 1 rows x k columns) covers rows up to the
current one and the horizontal convolution (1 x k//2 + 1) columns up to the current one, so position (i, j) sees
exactly the codes before it in raster order, never its own (tests check it with gradients). Every layer is
gated, tanh(a) * sigmoid(b), with a residual connection on the horizontal stack.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vae_cli.process import progress


class CodePrior(nn.Module):
    """The contract: ``nll(codes)`` per grid ``[B]`` in nats, and ``sample(n)`` -> codes ``[n, h, w]``."""

    def __init__(self, size: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.size, self.grid = int(size), tuple(grid)

    learned = False

    def nll(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0, device=None
    ) -> torch.Tensor:
        raise NotImplementedError


class UniformCodePrior(CodePrior):
    """Every code equally likely: the prior a VQ-VAE is trained under (its KL is the constant h w log K)."""

    def nll(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.full((codes.shape[0],), math.prod(self.grid) * math.log(self.size), device=codes.device)

    def sample(self, n: int, generator=None, temperature: float = 1.0, device=None) -> torch.Tensor:
        gen_device = generator.device if generator is not None else device
        return torch.randint(0, self.size, (n, *self.grid), generator=generator, device=gen_device).to(device)


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Row i takes row i - 1 (row 0 zeros)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """Column j takes column j - 1 (column 0 zeros)."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


def gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        half = kernel // 2
        self.half = half
        # Rows i - half .. i, columns j - half .. j + half (padding on top and both sides, none below).
        self.vertical = nn.Conv2d(channels, 2 * channels, (half + 1, kernel))
        # Row i, columns j - half .. j (padding on the left only).
        self.horizontal = nn.Conv2d(channels, 2 * channels, (1, half + 1))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pv = self.vertical(F.pad(v, (self.half, self.half, self.half, 0)))
        ph = self.horizontal(F.pad(h, (self.half, 0, 0, 0)))
        # The vertical stack at row i has only ever seen the rows above i (its input was shifted down once, at the
        # start), so its features join the horizontal stack at the same row.
        h_out = h + self.out(gate(ph + self.vertical_to_horizontal(pv)))
        return gate(pv), h_out


class GatedPixelCNN(CodePrior):
    """A gated PixelCNN over ``grid``-shaped maps of codes in [0, size)."""

    learned = True

    def __init__(self, size: int, grid: tuple[int, int], channels: int = 64, layers: int = 8, kernel: int = 3):
        super().__init__(size, grid)
        self.embed = nn.Embedding(self.size, channels)
        self.layers = nn.ModuleList(GatedLayer(channels, kernel) for _ in range(layers))
        self.head = nn.Sequential(
            nn.SiLU(), nn.Conv2d(channels, channels, 1), nn.SiLU(), nn.Conv2d(channels, self.size, 1)
        )

    def logits_from_embedding(self, e: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K, h, w]`` from code embeddings ``[B, C, h, w]`` (the gradient tests go in here)."""
        # The first layer's inputs are shifted so that position (i, j) starts from the codes strictly before it:
        # the rows above (vertical) and the columns to the left in its row (horizontal).
        v, h = down_shift(e), right_shift(e)
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)

    def logits(self, codes: torch.Tensor) -> torch.Tensor:
        return self.logits_from_embedding(self.embed(codes).permute(0, 3, 1, 2))

    def nll(self, codes: torch.Tensor) -> torch.Tensor:
        logits = self.logits(codes).float()
        return F.cross_entropy(logits, codes, reduction="none").flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator=None, temperature: float = 1.0, device=None) -> torch.Tensor:
        """Codes drawn position by position in raster order; ``temperature`` divides the logits."""
        device = device or self.embed.weight.device
        gen_device = generator.device if generator is not None else device
        codes = torch.zeros(n, *self.grid, dtype=torch.long, device=device)
        h, w = self.grid
        positions = ((i, j) for i in range(h) for j in range(w))
        for i, j in progress.tracked(positions, f"sampling {n} code maps (PixelCNN)", total=h * w, unit="position"):
            # Position (i, j) depends on the rows above and its own row (the stacks pad on top, never below):
            # the rows below are left out of the pass.
            logits = self.logits(codes[:, : i + 1])[:, :, i, j].float() / temperature
            u = torch.rand(logits.shape, generator=generator, device=gen_device).to(device).clamp(1e-9, 1 - 1e-9)
            codes[:, i, j] = (logits - torch.log(-torch.log(u))).argmax(dim=1)  # Gumbel-max
        return codes


def build(cfg: Any, codebook_size: int, grid: tuple[int, int]) -> GatedPixelCNN:
    """``prior=pixelcnn`` over a VQ-VAE's ``grid`` of ``codebook_size`` codes."""
    return GatedPixelCNN(codebook_size, grid, int(cfg.channels), int(cfg.layers), int(cfg.kernel))

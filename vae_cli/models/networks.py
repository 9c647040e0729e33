"""Encoder/decoder pairs. One contract for every architecture:

- an encoder maps images ``[B, C, H, W]`` (and, for a CVAE, a condition ``c`` ``[B, cond_dim]``: the one-hot
  label) to ``(mu, logvar)``, each ``[B, latent_dim]``;
- a decoder maps ``z`` ``[B, latent_dim]`` (and ``c``) to the likelihood's parameters: ``[B, P, H, W]`` with P the
  likelihood's ``param_channels`` (C for a Bernoulli, 2C for a Gaussian with per-pixel σ, 10K for K coupled RGB
  logistics).

The condition is concatenated where the representation is a flat vector: the input of an MLP encoder, the head of a
conv encoder (after the convolutions), and ``z`` for every decoder.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from vae_cli.config import Arch, ModelConfig


def _mlp(widths: list[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for w_in, w_out in itertools.pairwise(widths):
        layers += [nn.Linear(w_in, w_out), nn.ReLU()]
    return layers


def _join(h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    return h if c is None else torch.cat([h, c.to(h.dtype)], dim=-1)


class MLPEncoder(nn.Module):
    def __init__(
        self, image_shape: tuple[int, int, int], hidden_dims: list[int], latent_dim: int, cond_dim: int = 0
    ) -> None:
        super().__init__()
        n_in = image_shape[0] * image_shape[1] * image_shape[2] + cond_dim
        # The Flatten stays first in ``body`` so the weights keep the state-dict keys older runs saved.
        self.body = nn.Sequential(nn.Flatten(), *_mlp([n_in, *hidden_dims]))
        # One head producing [mu, logvar] side by side: a single matmul instead of two.
        self.head = nn.Linear(hidden_dims[-1] if hidden_dims else n_in, 2 * latent_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.body(_join(x.flatten(1), c))).chunk(2, dim=-1)
        return mu, logvar


class MLPDecoder(nn.Module):
    def __init__(
        self,
        image_shape: tuple[int, int, int],
        hidden_dims: list[int],
        latent_dim: int,
        cond_dim: int = 0,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        out_shape = (out_channels or image_shape[0], image_shape[1], image_shape[2])
        widths = [latent_dim + cond_dim, *reversed(hidden_dims)]
        n_out = out_shape[0] * out_shape[1] * out_shape[2]
        self.net = nn.Sequential(*_mlp(widths), nn.Linear(widths[-1], n_out), nn.Unflatten(1, out_shape))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(_join(z, c))


class ConvEncoder(nn.Module):
    """Stride-2 4x4 convolutions (each halves H and W), then a linear head."""

    def __init__(
        self, image_shape: tuple[int, int, int], channels: list[int], latent_dim: int, cond_dim: int = 0
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        layers: list[nn.Module] = []
        for c_in, c_out in zip([c, *channels[:-1]], channels, strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.Flatten())
        scale = 2 ** len(channels)
        self.head = nn.Linear(channels[-1] * (h // scale) * (w // scale) + cond_dim, 2 * latent_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(_join(self.body(x), c)).chunk(2, dim=-1)
        return mu, logvar


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: linear to a small feature map, then stride-2 transposed convolutions."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: list[int],
        latent_dim: int,
        cond_dim: int = 0,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        c = out_channels or c
        scale = 2 ** len(channels)
        rev = list(reversed(channels))
        self.fc = nn.Sequential(
            nn.Linear(latent_dim + cond_dim, rev[0] * (h // scale) * (w // scale)),
            nn.ReLU(),
            nn.Unflatten(1, (rev[0], h // scale, w // scale)),
        )
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(rev):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(rev[-1], c, 4, stride=2, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(self.fc(_join(z, c)))


class PreActBlock(nn.Module):
    """x + conv(act(conv(act(x)))): a pre-activation residual block (He et al., 2016) without normalization.

    Why no BatchNorm: a VAE's encoder is evaluated on one image and on K copies of it (IW-NLL), in train and eval
    mode; batch statistics would make q(z|x) depend on the rest of the batch. The branch's last convolution starts
    at zero, so every block starts as the identity and a deep stack trains from the first step."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        nn.init.zeros_(self.branch[-1].weight)
        nn.init.zeros_(self.branch[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


def residual_stages_down(in_channels: int, widths: list[int], blocks: int) -> nn.Sequential:
    """A stem to ``widths[0]`` channels, then per width: a stride-2 convolution (after the first), ``blocks``
    residual blocks. Output: ``widths[-1]`` channels at H / 2^(len(widths) - 1)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
    for i, width in enumerate(widths):
        if i > 0:
            layers.append(nn.Conv2d(widths[i - 1], width, 4, stride=2, padding=1))
        layers += [PreActBlock(width) for _ in range(blocks)]
    return nn.Sequential(*layers)


def residual_stages_up(out_channels: int, widths: list[int], blocks: int) -> nn.Sequential:
    """The mirror of ``residual_stages_down``: from ``widths[-1]`` channels at the coarsest resolution, per width
    (coarsest first) ``blocks`` residual blocks then a nearest-neighbour x2 upsampling and a convolution, and a
    last activation + convolution to ``out_channels``."""
    rev = list(reversed(widths))
    layers: list[nn.Module] = []
    for i, width in enumerate(rev):
        layers += [PreActBlock(width) for _ in range(blocks)]
        if i + 1 < len(rev):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, rev[i + 1], 3, padding=1)]
    layers += [nn.SiLU(), nn.Conv2d(rev[-1], out_channels, 3, padding=1)]
    return nn.Sequential(*layers)


def coarsest_shape(image_shape: tuple[int, int, int], widths: list[int]) -> tuple[int, int, int]:
    """(channels, h, w) of the residual backbone's last stage for images of ``image_shape``."""
    scale = 2 ** (len(widths) - 1)
    return widths[-1], image_shape[1] // scale, image_shape[2] // scale


class ResNetEncoder(nn.Module):
    def __init__(
        self, image_shape: tuple[int, int, int], widths: list[int], blocks: int, latent_dim: int, cond_dim: int = 0
    ) -> None:
        super().__init__()
        c, h, w = coarsest_shape(image_shape, widths)
        self.body = nn.Sequential(residual_stages_down(image_shape[0], widths, blocks), nn.SiLU(), nn.Flatten())
        self.head = nn.Linear(c * h * w + cond_dim, 2 * latent_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(_join(self.body(x), c)).chunk(2, dim=-1)
        return mu, logvar


class ResNetDecoder(nn.Module):
    def __init__(
        self,
        image_shape: tuple[int, int, int],
        widths: list[int],
        blocks: int,
        latent_dim: int,
        cond_dim: int = 0,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        c, h, w = coarsest_shape(image_shape, widths)
        self.fc = nn.Sequential(nn.Linear(latent_dim + cond_dim, c * h * w), nn.Unflatten(1, (c, h, w)))
        self.body = residual_stages_up(out_channels or image_shape[0], widths, blocks)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(self.fc(_join(z, c)))


def build_networks(
    cfg: ModelConfig, image_shape: tuple[int, int, int], cond_dim: int = 0, out_channels: int | None = None
) -> tuple[nn.Module, nn.Module]:
    """The (encoder, decoder) pair named by ``cfg.arch`` for images of ``image_shape``; the decoder outputs
    ``out_channels`` channels (the likelihood's parameters; default: the image's channels)."""
    arch = Arch(cfg.arch)
    if arch == Arch.mlp:
        hidden = list(cfg.hidden_dims)
        return (
            MLPEncoder(image_shape, hidden, cfg.latent_dim, cond_dim),
            MLPDecoder(image_shape, hidden, cfg.latent_dim, cond_dim, out_channels),
        )
    if arch == Arch.conv:
        channels = list(cfg.conv_channels)
        return (
            ConvEncoder(image_shape, channels, cfg.latent_dim, cond_dim),
            ConvDecoder(image_shape, channels, cfg.latent_dim, cond_dim, out_channels),
        )
    if arch == Arch.resnet:
        widths = list(cfg.widths)
        return (
            ResNetEncoder(image_shape, widths, int(cfg.blocks), cfg.latent_dim, cond_dim),
            ResNetDecoder(image_shape, widths, int(cfg.blocks), cfg.latent_dim, cond_dim, out_channels),
        )
    raise ValueError(f"model.arch={arch.value} has no flat encoder/decoder pair (see vae_cli.models.hierarchical)")

"""Encoder/decoder pairs. One contract for every architecture:

- an encoder maps images ``[B, C, H, W]`` (and, for a CVAE, a condition ``c`` ``[B, cond_dim]``: the one-hot
  label) to ``(mu, logvar)``, each ``[B, latent_dim]``;
- a decoder maps ``z`` ``[B, latent_dim]`` (and ``c``) to the likelihood's parameters, shaped like the images.

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
        self, image_shape: tuple[int, int, int], hidden_dims: list[int], latent_dim: int, cond_dim: int = 0
    ) -> None:
        super().__init__()
        n_out = image_shape[0] * image_shape[1] * image_shape[2]
        widths = [latent_dim + cond_dim, *reversed(hidden_dims)]
        self.net = nn.Sequential(*_mlp(widths), nn.Linear(widths[-1], n_out), nn.Unflatten(1, image_shape))

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
        self, image_shape: tuple[int, int, int], channels: list[int], latent_dim: int, cond_dim: int = 0
    ) -> None:
        super().__init__()
        c, h, w = image_shape
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


def build_networks(
    cfg: ModelConfig, image_shape: tuple[int, int, int], cond_dim: int = 0
) -> tuple[nn.Module, nn.Module]:
    """The (encoder, decoder) pair named by ``cfg.arch`` for images of ``image_shape``."""
    if cfg.arch == Arch.mlp:
        return (
            MLPEncoder(image_shape, list(cfg.hidden_dims), cfg.latent_dim, cond_dim),
            MLPDecoder(image_shape, list(cfg.hidden_dims), cfg.latent_dim, cond_dim),
        )
    return (
        ConvEncoder(image_shape, list(cfg.conv_channels), cfg.latent_dim, cond_dim),
        ConvDecoder(image_shape, list(cfg.conv_channels), cfg.latent_dim, cond_dim),
    )

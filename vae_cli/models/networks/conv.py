"""``model=conv``: stride-2 convolutions down to a linear head, transposed convolutions back."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from vae_cli.models.networks.heads import FeatureEncoder, join
from vae_cli.models.vae import flat_builder


class ConvEncoder(FeatureEncoder):
    """Stride-2 4x4 convolutions (each halves H and W), then a linear head."""

    def __init__(
        self, image_shape: tuple[int, int, int], channels: list[int], latent_dim: int, cond_dim: int = 0
    ) -> None:
        c, h, w = image_shape
        layers: list[nn.Module] = []
        for c_in, c_out in zip([c, *channels[:-1]], channels, strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        scale = 2 ** len(channels)
        features = channels[-1] * (h // scale) * (w // scale)
        super().__init__(nn.Sequential(*layers, nn.Flatten()), features, latent_dim, cond_dim)


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
        return self.body(self.fc(join(z, c)))


def networks(m: Any, image_shape: tuple[int, int, int], cond: int, out: int) -> tuple[nn.Module, nn.Module]:
    channels = list(m.conv_channels)
    return ConvEncoder(image_shape, channels, m.latent_dim, cond), ConvDecoder(
        image_shape, channels, m.latent_dim, cond, out
    )


build = flat_builder(networks)

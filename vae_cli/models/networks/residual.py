"""``model=resnet``, and the residual backbone that ``model=hvae`` and ``model=vqvae`` share: pre-activation
residual stages down to the coarsest resolution and back up."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vae_cli.models.networks.heads import FeatureEncoder, join
from vae_cli.models.vae import flat_builder


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


class ResNetEncoder(FeatureEncoder):
    def __init__(
        self, image_shape: tuple[int, int, int], widths: list[int], blocks: int, latent_dim: int, cond_dim: int = 0
    ) -> None:
        c, h, w = coarsest_shape(image_shape, widths)
        body = nn.Sequential(residual_stages_down(image_shape[0], widths, blocks), nn.SiLU(), nn.Flatten())
        super().__init__(body, c * h * w, latent_dim, cond_dim)


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
        return self.body(self.fc(join(z, c)))


def networks(m: Any, image_shape: tuple[int, int, int], cond: int, out: int) -> tuple[nn.Module, nn.Module]:
    widths, blocks = list(m.widths), int(m.blocks)
    encoder = ResNetEncoder(image_shape, widths, blocks, m.latent_dim, cond)
    return encoder, ResNetDecoder(image_shape, widths, blocks, m.latent_dim, cond, out)


build = flat_builder(networks)

"""``model=mlp``: fully connected encoder and decoder (the classic VAE: 784-400-20)."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from vae_cli.models.networks.heads import ContextHead, join, split_head
from vae_cli.models.vae import flat_builder


def _mlp(widths: list[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for w_in, w_out in itertools.pairwise(widths):
        layers += [nn.Linear(w_in, w_out), nn.ReLU()]
    return layers


class MLPEncoder(ContextHead, nn.Module):
    def __init__(
        self, image_shape: tuple[int, int, int], hidden_dims: list[int], latent_dim: int, cond_dim: int = 0
    ) -> None:
        super().__init__()
        n_in = image_shape[0] * image_shape[1] * image_shape[2] + cond_dim
        # The Flatten stays first in ``body`` so the weights keep the state-dict keys older runs saved.
        self.body = nn.Sequential(nn.Flatten(), *_mlp([n_in, *hidden_dims]))
        # One head producing [mu, logvar] side by side: a single matmul instead of two.
        self.head = nn.Linear(hidden_dims[-1] if hidden_dims else n_in, 2 * latent_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        return split_head(self.head(self.body(join(x.flatten(1), c))), self.context_dim)


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
        return self.net(join(z, c))


def networks(m: Any, image_shape: tuple[int, int, int], cond: int, out: int) -> tuple[nn.Module, nn.Module]:
    hidden = list(m.hidden_dims)
    return MLPEncoder(image_shape, hidden, m.latent_dim, cond), MLPDecoder(image_shape, hidden, m.latent_dim, cond, out)


build = flat_builder(networks)

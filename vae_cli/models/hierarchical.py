"""``model=hvae``: a hierarchical VAE with top-down inference (Ladder VAE, Sønderby et al. 2016; NVAE, Vahdat & Kautz
2020; VDVAE, Child 2021), composed of a bottom-up network, L top-down cells, a decoder network and a likelihood.

    generative:  s_L = s_top (learned);  for l = L .. 1:  z_l ~ p(z_l | s_l) = N(mu_p, sigma_p^2),  s_{l-1} = merge(s_l, z_l)
                 x ~ p(x | decoder(s_0))
    inference:   h = bottom_up(x);  the same top-down pass, with  z_l ~ q(z_l | x, z_>l) = N(mu_p + dmu, softplus(r_p + dr)^2)
                 where (dmu, dr) = posterior(s_l, h): the posterior is a residual correction of the prior

so q and p share the top-down path, and KL(q || p) of each layer is a closed form between two diagonal Gaussians
(given the sampled layers above). Every σ is ``softplus(raw + log(e - 1)) + SIGMA_MIN``: never 0, never an exp
overflow, and exactly 1 when a network outputs 0 (the last layer of every prior and posterior network starts at
zero, so the model starts as N(0, I) priors with posteriors equal to them and KL = 0).

The latent z the rest of vae-cli sees is every layer flattened and concatenated in generation order (z_L first);
``decode(z)`` runs the top-down merges on given layers, ``encode(x)`` the posterior-mean path (each layer at its
posterior mean, which the layers below are conditioned on): what reconstructions, traversals and embeddings use.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vae_cli.models.layout import layout_of
from vae_cli.models.likelihoods.base import Likelihood
from vae_cli.models.networks.residual import PreActBlock, coarsest_shape, residual_stages_down, residual_stages_up
from vae_cli.models.protocol import NoExtraTerms, VAEOutput

SIGMA_MIN = 1e-3
SOFTPLUS_ONE = math.log(math.e - 1)  # softplus(SOFTPLUS_ONE) = 1
LOG_2PI = math.log(2 * math.pi)


def bounded_sigma(raw: torch.Tensor) -> torch.Tensor:
    return F.softplus(raw.float() + SOFTPLUS_ONE) + SIGMA_MIN


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, sigma^2) elementwise, float32."""
    return -0.5 * ((z.float() - mu) / sigma).pow(2) - torch.log(sigma) - 0.5 * LOG_2PI


def gaussian_kl(mu_q: torch.Tensor, sigma_q: torch.Tensor, mu_p: torch.Tensor, sigma_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) elementwise."""
    ratio = (sigma_q / sigma_p).pow(2)
    return 0.5 * (ratio + ((mu_q - mu_p) / sigma_p).pow(2) - 1 - torch.log(ratio))


def _zero_last(module: nn.Sequential) -> nn.Sequential:
    nn.init.zeros_(module[-1].weight)
    nn.init.zeros_(module[-1].bias)
    return module


class TopDownCell(nn.Module):
    """One stochastic layer: the prior and posterior of z_l from the state (and x's features), and the merge of z_l
    into the state. Any modules with these shapes compose (tests use 1x1 convolutions for a linear hierarchy)."""

    def __init__(self, prior: nn.Module, posterior: nn.Module, merge: nn.Module, blocks: nn.Module) -> None:
        super().__init__()
        self.prior_net = prior  # s -> [mu_p, raw_p] (2 z-channels)
        self.posterior_net = posterior  # cat(s, h) -> [dmu, draw]
        self.merge_net = merge  # z -> s-channels, added to s
        self.blocks = blocks  # s -> s, after the merge

    @classmethod
    def residual(cls, state_channels: int, feature_channels: int, latent_channels: int, blocks: int) -> TopDownCell:
        s, z = state_channels, latent_channels
        prior = _zero_last(nn.Sequential(PreActBlock(s), nn.SiLU(), nn.Conv2d(s, 2 * z, 3, padding=1)))
        posterior = _zero_last(
            nn.Sequential(
                nn.Conv2d(s + feature_channels, s, 3, padding=1),
                PreActBlock(s),
                nn.SiLU(),
                nn.Conv2d(s, 2 * z, 3, padding=1),
            )
        )
        merge = nn.Conv2d(z, s, 3, padding=1)
        return cls(prior, posterior, merge, nn.Sequential(*[PreActBlock(s) for _ in range(blocks)]))

    def prior(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu_p, raw_p) of p(z_l | z_>l)."""
        mu, raw = self.prior_net(s).float().chunk(2, dim=1)
        return mu, raw

    def posterior(
        self, s: torch.Tensor, h: torch.Tensor, mu_p: torch.Tensor, raw_p: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu_q, raw_q): the prior's parameters plus a correction from x's features."""
        d_mu, d_raw = self.posterior_net(torch.cat([s, h.to(s.dtype)], dim=1)).float().chunk(2, dim=1)
        return mu_p + d_mu, raw_p + d_raw

    def merge(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # The convolution's output first: a sum takes the memory format of its first operand, so the state follows
        # the network's (NHWC under trainer.channels_last) instead of the NCHW of the learned top state it starts
        # from, and every later block, SiLU and concatenation runs without a layout conversion.
        return self.blocks(self.merge_net(z.to(s.dtype)) + s)


class HierarchicalVAE(NoExtraTerms, nn.Module):
    """The hierarchy as one module with the flat VAE's interface (encode, decode, forward, sample, log_weights).

    ``bottom_up``: x -> features h ``[B, F, h, w]``; ``cells``: top (z_L) first; ``decoder``: s_0 -> likelihood
    parameters; ``state_shape``: (S, h, w) of s; ``latent_shape``: (Z, h, w) of every z_l."""

    num_classes = 0
    conditional = False

    def __init__(
        self,
        bottom_up: nn.Module,
        cells: list[TopDownCell],
        decoder: nn.Module,
        likelihood: Likelihood,
        state_shape: tuple[int, int, int],
        latent_shape: tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.bottom_up = bottom_up
        self.cells = nn.ModuleList(cells)
        self.decoder = decoder
        self.likelihood = likelihood
        self.state_shape = tuple(state_shape)
        self.latent_shape = tuple(latent_shape)
        self.s_top = nn.Parameter(torch.zeros(self.state_shape))
        self.layer_dim = math.prod(self.latent_shape)
        self.latent_dim = self.layer_dim * len(cells)
        # z_1 is the bottom layer (next to x), z_L the top; cells and the flat z run top-down.
        self.layer_names = tuple(f"z{len(cells) - i}" for i in range(len(cells)))

    @property
    def device(self) -> torch.device:
        return self.s_top.device

    def condition(self, y: torch.Tensor | None) -> None:
        return None

    # ----- the flat view of the layers ------------------------------------------------------------------------
    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Flat ``[N, D]`` -> one ``[N, Z, h, w]`` map per layer, top first."""
        return [part.reshape(-1, *self.latent_shape) for part in z.split(self.layer_dim, dim=-1)]

    def _initial_state(self, n: int) -> torch.Tensor:
        return self.s_top.unsqueeze(0).expand(n, *self.state_shape)

    # ----- generation ---------------------------------------------------------------------------------------
    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        s = self._initial_state(z.shape[0])
        for cell, z_l in zip(self.cells, self.split(z), strict=True):
            s = cell.merge(s, z_l)
        return self.decoder(s)

    def prior_sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Ancestral draws z_L, ..., z_1 (flat ``[n, D]``); ``temperature`` scales every layer's σ."""
        device = self.device
        gen_device = generator.device if generator is not None else device
        s = self._initial_state(n)
        layers = []
        for cell in self.cells:
            mu, raw = cell.prior(s)
            eps = torch.randn(mu.shape, generator=generator, device=gen_device).to(device)
            z_l = mu + temperature * bounded_sigma(raw) * eps
            layers.append(z_l.flatten(1))
            s = cell.merge(s, z_l)
        return torch.cat(layers, dim=1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        return self.decode(self.prior_sample(n, generator, temperature))

    # ----- inference ----------------------------------------------------------------------------------------
    def _infer(self, x: torch.Tensor, eps: torch.Tensor | None, h: torch.Tensor | None = None):
        """The top-down pass with x's features: per layer (z, mu_q, sigma_q, mu_p, sigma_p), and the final state.
        ``eps`` ``[N, D]`` (flat, top first) draws z = mu_q + sigma_q eps; None takes each posterior mean."""
        h = self.bottom_up(x) if h is None else h
        s = self._initial_state(h.shape[0])
        # The state in the features' layout (NHWC under trainer.channels_last): the first cell's blocks and
        # concatenation then need no conversion (see ``TopDownCell.merge`` for the later cells).
        if layout_of(h) == torch.channels_last:
            s = s.contiguous(memory_format=torch.channels_last)
        noise = self.split(eps) if eps is not None else [None] * len(self.cells)
        layers = []
        for cell, e in zip(self.cells, noise, strict=True):
            mu_p, raw_p = cell.prior(s)
            mu_q, raw_q = cell.posterior(s, h, mu_p, raw_p)
            sigma_q = bounded_sigma(raw_q)
            z_l = mu_q if e is None else mu_q + sigma_q * e.to(mu_q.dtype)
            layers.append((z_l, mu_q, sigma_q, mu_p, bounded_sigma(raw_p)))
            s = cell.merge(s, z_l)
        return layers, s

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of the posterior-mean path, flat: each layer's posterior given the means above it."""
        layers, _ = self._infer(x, None)
        mu = torch.cat([mu_q.flatten(1) for _, mu_q, _, _, _ in layers], dim=1)
        logvar = torch.cat([(2 * torch.log(sigma_q)).flatten(1) for _, _, sigma_q, _, _ in layers], dim=1)
        return mu, logvar

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> VAEOutput:
        eps = torch.randn(x.shape[0], self.latent_dim, device=x.device)
        layers, s = self._infer(x, eps)
        kl = torch.cat([gaussian_kl(mq, sq, mp, sp).flatten(1) for _, mq, sq, mp, sp in layers], dim=1)
        return VAEOutput(
            params=self.decoder(s),
            mu=torch.cat([mq.flatten(1) for _, mq, _, _, _ in layers], dim=1),
            logvar=torch.cat([(2 * torch.log(sq)).flatten(1) for _, _, sq, _, _ in layers], dim=1),
            z=torch.cat([z.flatten(1) for z, *_ in layers], dim=1),
            kl_dims=kl,
        )

    # ----- what objectives and evaluation ask -----------------------------------------------------------------
    def kl(self, out: VAEOutput) -> torch.Tensor:
        """Σ_l KL(q(z_l | x, z_>l) || p(z_l | z_>l)) per image, at the sampled layers above."""
        assert out.kl_dims is not None
        return out.kl_dims.sum(dim=1)

    def kl_layers(self, out: VAEOutput) -> torch.Tensor:
        """Each layer's KL per image, ``[B, L]``, columns in ``layer_names`` order (top first)."""
        assert out.kl_dims is not None
        return out.kl_dims.view(out.kl_dims.shape[0], len(self.cells), self.layer_dim).sum(dim=2)

    def closed_form_kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        """None: a layer's KL depends on the layers sampled above it, not on (mu, logvar) alone."""
        return None

    def log_weights(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None,
        eps: torch.Tensor,
        stop_q: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log p(x|z), log p(z), log q(z|x), z)`` for K posterior draws per image, the first three ``[K, B]``,
        with ``eps`` ``[K, B, D]``: log p(z) and log q(z|x) are sums over the layers of the conditionals."""
        if stop_q:
            raise ValueError("model=hvae has no doubly reparameterized estimator (loss.estimator=dreg)")
        k, b = eps.shape[0], x.shape[0]
        h = self.bottom_up(x)
        # K copies of each image's features, in the features' layout (a reshape of the expanded tensor is NCHW).
        h_rep = h.unsqueeze(0).expand(k, *h.shape).reshape(k * b, *h.shape[1:]).contiguous(memory_format=layout_of(h))
        layers, s = self._infer(x, eps.reshape(k * b, -1), h=h_rep)
        log_q = sum(gaussian_log_prob(z, mq, sq).flatten(1).sum(1) for z, mq, sq, _, _ in layers)
        log_p = sum(gaussian_log_prob(z, mp, sp).flatten(1).sum(1) for z, _, _, mp, sp in layers)
        x_rep = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:]).contiguous(memory_format=layout_of(x))
        log_px_z = self.likelihood.log_prob(x_rep, self.decoder(s))
        z = torch.cat([z_l.flatten(1) for z_l, *_ in layers], dim=1).view(k, b, -1)
        return log_px_z.view(k, b), log_p.view(k, b), log_q.view(k, b), z


def build(
    cfg: Any, image_shape: tuple[int, int, int], likelihood: Likelihood, num_classes: int = 0, init_images=None
) -> HierarchicalVAE:
    """``model=hvae`` for images of ``image_shape``: the residual backbone of ``model=resnet`` bottom-up and as the
    decoder, ``layers`` top-down cells at its coarsest resolution. (It has its own prior and no CVAE form.)"""
    cfg = cfg.model
    widths, blocks = list(cfg.widths), int(cfg.blocks)
    state = coarsest_shape(image_shape, widths)
    latent = (int(cfg.latent_channels), state[1], state[2])
    cells = [TopDownCell.residual(state[0], state[0], latent[0], int(cfg.cell_blocks)) for _ in range(int(cfg.layers))]
    bottom_up = nn.Sequential(residual_stages_down(image_shape[0], widths, blocks), nn.SiLU())
    decoder = residual_stages_up(likelihood.param_channels(image_shape[0]), widths, blocks)
    return HierarchicalVAE(bottom_up, cells, decoder, likelihood, state, latent)

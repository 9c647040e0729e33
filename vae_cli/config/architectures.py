"""The ``model`` group: the architecture (``model=mlp``, ``conv``, ...), one schema each, registered in
``ARCHITECTURES`` (config/catalog.py) with its builder in ``vae_cli.models`` and its ``latent`` (vector, layers or
code_grid), which the other groups' checks read. ``model.arch`` is the option's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vae_cli.config.catalog import ARCHITECTURES, OBJECTIVES, PRIORS
from vae_cli.config.checks import Need, positive_list


@dataclass
class ModelConfig:
    # The networks: one of ARCHITECTURES (model=mlp, conv, ...). Each option has its own keys (MLPConfig, ...);
    # this base holds what every architecture shares.
    arch: str = "mlp"
    # CVAE: the dataset's class label, one-hot, goes into the encoder and the decoder, q(z|x,y) and p(x|z,y).
    conditional: bool = False


def check_latent_dim(m: Any, need: Need) -> None:
    need(m.latent_dim >= 1, f"model.latent_dim must be >= 1 (got {m.latent_dim}).")


def check_residual_backbone(m: Any, cfg: Any, need: Need) -> None:
    """``model.widths`` and ``model.blocks`` of the residual backbone (resnet, hvae, vqvae) against the image size."""
    need(
        positive_list(m.widths) and len(m.widths) <= 6,
        f"model.widths must be 1 to 6 positive channel counts, one per resolution stage (got {list(m.widths)}).",
    )
    need(0 <= m.blocks <= 32, f"model.blocks must be in [0, 32] residual blocks per stage (got {m.blocks}).")
    if cfg is not None and positive_list(m.widths):
        size, factor = cfg.dataset.image_size, 2 ** (len(m.widths) - 1)
        need(
            size % factor == 0 and size // factor >= 2,
            f"model={m.arch} with {len(m.widths)} stages halves the image {len(m.widths) - 1} times, so it "
            f"needs dataset.image_size divisible by {factor} and at least {2 * factor} (got {size}); "
            f"use fewer model.widths (28 px: 2 or 3 stages; 32 px: up to 4; 64 px: up to 5).",
        )


@ARCHITECTURES.register(build="vae_cli.models.networks.mlp:build")
@dataclass
class MLPConfig(ModelConfig):
    arch: str = "mlp"
    # Dimensions of the latent code z.
    latent_dim: int = 20
    # Widths of the hidden layers (encoder; the decoder mirrors them).
    hidden_dims: list[int] = field(default_factory=lambda: [400])

    @classmethod
    def check(cls, m: Any, cfg: Any, need: Need) -> None:
        check_latent_dim(m, need)
        need(all(h >= 1 for h in m.hidden_dims), f"model.hidden_dims must be positive widths (got {m.hidden_dims}).")


@ARCHITECTURES.register(build="vae_cli.models.networks.conv:build")
@dataclass
class ConvConfig(ModelConfig):
    arch: str = "conv"
    # Dimensions of the latent code z.
    latent_dim: int = 20
    # Channels of the stride-2 conv layers (encoder; the decoder mirrors them). Each halves H and W.
    conv_channels: list[int] = field(default_factory=lambda: [32, 64])

    @classmethod
    def check(cls, m: Any, cfg: Any, need: Need) -> None:
        check_latent_dim(m, need)
        need(
            positive_list(m.conv_channels),
            f"model.conv_channels must be a non-empty list of positive channel counts (got {m.conv_channels}).",
        )
        if cfg is not None and positive_list(m.conv_channels):
            factor = 2 ** len(m.conv_channels)
            need(
                cfg.dataset.image_size % factor == 0,
                f"model=conv with {len(m.conv_channels)} stride-2 layers needs dataset.image_size divisible by "
                f"{factor} (got {cfg.dataset.image_size}); use fewer model.conv_channels or model=mlp.",
            )


@ARCHITECTURES.register(build="vae_cli.models.networks.residual:build")
@dataclass
class ResNetConfig(ModelConfig):
    arch: str = "resnet"
    # Dimensions of the latent code z.
    latent_dim: int = 32
    # Channels of each resolution stage; every stage after the first halves H and W (28 -> 14 -> 7).
    widths: list[int] = field(default_factory=lambda: [32, 64])
    # Pre-activation residual blocks per stage (encoder and decoder each).
    blocks: int = 2

    @classmethod
    def check(cls, m: Any, cfg: Any, need: Need) -> None:
        check_latent_dim(m, need)
        check_residual_backbone(m, cfg, need)


@ARCHITECTURES.register(build="vae_cli.models.hierarchical:build", latent="layers")
@dataclass
class HVAEConfig(ModelConfig):
    arch: str = "hvae"
    # Stochastic layers z_1 (bottom) to z_L (top), each a latent_channels x h x w map at the coarsest resolution.
    layers: int = 3
    # Channels of each stochastic layer's latent map.
    latent_channels: int = 8
    # The residual backbone (bottom-up encoder and decoder) as in model=resnet: channels of each stage.
    widths: list[int] = field(default_factory=lambda: [32, 64])
    # Pre-activation residual blocks per stage of the backbone.
    blocks: int = 2
    # Residual blocks in each top-down cell (between two stochastic layers).
    cell_blocks: int = 1

    @classmethod
    def check(cls, m: Any, cfg: Any, need: Need) -> None:
        check_residual_backbone(m, cfg, need)
        need(1 <= m.layers <= 64, f"model.layers must be in [1, 64] stochastic layers (got {m.layers}).")
        need(
            1 <= m.latent_channels <= 1024,
            f"model.latent_channels must be in [1, 1024] (got {m.latent_channels}).",
        )
        need(0 <= m.cell_blocks <= 32, f"model.cell_blocks must be in [0, 32] (got {m.cell_blocks}).")
        need(
            not m.conditional,
            "model=hvae has no conditional (CVAE) form yet; drop model.conditional=true, or use a flat model "
            "(model=mlp, conv or resnet) for a CVAE.",
        )
        if cfg is not None:
            prior = cfg.prior.name
            need(
                prior in PRIORS and PRIORS[prior].own,
                f"model=hvae brings its own hierarchical prior p(z_L) p(z_L-1 | z_L) ...; prior={prior} is for "
                f"the flat models. Drop prior={prior}.",
            )


@ARCHITECTURES.register(build="vae_cli.models.vqvae:build", latent="code_grid")
@dataclass
class VQVAEConfig(ModelConfig):
    arch: str = "vqvae"
    # K codes of code_dim dimensions; the code grid is the residual backbone's coarsest map (7x7 at 28 px).
    codebook_size: int = 512
    # Dimensions of each code vector.
    code_dim: int = 64
    # Channels of each stage: three stages, 28 -> 14 -> 7 (a 7x7 grid, as in the paper's 32 -> 8), 64 -> 16.
    widths: list[int] = field(default_factory=lambda: [32, 64, 64])
    # Pre-activation residual blocks per stage.
    blocks: int = 2
    # beta of the commitment loss beta |z_e - sg[z_q]|^2 (the encoder's side); 0.25 as in the paper.
    commitment: float = 0.25
    # Codebook by exponential moving averages (decay, Laplace smoothing) instead of the codebook loss.
    ema: bool = False
    # model.ema=true: the decay of the codebook's moving averages.
    ema_decay: float = 0.99
    # Codes unused for a few hundred steps restart at random encoder outputs.
    restart_dead_codes: bool = True

    @classmethod
    def check(cls, m: Any, cfg: Any, need: Need) -> None:
        check_residual_backbone(m, cfg, need)
        need(
            2 <= m.codebook_size <= 65_536,
            f"model.codebook_size must be in [2, 65536] codes (got {m.codebook_size}).",
        )
        need(1 <= m.code_dim <= 4096, f"model.code_dim must be in [1, 4096] (got {m.code_dim}).")
        need(m.commitment >= 0, f"model.commitment must be >= 0 (got {m.commitment}).")
        need(0 < m.ema_decay < 1, f"model.ema_decay must be in (0, 1) (got {m.ema_decay}).")
        if cfg is None:
            return
        prior, loss = cfg.prior.name, cfg.loss.name
        need(
            prior in PRIORS and (PRIORS[prior].own or PRIORS[prior].code_prior),
            f"model=vqvae trains under the uniform prior over its codes (prior=normal, the default) and then takes a "
            f"PixelCNN prior in a second run (prior=pixelcnn prior.vqvae=RUN); prior={prior} is for the "
            f"Gaussian latents of the other models.",
        )
        need(not m.conditional, "model=vqvae has no conditional (CVAE) form; drop model.conditional=true.")
        need(
            loss in OBJECTIVES and OBJECTIVES[loss].code_grid,
            f"model=vqvae trains with loss=elbo (reconstruction, its codebook and commitment losses, and the "
            f"constant KL of a one-hot posterior); loss={loss} needs a Gaussian posterior.",
        )
        if loss in OBJECTIVES and OBJECTIVES[loss].code_grid:
            need(
                cfg.loss.get("free_bits", 0) == 0 and cfg.loss.get("capacity_max") is None,
                "loss.free_bits and loss.capacity_max reshape a KL that is constant for model=vqvae (one-hot "
                "posterior, log K per code); drop them.",
            )

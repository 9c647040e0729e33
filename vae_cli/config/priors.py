"""The ``prior`` group: p(z) (``prior=normal``, ``vamp``, ``mog``, ``pixelcnn``), one schema each, registered in
``PRIORS`` (config/catalog.py) with its builder in ``vae_cli.models`` and the facts other groups' checks read
(``own``, ``kl_per_dim``, ``code_prior``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from vae_cli.config.catalog import ARCHITECTURES, PRIORS
from vae_cli.config.checks import Need


class PseudoInputInit(str, Enum):
    random = "random"  # grey 0.5 plus a little noise (Tomczak & Welling), bounded to [0, 1]
    data = "data"  # random training images


@PRIORS.register(build="vae_cli.models.priors:build_standard_normal", own=True, kl_per_dim=True)
@dataclass
class PriorConfig:
    # p(z): normal (the model's own: N(0, I), KL in closed form; for model=hvae its hierarchical prior, for
    # model=vqvae the uniform prior over codes), or another of PRIORS: vamp (VampPrior), mog (a learned mixture of
    # Gaussians), pixelcnn (a second stage: a PixelCNN over the codes of a trained VQ-VAE).
    name: str = "normal"


def check_components(prior: Any, need: Need) -> None:
    need(1 <= prior.components <= 10_000, f"prior.components must be in [1, 10000] (got {prior.components}).")


@PRIORS.register(build="vae_cli.models.priors:build_vamp")
@dataclass
class VampPriorConfig(PriorConfig):
    name: str = "vamp"
    # K pseudo-inputs u_k; p(z) = 1/K sum_k q(z | u_k) (Tomczak & Welling, 2018).
    components: int = 500
    # random: grey 0.5 plus a little noise; data: K random training images.
    init: PseudoInputInit = PseudoInputInit.random

    @classmethod
    def check(cls, prior: Any, cfg: Any, need: Need) -> None:
        check_components(prior, need)
        if cfg is not None and cfg.model.get("conditional", False):
            need(
                False,
                f"model.conditional=true with prior={prior.name}: the VampPrior's pseudo-inputs have no labels, so "
                f"q(z|u_k) cannot be evaluated by a conditional encoder. Use prior=normal or prior=mog with a CVAE.",
            )


@PRIORS.register(build="vae_cli.models.priors:build_mixture")
@dataclass
class MoGPriorConfig(PriorConfig):
    name: str = "mog"
    # K learned Gaussians with diagonal covariances and learned mixture weights.
    components: int = 10

    @classmethod
    def check(cls, prior: Any, cfg: Any, need: Need) -> None:
        check_components(prior, need)


@PRIORS.register(build="vae_cli.models.pixelcnn:build", code_prior=True)
@dataclass
class PixelCNNPriorConfig(PriorConfig):
    name: str = "pixelcnn"
    # The VQ-VAE run (a run directory or a checkpoint) whose codes this prior learns: the run trains on that run's
    # dataset, with its encoder, codebook and decoder frozen, and its samples decode through them.
    vqvae: str | None = None
    # The gated PixelCNN: channels, layers (>= 6 covers a 7x7 grid without blind spots), kernel size.
    channels: int = 64
    # Gated layers of the PixelCNN (>= 6 covers a 7x7 grid without blind spots).
    layers: int = 8
    # Kernel size of its convolutions (odd).
    kernel: int = 3

    @classmethod
    def check(cls, prior: Any, cfg: Any, need: Need) -> None:
        if cfg is not None:
            arch = ARCHITECTURES.option_of(cfg.model)
            need(
                arch in ARCHITECTURES and ARCHITECTURES[arch].latent == "code_grid",
                "prior=pixelcnn is a prior over the codes of a VQ-VAE, and this run's model is not one: give the "
                "VQ-VAE run to learn it for (vae-train prior=pixelcnn prior.vqvae=RUN; the model then comes from RUN).",
            )
        need(1 <= prior.layers <= 64, f"prior.layers must be in [1, 64] (got {prior.layers}).")
        need(1 <= prior.channels <= 4096, f"prior.channels must be in [1, 4096] (got {prior.channels}).")
        need(
            prior.kernel in (3, 5, 7),
            f"prior.kernel must be 3, 5 or 7 (an odd width, centred; got {prior.kernel}).",
        )


@PRIORS.register(build="vae_cli.models.posteriors.vmf:build_prior", geometry="sphere")
@dataclass
class UniformSphereConfig(PriorConfig):
    name: str = "uniform_sphere"
    # The uniform distribution on the unit sphere S^(D-1) (the S-VAE's prior, with posterior=vmf).


@PRIORS.register(build="vae_cli.models.posteriors.wrapped_normal:build_prior", geometry="poincare")
@dataclass
class WrappedNormalPriorConfig(PriorConfig):
    name: str = "wrapped_normal"
    # The wrapped normal at the ball's origin with this standard deviation (posterior=wrapped_normal's ball).
    scale: float = 1.0

    @classmethod
    def check(cls, prior: Any, cfg: Any, need: Need) -> None:
        need(0 < prior.scale <= 10, f"prior.scale must be in (0, 10] (got {prior.scale}).")

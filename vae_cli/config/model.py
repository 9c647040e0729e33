"""The schemas of what makes a model: ``model`` (the networks), ``likelihood`` (p(x|z)) and ``prior`` (p(z)).

``prior`` is a family: the root config holds a ``PriorConfig`` and each option's YAML extends its own subclass
(``VampPriorConfig``, ...), so ``prior.components`` is a key of the priors that have components only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vae_cli.config.enums import Arch, LikelihoodName, PseudoInputInit


@dataclass
class ModelConfig:
    arch: Arch = Arch.mlp
    latent_dim: int = 20
    # MLP: widths of the hidden layers (encoder; the decoder mirrors them).
    hidden_dims: list[int] = field(default_factory=lambda: [400])
    # Conv: channels of the stride-2 conv layers (encoder; the decoder mirrors them). Each halves H and W.
    conv_channels: list[int] = field(default_factory=lambda: [32, 64])
    # CVAE: the dataset's class label, one-hot, goes into the encoder and the decoder, q(z|x,y) and p(x|z,y).
    conditional: bool = False


@dataclass
class LikelihoodConfig:
    # p(x|z): bernoulli (decoder gives logits; the classic VAE, also on grey levels) | gaussian (decoder gives means).
    name: LikelihoodName = LikelihoodName.bernoulli
    # gaussian: the fixed standard deviation, in pixel units [0, 1].
    std: float = 0.1


@dataclass
class PriorConfig:
    # p(z): normal (N(0, I), KL in closed form) | vamp (VampPrior) | mog (a learned mixture of Gaussians).
    name: str = "normal"


@dataclass
class VampPriorConfig(PriorConfig):
    name: str = "vamp"
    # K pseudo-inputs u_k; p(z) = 1/K sum_k q(z | u_k) (Tomczak & Welling, 2018).
    components: int = 500
    # random: grey 0.5 plus a little noise; data: K random training images.
    init: PseudoInputInit = PseudoInputInit.random


@dataclass
class MoGPriorConfig(PriorConfig):
    name: str = "mog"
    # K learned Gaussians with diagonal covariances and learned mixture weights.
    components: int = 10


PRIOR_SCHEMAS: dict[str, type[PriorConfig]] = {
    "normal": PriorConfig,
    "vamp": VampPriorConfig,
    "mog": MoGPriorConfig,
}

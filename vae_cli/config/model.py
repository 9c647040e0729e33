"""The schemas of what makes a model: ``model`` (the networks), ``likelihood`` (p(x|z)) and ``prior`` (p(z)).

All three are families: the root config holds the base class and each option's YAML extends its own subclass
(``VampPriorConfig``, ``HVAEConfig``, ...), so ``prior.components`` is a key of the priors that have components only
and ``model.layers`` a key of model=hvae only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vae_cli.config.enums import Arch, LikelihoodName, PseudoInputInit


@dataclass
class ModelConfig:
    # The networks: mlp | conv | resnet (residual) | hvae (hierarchical, top-down inference). Each option has its
    # own keys (MLPConfig, ...); this base holds what every architecture shares.
    arch: Arch = Arch.mlp
    # CVAE: the dataset's class label, one-hot, goes into the encoder and the decoder, q(z|x,y) and p(x|z,y).
    conditional: bool = False


@dataclass
class MLPConfig(ModelConfig):
    arch: Arch = Arch.mlp
    latent_dim: int = 20
    # Widths of the hidden layers (encoder; the decoder mirrors them).
    hidden_dims: list[int] = field(default_factory=lambda: [400])


@dataclass
class ConvConfig(ModelConfig):
    arch: Arch = Arch.conv
    latent_dim: int = 20
    # Channels of the stride-2 conv layers (encoder; the decoder mirrors them). Each halves H and W.
    conv_channels: list[int] = field(default_factory=lambda: [32, 64])


@dataclass
class ResNetConfig(ModelConfig):
    arch: Arch = Arch.resnet
    latent_dim: int = 32
    # Channels of each resolution stage; every stage after the first halves H and W (28 -> 14 -> 7).
    widths: list[int] = field(default_factory=lambda: [32, 64])
    # Pre-activation residual blocks per stage (encoder and decoder each).
    blocks: int = 2


@dataclass
class HVAEConfig(ModelConfig):
    arch: Arch = Arch.hvae
    # Stochastic layers z_1 (bottom) .. z_L (top), each a latent_channels x h x w map at the coarsest resolution.
    layers: int = 3
    latent_channels: int = 8
    # The residual backbone (bottom-up encoder and decoder) as in model=resnet.
    widths: list[int] = field(default_factory=lambda: [32, 64])
    blocks: int = 2
    # Residual blocks in each top-down cell (between two stochastic layers).
    cell_blocks: int = 1


@dataclass
class VQVAEConfig(ModelConfig):
    arch: Arch = Arch.vqvae
    # K codes of code_dim dimensions; the code grid is the residual backbone's coarsest map (7x7 at 28 px).
    codebook_size: int = 512
    code_dim: int = 64
    # Three stages: 28 -> 14 -> 7 (a 7x7 grid, as in the paper's 32 -> 8), 32 -> 8, 64 -> 16.
    widths: list[int] = field(default_factory=lambda: [32, 64, 64])
    blocks: int = 2
    # beta of the commitment loss beta |z_e - sg[z_q]|^2 (the encoder's side); 0.25 as in the paper.
    commitment: float = 0.25
    # Codebook by exponential moving averages (decay, Laplace smoothing) instead of the codebook loss.
    ema: bool = False
    ema_decay: float = 0.99
    # Codes unused for a few hundred steps restart at random encoder outputs.
    restart_dead_codes: bool = True


MODEL_SCHEMAS: dict[str, type[ModelConfig]] = {
    "mlp": MLPConfig,
    "conv": ConvConfig,
    "resnet": ResNetConfig,
    "hvae": HVAEConfig,
    "vqvae": VQVAEConfig,
}


@dataclass
class LikelihoodConfig:
    # p(x|z): bernoulli | continuous_bernoulli | gaussian | logistic_mixture (docs/models.md, "Likelihoods").
    name: LikelihoodName = LikelihoodName.bernoulli


@dataclass
class GaussianLikelihoodConfig(LikelihoodConfig):
    name: LikelihoodName = LikelihoodName.gaussian
    # A fixed σ in pixel units [0, 1] (e.g. 0.1), or learned (per pixel, output by the decoder beside the mean),
    # or learned_global (one σ for all pixels, a parameter). A string so that one key takes all three.
    std: str = "0.1"
    # A learned σ is min_std + softplus(.): it cannot collapse to 0 (a density spike, then NaN).
    min_std: float = 1e-3


@dataclass
class LogisticMixtureConfig(LikelihoodConfig):
    name: LikelihoodName = LikelihoodName.logistic_mixture
    # Discretized logistics per pixel (PixelCNN++), colour channels coupled; the data must be 8-bit.
    components: int = 10


LIKELIHOOD_SCHEMAS: dict[str, type[LikelihoodConfig]] = {
    "bernoulli": LikelihoodConfig,
    "continuous_bernoulli": LikelihoodConfig,
    "gaussian": GaussianLikelihoodConfig,
    "logistic_mixture": LogisticMixtureConfig,
}


@dataclass
class PriorConfig:
    # p(z): normal (the model's own: N(0, I), KL in closed form; for model=hvae its hierarchical prior, for
    # model=vqvae the uniform prior over codes) | vamp (VampPrior) | mog (a learned mixture of Gaussians) |
    # pixelcnn (a second stage: a PixelCNN over the codes of a trained VQ-VAE).
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


@dataclass
class PixelCNNPriorConfig(PriorConfig):
    name: str = "pixelcnn"
    # The VQ-VAE run (a run directory or a checkpoint) whose codes this prior learns: the run trains on that run's
    # dataset, with its encoder, codebook and decoder frozen, and its samples decode through them.
    vqvae: str | None = None
    # The gated PixelCNN: channels, layers (>= 6 covers a 7x7 grid without blind spots), kernel size.
    channels: int = 64
    layers: int = 8
    kernel: int = 3


PRIOR_SCHEMAS: dict[str, type[PriorConfig]] = {
    "normal": PriorConfig,
    "vamp": VampPriorConfig,
    "mog": MoGPriorConfig,
    "pixelcnn": PixelCNNPriorConfig,
}

"""The ``loss`` group: the objective (``loss=elbo``, ``iwae``, ...), one schema each, registered in ``OBJECTIVES``
(config/catalog.py) with its module in ``vae_cli.objectives`` and the facts other groups' checks read.

The root config holds a ``LossConfig``; ``configs/loss/<name>.yaml`` starts from its own schema (``<name>_schema``
in Hydra's ConfigStore), so ``loss.k`` exists for ``loss=iwae`` only and a misspelt key still fails, naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from vae_cli.config.catalog import ARCHITECTURES, OBJECTIVES, PRIORS
from vae_cli.config.checks import Need


class IWEstimator(str, Enum):
    iwae = "iwae"  # gradients of the importance-weighted bound itself
    dreg = "dreg"  # doubly reparameterized gradients for the encoder (Tucker et al., 2019)


class TCEstimator(str, Enum):
    mws = "mws"  # minibatch-weighted sampling
    mss = "mss"  # minibatch-stratified sampling


class DIPVariant(str, Enum):
    i = "i"
    ii = "ii"


class MMDKernel(str, Enum):
    imq = "imq"
    rbf = "rbf"


@dataclass
class LossConfig:
    # Which objective of OBJECTIVES (vae_cli/objectives/, docs/models.md): loss=elbo, iwae, beta_tcvae, ...
    name: str = "elbo"

    @classmethod
    def least_batch(cls, loss: Any) -> tuple[int, str]:
        """The fewest images a batch needs for this objective's terms to mean something, and why (an objective
        whose terms are batch statistics: its catalog fact ``min_batch``; an option's setting may raise it)."""
        return OBJECTIVES[loss.name].min_batch


def least_batch(loss: Any) -> tuple[int, str]:
    """``least_batch`` of the objective ``loss`` (the ``loss`` node) names."""
    return OBJECTIVES[loss.name].schema.least_batch(loss)


@OBJECTIVES.register(build="vae_cli.objectives.elbo:ELBO", code_grid=True)
@dataclass
class ELBOConfig(LossConfig):
    name: str = "elbo"
    # Weight on the KL term (beta-VAE); 1 gives the true ELBO.
    beta: float = 1.0
    # Linear KL warm-up from 0 to beta over this many optimizer steps; 0 = no warm-up.
    kl_warmup_steps: int = 0
    # Weight on the reconstruction term; 1 gives the true ELBO.
    recon_weight: float = 1.0
    # Free bits (Kingma et al., 2016): each latent dimension's batch-mean KL counts as at least this many nats in
    # the loss, so a dimension below it gets no KL gradient; 0 = off. Needs prior=normal (a per-dimension KL).
    free_bits: float = 0.0
    # Capacity annealing (Burgess et al., 2018): minimize recon + beta * |KL - C| with C rising linearly from 0 to
    # capacity_max nats over capacity_steps steps; null = off.
    capacity_max: float | None = None
    # Capacity annealing: the steps over which C rises to capacity_max.
    capacity_steps: int = 100_000

    @classmethod
    def check(cls, loss: Any, cfg: Any, need: Need) -> None:
        need(loss.beta >= 0, f"loss.beta must be >= 0 (got {loss.beta}).")
        need(loss.recon_weight > 0, f"loss.recon_weight must be > 0 (got {loss.recon_weight}).")
        need(loss.kl_warmup_steps >= 0, f"loss.kl_warmup_steps must be >= 0 (got {loss.kl_warmup_steps}).")
        need(loss.free_bits >= 0, f"loss.free_bits must be >= 0 nats, 0 = off (got {loss.free_bits}).")
        if loss.free_bits > 0 and cfg is not None:
            prior = cfg.prior.name
            need(
                prior in PRIORS and PRIORS[prior].kl_per_dim,
                f"loss.free_bits works on the KL of each latent dimension, which only prior=normal has in closed "
                f"form (got prior={prior}). Use prior=normal, or loss.capacity_max for a total-KL target.",
            )
        if loss.capacity_max is not None:
            need(loss.capacity_max >= 0, f"loss.capacity_max must be >= 0 nats (got {loss.capacity_max}).")
            need(loss.capacity_steps >= 1, f"loss.capacity_steps must be >= 1 (got {loss.capacity_steps}).")
            need(loss.free_bits == 0, "loss.free_bits and loss.capacity_max both reshape the KL term; use one of them.")
            need(
                loss.kl_warmup_steps == 0,
                "loss.kl_warmup_steps and loss.capacity_max both schedule the KL term (capacity annealing already "
                "raises C from 0); use one of them.",
            )


def check_dreg(loss: Any, cfg: Any, need: Need) -> None:
    if cfg is None or IWEstimator(loss.estimator) != IWEstimator.dreg:
        return
    arch = ARCHITECTURES.option_of(cfg.model)
    need(
        arch not in ARCHITECTURES or ARCHITECTURES[arch].latent != "layers",
        f"loss.estimator=dreg needs a one-layer posterior (its gradient stops q's parameters, which in "
        f"model={arch} depend on the layers above); use loss.estimator=iwae with model={arch}.",
    )


@OBJECTIVES.register(build="vae_cli.objectives.iwae:IWAE", iw_gradient=True)
@dataclass
class IWAEConfig(LossConfig):
    name: str = "iwae"
    # Importance samples per image (Burda et al., 2016); k=1 is the ELBO.
    k: int = 5
    # iwae: gradients of the bound; dreg: doubly reparameterized encoder gradients (Tucker et al., 2019).
    estimator: IWEstimator = IWEstimator.iwae

    @classmethod
    def check(cls, loss: Any, cfg: Any, need: Need) -> None:
        check_dreg(loss, cfg, need)
        need(1 <= loss.k <= 5000, f"loss.k must be in [1, 5000] importance samples (got {loss.k}).")


def check_groups(loss: Any, need: Need) -> None:
    """M groups of K importance samples (MIWAE, PIWAE)."""
    need(loss.m >= 1 and loss.k >= 1, f"loss.m and loss.k must be >= 1 (got m={loss.m}, k={loss.k}).")
    need(
        loss.m * loss.k <= 5000,
        f"loss.m * loss.k is the number of samples per image and must be at most 5000 (got {loss.m * loss.k}).",
    )


@OBJECTIVES.register(build="vae_cli.objectives.miwae:MIWAE", iw_gradient=True)
@dataclass
class MIWAEConfig(LossConfig):
    name: str = "miwae"
    # M importance-weighted bounds of K samples each, averaged (Rainforth et al., 2018): M = 1 is loss=iwae,
    # K = 1 the ELBO with M samples. M * K decoder passes per image.
    m: int = 4
    # K: importance samples in each of the M bounds.
    k: int = 5
    # iwae: gradients of the bound; dreg: doubly reparameterized encoder gradients, per group of K.
    estimator: IWEstimator = IWEstimator.iwae

    @classmethod
    def check(cls, loss: Any, cfg: Any, need: Need) -> None:
        check_dreg(loss, cfg, need)
        check_groups(loss, need)


@OBJECTIVES.register(build="vae_cli.objectives.beta_tcvae:BetaTCVAE", flat_only=True, posterior="gaussian")
@dataclass
class BetaTCVAEConfig(LossConfig):
    name: str = "beta_tcvae"
    # recon + alpha * MI + beta * TC + gamma * dimension-wise KL (Chen et al., 2018); 1, 1, 1 is the ELBO.
    alpha: float = 1.0
    # beta: the weight on the total correlation (TC) term.
    beta: float = 6.0
    # gamma: the weight on the dimension-wise KL term.
    gamma: float = 1.0
    # How log q(z) is estimated from a minibatch: mws (weighted) | mss (stratified; uses the training-set size).
    estimator: TCEstimator = TCEstimator.mws

    @classmethod
    def check(cls, loss: Any, cfg: Any, need: Need) -> None:
        for key in ("alpha", "beta", "gamma"):
            need(loss[key] >= 0, f"loss.{key} must be >= 0 (got {loss[key]}).")

    @classmethod
    def least_batch(cls, loss: Any) -> tuple[int, str]:
        if TCEstimator(loss.estimator) == TCEstimator.mss:
            return 3, "with loss.estimator=mss stratifies log q(z) over the other images of a batch"
        return super().least_batch(loss)


@OBJECTIVES.register(
    build="vae_cli.objectives.factor_vae:FactorVAE",
    flat_only=True,
    min_batch=(2, "permutes latents across the batch"),
)
@dataclass
class FactorVAEConfig(LossConfig):
    name: str = "factor_vae"
    # ELBO + gamma * TC, the TC estimated by a discriminator between q(z) and its dimension-wise permutation
    # (Kim & Mnih, 2018).
    gamma: float = 10.0
    # Weight on the KL term: 1 in Kim & Mnih's objective; kept as a key so one sweep can set loss.beta for
    # elbo, beta_tcvae and factor_vae alike.
    beta: float = 1.0
    # The discriminator: an MLP with these hidden widths (leaky ReLU), trained by its own Adam.
    disc_hidden: list[int] = field(default_factory=lambda: [1000] * 6)
    # The discriminator's learning rate (its own Adam).
    disc_lr: float = 1.0e-4
    # The discriminator's Adam betas.
    disc_betas: list[float] = field(default_factory=lambda: [0.5, 0.9])

    @classmethod
    def check(cls, loss: Any, cfg: Any, need: Need) -> None:
        need(loss.gamma >= 0, f"loss.gamma must be >= 0 (got {loss.gamma}).")
        latent_dim = None if cfg is None else cfg.model.get("latent_dim")
        if latent_dim is not None:
            need(
                latent_dim >= 2,
                f"loss=factor_vae estimates the total correlation between latent dimensions, which needs "
                f"model.latent_dim >= 2 (got {latent_dim}).",
            )
        need(
            len(loss.disc_hidden) >= 1 and all(h >= 1 for h in loss.disc_hidden),
            f"loss.disc_hidden must be a non-empty list of positive widths (got {list(loss.disc_hidden)}).",
        )
        need(loss.disc_lr > 0, f"loss.disc_lr must be > 0 (got {loss.disc_lr}).")
        need(
            len(loss.disc_betas) == 2 and all(0 <= b < 1 for b in loss.disc_betas),
            f"loss.disc_betas must be two numbers in [0, 1) (got {list(loss.disc_betas)}).",
        )


@OBJECTIVES.register(
    build="vae_cli.objectives.dip_vae:DIPVAE",
    flat_only=True,
    posterior="gaussian",
    min_batch=(2, "estimates a covariance over the batch"),
)
@dataclass
class DIPVAEConfig(LossConfig):
    name: str = "dip_vae"
    # i: penalize Cov[mu(x)]; ii: penalize E[diag sigma^2(x)] + Cov[mu(x)] (Kumar et al., 2018).
    variant: DIPVariant = DIPVariant.i
    # Weight on the squared off-diagonal entries.
    lambda_od: float = 10.0
    # Weight on (diagonal - 1)^2; null = the paper's choice: 10 * lambda_od for variant i, lambda_od for ii.
    lambda_d: float | None = None

    @classmethod
    def check(cls, loss: Any, cfg: Any, need: Need) -> None:
        need(loss.lambda_od >= 0, f"loss.lambda_od must be >= 0 (got {loss.lambda_od}).")
        need(loss.lambda_d is None or loss.lambda_d >= 0, f"loss.lambda_d must be >= 0 or null (got {loss.lambda_d}).")


def check_info_vae(cls: type, loss: Any, cfg: Any, need: Need) -> None:
    need(loss.kernel_scale > 0, f"loss.kernel_scale must be > 0 (got {loss.kernel_scale}).")
    need(loss.alpha <= 1, f"loss.alpha must be <= 1: the KL weight is 1 - alpha (got {loss.alpha}).")
    need(
        loss.alpha + loss["lambda"] - 1 >= 0,
        f"loss.alpha + loss.lambda - 1 is the MMD weight and must be >= 0 (got {loss.alpha + loss['lambda'] - 1:g}).",
    )


# InfoVAE's and WAE's weights are called lambda in their papers and on the command line (loss.lambda), and ``lambda``
# is a Python keyword, which a dataclass field cannot be named. Such a class is built from annotations instead,
# without the generated __init__/__repr__/__eq__ (whose generated source would use the keyword); OmegaConf reads only
# the fields and their defaults.
def keyword_schema(
    class_name: str, doc: str, fields: dict[str, tuple[type, Any, str]], check: Callable[..., None]
) -> type:
    """A LossConfig subclass with ``fields`` (key: (type, default, description)), one of them a Python keyword.
    ``name`` is the first field (its description is empty)."""
    return dataclass(
        type(
            class_name,
            (LossConfig,),
            {
                "__module__": __name__,
                "__doc__": doc,
                "__annotations__": {key: kind for key, (kind, _, _) in fields.items()},
                **{key: default for key, (_, default, _) in fields.items()},
                "check": classmethod(check),
                # A class built this way has no source to read its fields' comments from (config/descriptions.py).
                "__field_docs__": {key: text for key, (_, _, text) in fields.items() if text},
            },
        ),
        init=False,
        repr=False,
        eq=False,
    )


InfoVAEConfig = keyword_schema(
    "InfoVAEConfig",
    "InfoVAE / MMD-VAE (Zhao et al., 2019): recon + (1 - alpha) KL + (alpha + lambda - 1) MMD.",
    {
        "name": (str, "info_vae", ""),
        "kernel": (
            MMDKernel,
            MMDKernel.imq,
            "The MMD kernel: imq (inverse multiquadric) or rbf, both with the scale C = 2 * latent_dim * kernel_scale.",
        ),
        "alpha": (
            float,
            0.0,
            "alpha of recon + (1 - alpha) KL + (alpha + lambda - 1) MMD; 0 with lambda=1000 is the MMD-VAE.",
        ),
        "lambda": (float, 1000.0, "lambda, the MMD's weight (loss.lambda on the command line)."),
        "kernel_scale": (float, 1.0, "The prior's variance in the kernel scale (1 for N(0, I))."),
    },
    check_info_vae,
)
OBJECTIVES.register(
    build="vae_cli.objectives.info_vae:InfoVAE",
    flat_only=True,
    min_batch=(2, "estimates an unbiased MMD over the batch"),
)(InfoVAEConfig)


def check_one_latent_vector(loss: Any, cfg: Any, need: Need, why: str) -> None:
    arch = None if cfg is None else ARCHITECTURES.option_of(cfg.model)
    if arch in ARCHITECTURES and ARCHITECTURES[arch].latent != "vector":
        flat = [a.name for a in ARCHITECTURES if a.latent == "vector"]
        need(
            False,
            f"loss={loss.name} {why}, which needs one latent vector; model={arch} has "
            f"{ARCHITECTURES[arch].latent}. Use a flat model (model={', '.join(flat)}) with loss={loss.name}.",
        )


@OBJECTIVES.register(build="vae_cli.objectives.piwae:PIWAE", iw_gradient=True)
@dataclass
class PIWAEConfig(LossConfig):
    name: str = "piwae"
    # PIWAE (Rainforth et al., 2018): the decoder and prior climb the IWAE bound of M * K samples, the encoder the
    # MIWAE bound of the same samples in M groups of K.
    m: int = 8
    # K: importance samples in each of the encoder's M bounds.
    k: int = 8

    @classmethod
    def check(cls, loss: Any, cfg: Any, need: Need) -> None:
        check_one_latent_vector(loss, cfg, need, "evaluates the joint density at z detached from the encoder")
        check_groups(loss, need)


@OBJECTIVES.register(build="vae_cli.objectives.ciwae:CIWAE", iw_gradient=True)
@dataclass
class CIWAEConfig(LossConfig):
    name: str = "ciwae"
    # CIWAE (Rainforth et al., 2018): beta * ELBO + (1 - beta) * IWAE on the same K samples; 1 is the ELBO, 0 IWAE.
    beta: float = 0.5
    # Importance samples per image.
    k: int = 8

    @classmethod
    def check(cls, loss: Any, cfg: Any, need: Need) -> None:
        need(0 <= loss.beta <= 1, f"loss.beta must be in [0, 1] (got {loss.beta}): 1 is the ELBO, 0 the IWAE bound.")
        need(1 <= loss.k <= 5000, f"loss.k must be in [1, 5000] importance samples (got {loss.k}).")


@OBJECTIVES.register(build="vae_cli.objectives.hvae:HVAE", posterior="flat")
@dataclass
class HVAEConfig(LossConfig):
    name: str = "hvae"
    # Hamiltonian VAE (Caterini et al., 2018): leapfrog steps on log p(x, z) after the posterior sample.
    leapfrog_steps: int = 5
    # beta_0 of the tempering: the initial momentum is N(0, I / beta_0), cooled to 1 over the steps; 1 = none.
    tempering: float = 1.0
    # The leapfrog step size each latent dimension starts from (learned, in (0, 0.5)).
    step_size: float = 0.01

    @classmethod
    def check(cls, loss: Any, cfg: Any, need: Need) -> None:
        check_one_latent_vector(loss, cfg, need, "moves z by the gradient of log p(x, z)")
        need(0 <= loss.leapfrog_steps <= 50, f"loss.leapfrog_steps must be in [0, 50] (got {loss.leapfrog_steps}).")
        need(0 < loss.tempering <= 1, f"loss.tempering (beta_0) must be in (0, 1], 1 = none (got {loss.tempering}).")
        need(
            loss.tempering == 1 or loss.leapfrog_steps >= 1,
            f"loss.tempering={loss.tempering} cools the momentum over the leapfrog steps and needs "
            f"loss.leapfrog_steps >= 1 (got 0).",
        )
        need(0 < loss.step_size < 0.5, f"loss.step_size must be in (0, 0.5) (got {loss.step_size}).")
        if cfg is not None and cfg.trainer.get("compile", False) and loss.leapfrog_steps > 0:
            need(
                False,
                "loss=hvae differentiates its leapfrog steps' gradients (a double backward), which torch.compile's "
                "aot_autograd does not support; use trainer.compile=false with loss=hvae.",
            )


# ---- Autoencoders without a likelihood bound: the encoder is a point (the location of q(z|x), its mean) -------
# Each is registered with bound=False: vae-eval reports reconstruction error and sample quality for them, never an
# IW "likelihood" of an encoder distribution nobody trained. posterior="point": the code is the Gaussian head's
# mean (a flow or a vMF would be trained for nothing).
POINT_ENCODER = {"flat_only": True, "posterior": "point", "bound": False}


class RAERegularizer(str, Enum):
    l2 = "l2"  # lambda * |theta_decoder|^2: weight decay on the decoder (RAE-L2)
    gp = "gp"  # lambda * |d D(z) / dz|_F^2: a gradient penalty on the decoder's Jacobian (RAE-GP)
    spectral = "spectral"  # every decoder layer spectrally normalized (RAE-SN); no penalty term


@OBJECTIVES.register(build="vae_cli.objectives.ae:AE", **POINT_ENCODER)
@dataclass
class AEConfig(LossConfig):
    # A plain autoencoder: z = the encoder's mean, loss = -log p(x | z) (no KL, no likelihood bound).
    name: str = "ae"


def check_wae(cls: type, loss: Any, cfg: Any, need: Need) -> None:
    need(loss["lambda"] >= 0, f"loss.lambda must be >= 0 (got {loss['lambda']}).")
    need(loss.kernel_scale > 0, f"loss.kernel_scale must be > 0 (got {loss.kernel_scale}).")
    need(
        len(loss.scales) >= 1 and all(s > 0 for s in loss.scales),
        f"loss.scales must be a non-empty list of positive multipliers (got {list(loss.scales)}).",
    )


WAEConfig = keyword_schema(
    "WAEConfig",
    "WAE-MMD (Tolstikhin et al., 2018): recon + lambda * MMD(q(z), p(z)) with a deterministic encoder.",
    {
        "name": (str, "wae", ""),
        "kernel": (MMDKernel, MMDKernel.imq, "The MMD kernel: imq (inverse multiquadric, the paper's) or rbf."),
        "lambda": (float, 10.0, "lambda, the MMD's weight (loss.lambda on the command line; the paper's 10 on MNIST)."),
        "kernel_scale": (
            float,
            1.0,
            "The prior's variance sigma_p^2 in the kernel scale C = 2 * latent_dim * sigma_p^2.",
        ),
        "scales": (
            list[float],
            field(default_factory=lambda: [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]),
            "The kernel is summed over C * s for each s here (Tolstikhin's code: 0.1 ... 10); [1.0]: one scale.",
        ),
    },
    check_wae,
)
OBJECTIVES.register(
    build="vae_cli.objectives.wae:WAE", min_batch=(2, "estimates an unbiased MMD over the batch"), **POINT_ENCODER
)(WAEConfig)


@OBJECTIVES.register(build="vae_cli.objectives.rae:RAE", **POINT_ENCODER)
@dataclass
class RAEConfig(LossConfig):
    name: str = "rae"
    # RAE (Ghosh et al., 2020): recon + beta * |z|^2 / 2 + lambda * R(decoder). R: l2 (weights), gp (the
    # decoder's Jacobian, a one-probe Hutchinson estimate of its squared Frobenius norm) or spectral (normalized
    # layers, no term).
    regularizer: RAERegularizer = RAERegularizer.l2
    # beta: the weight on |z|^2 / 2, which keeps the codes near the origin (the paper's 1e-4-1 range; here per
    # image against a summed reconstruction).
    embedding_weight: float = 1.0
    # lambda: the weight on the decoder's regularizer (l2, gp; ignored by spectral).
    decoder_weight: float = 1.0e-4

    @classmethod
    def check(cls, loss: Any, cfg: Any, need: Need) -> None:
        need(loss.embedding_weight >= 0, f"loss.embedding_weight must be >= 0 (got {loss.embedding_weight}).")
        need(loss.decoder_weight >= 0, f"loss.decoder_weight must be >= 0 (got {loss.decoder_weight}).")
        if cfg is not None and cfg.trainer.get("compile", False) and RAERegularizer(loss.regularizer) == "gp":
            need(
                False,
                "loss.regularizer=gp differentiates the decoder's input gradient (a double backward), which "
                "torch.compile's aot_autograd does not support; use trainer.compile=false, or loss.regularizer=l2 "
                "or spectral.",
            )


def check_discriminator(loss: Any, need: Need, key: str = "disc_hidden") -> None:
    need(
        len(loss[key]) >= 1 and all(h >= 1 for h in loss[key]),
        f"loss.{key} must be a non-empty list of positive widths (got {list(loss[key])}).",
    )
    need(loss.disc_lr > 0, f"loss.disc_lr must be > 0 (got {loss.disc_lr}).")
    need(
        len(loss.disc_betas) == 2 and all(0 <= b < 1 for b in loss.disc_betas),
        f"loss.disc_betas must be two numbers in [0, 1) (got {list(loss.disc_betas)}).",
    )


@OBJECTIVES.register(build="vae_cli.objectives.aae:AAE", **POINT_ENCODER)
@dataclass
class AAEConfig(LossConfig):
    name: str = "aae"
    # Adversarial autoencoder (Makhzani et al., 2016): recon + weight * -log D(z), D told prior draws from codes.
    adversarial_weight: float = 1.0
    # The latent discriminator: an MLP with these hidden widths (leaky ReLU; the paper's 2 x 1000 on MNIST).
    disc_hidden: list[int] = field(default_factory=lambda: [1000, 1000])
    # The discriminator's learning rate (its own Adam).
    disc_lr: float = 1.0e-4
    # The discriminator's Adam betas.
    disc_betas: list[float] = field(default_factory=lambda: [0.5, 0.9])

    @classmethod
    def check(cls, loss: Any, cfg: Any, need: Need) -> None:
        need(loss.adversarial_weight >= 0, f"loss.adversarial_weight must be >= 0 (got {loss.adversarial_weight}).")
        check_discriminator(loss, need)


@OBJECTIVES.register(build="vae_cli.objectives.vaegan:VAEGAN", flat_only=True)
@dataclass
class VAEGANConfig(LossConfig):
    name: str = "vaegan"
    # VAE-GAN (Larsen et al., 2016): the reconstruction is a Gaussian in the discriminator's features at one layer.
    # gamma weighs that reconstruction against fooling the discriminator in the decoder's update (the encoder
    # always gets it whole).
    gamma: float = 1.0
    # Weight on the KL term (1: the paper's).
    beta: float = 1.0
    # The image discriminator: 4x4 stride-2 convolutions with these channels (leaky ReLU), then one logit.
    disc_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    # Which convolution's output is the feature space of the reconstruction (1-based; the paper's: the third).
    feature_layer: int = 3
    # The discriminator's learning rate (its own Adam).
    disc_lr: float = 2.0e-4
    # The discriminator's Adam betas (DCGAN's).
    disc_betas: list[float] = field(default_factory=lambda: [0.5, 0.999])

    @classmethod
    def check(cls, loss: Any, cfg: Any, need: Need) -> None:
        need(loss.gamma >= 0, f"loss.gamma must be >= 0 (got {loss.gamma}).")
        need(loss.beta >= 0, f"loss.beta must be >= 0 (got {loss.beta}).")
        check_discriminator(loss, need, "disc_channels")
        need(
            1 <= loss.feature_layer <= len(loss.disc_channels),
            f"loss.feature_layer must name one of the discriminator's {len(loss.disc_channels)} convolutions "
            f"(1..{len(loss.disc_channels)}; got {loss.feature_layer}).",
        )

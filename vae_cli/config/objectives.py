"""The ``loss`` group's schemas: one dataclass per objective, each extending ``LossConfig``.

The root config holds a ``LossConfig``; ``configs/loss/<name>.yaml`` starts from its own schema (``<name>_schema``
in Hydra's ConfigStore), so ``loss.k`` exists for ``loss=iwae`` only and a misspelt key still fails, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vae_cli.config.enums import DIPVariant, IWEstimator, MMDKernel, TCEstimator


@dataclass
class LossConfig:
    # Which objective in vae_cli/losses/ (docs/models.md): elbo | iwae | beta_tcvae | factor_vae | dip_vae | info_vae.
    name: str = "elbo"


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
    capacity_steps: int = 100_000


@dataclass
class IWAEConfig(LossConfig):
    name: str = "iwae"
    # Importance samples per image (Burda et al., 2016); k=1 is the ELBO.
    k: int = 5
    # iwae: gradients of the bound; dreg: doubly reparameterized encoder gradients (Tucker et al., 2019).
    estimator: IWEstimator = IWEstimator.iwae


@dataclass
class BetaTCVAEConfig(LossConfig):
    name: str = "beta_tcvae"
    # recon + alpha * MI + beta * TC + gamma * dimension-wise KL (Chen et al., 2018); 1, 1, 1 is the ELBO.
    alpha: float = 1.0
    beta: float = 6.0
    gamma: float = 1.0
    # How log q(z) is estimated from a minibatch: mws (weighted) | mss (stratified; uses the training-set size).
    estimator: TCEstimator = TCEstimator.mws


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
    disc_lr: float = 1.0e-4
    disc_betas: list[float] = field(default_factory=lambda: [0.5, 0.9])


@dataclass
class DIPVAEConfig(LossConfig):
    name: str = "dip_vae"
    # i: penalize Cov[mu(x)]; ii: penalize E[diag sigma^2(x)] + Cov[mu(x)] (Kumar et al., 2018).
    variant: DIPVariant = DIPVariant.i
    # Weight on the squared off-diagonal entries.
    lambda_od: float = 10.0
    # Weight on (diagonal - 1)^2; null = the paper's choice: 10 * lambda_od for variant i, lambda_od for ii.
    lambda_d: float | None = None


# InfoVAE's weight is called lambda in the paper and on the command line (loss.lambda), and ``lambda`` is a Python
# keyword, which a dataclass field cannot be named. The class is built from annotations instead, without the
# generated __init__/__repr__/__eq__ (whose generated source would use the keyword); OmegaConf reads only the
# fields and their defaults.
InfoVAEConfig = dataclass(
    type(
        "InfoVAEConfig",
        (LossConfig,),
        {
            "__module__": __name__,
            "__doc__": "InfoVAE / MMD-VAE (Zhao et al., 2019): recon + (1 - alpha) KL + (alpha + lambda - 1) MMD.",
            "__annotations__": {
                "name": str,
                "kernel": MMDKernel,
                "alpha": float,
                "lambda": float,
                "kernel_scale": float,
            },
            "name": "info_vae",
            # imq (inverse multiquadric) | rbf, both with the scale C = 2 * latent_dim * kernel_scale.
            "kernel": MMDKernel.imq,
            "alpha": 0.0,
            "lambda": 1000.0,
            # The prior's variance in the kernel scale (1 for N(0, I)).
            "kernel_scale": 1.0,
        },
    ),
    init=False,
    repr=False,
    eq=False,
)


LOSS_SCHEMAS: dict[str, type[LossConfig]] = {
    "elbo": ELBOConfig,
    "iwae": IWAEConfig,
    "beta_tcvae": BetaTCVAEConfig,
    "factor_vae": FactorVAEConfig,
    "dip_vae": DIPVAEConfig,
    "info_vae": InfoVAEConfig,
}

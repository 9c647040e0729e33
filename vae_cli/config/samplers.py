"""The post-hoc latent samplers of ``vae-fit-sampler`` (``--sampler gmm``, ``flow``, ``two_stage``, ``prior``), one
schema each, registered in ``SAMPLERS`` (config/catalog.py) with its module in ``vae_cli.samplers``.

A sampler is a density over a trained run's latent codes (the mean of q(z|x) of each training image), fitted after
training (Ghosh et al., 2020: ex-post density estimation; Dai & Wipf, 2019: a second-stage VAE), so that an
autoencoder without a prior, or a VAE whose aggregate posterior missed N(0, I), is sampled where its codes are.
``--set KEY=VALUE`` changes a key of the schema; the fitted sampler is saved with its config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from vae_cli.config.catalog import SAMPLERS
from vae_cli.config.checks import Need


class Covariance(str, Enum):
    full = "full"
    diag = "diag"


@dataclass
class SamplerConfig:
    # Which sampler of SAMPLERS: gmm, flow, two_stage, prior.
    name: str = "prior"


@SAMPLERS.register(build="vae_cli.samplers.prior:build", fitted=False)
@dataclass
class PriorSamplerConfig(SamplerConfig):
    # The model's own prior p(z), as vae-sample draws it without a sampler: nothing is fitted.
    name: str = "prior"


@SAMPLERS.register(build="vae_cli.samplers.gmm:build")
@dataclass
class GMMSamplerConfig(SamplerConfig):
    name: str = "gmm"
    # Gaussian components of the mixture (scikit-learn's GaussianMixture, EM).
    components: int = 10
    # full (each component its own covariance) or diag.
    covariance: Covariance = Covariance.full
    # EM iterations at most.
    max_iter: int = 200
    # EM restarts from different k-means initializations; the best is kept.
    n_init: int = 1
    # Added to each covariance's diagonal (keeps a collapsed component invertible).
    reg_covar: float = 1.0e-6

    @classmethod
    def check(cls, s: Any, cfg: Any, need: Need) -> None:
        need(1 <= s.components <= 1000, f"components must be in [1, 1000] (got {s.components}).")
        need(s.max_iter >= 1 and s.n_init >= 1, f"max_iter and n_init must be >= 1 (got {s.max_iter}, {s.n_init}).")
        need(s.reg_covar >= 0, f"reg_covar must be >= 0 (got {s.reg_covar}).")


def check_training(s: Any, need: Need) -> None:
    need(s.epochs >= 1, f"epochs must be >= 1 (got {s.epochs}).")
    need(s.batch_size >= 2, f"batch_size must be >= 2 (got {s.batch_size}).")
    need(s.lr > 0, f"lr must be > 0 (got {s.lr}).")
    need(
        len(s.hidden) >= 1 and all(h >= 1 for h in s.hidden), f"hidden must be positive widths (got {list(s.hidden)})."
    )


@SAMPLERS.register(build="vae_cli.samplers.flow:build")
@dataclass
class FlowSamplerConfig(SamplerConfig):
    name: str = "flow"
    # A masked autoregressive flow (zuko's MAF) trained by maximum likelihood on the codes: this many transforms.
    transforms: int = 4
    # Hidden widths of each transform's MADE network.
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    # Passes over the codes (Adam, the codes standardized first).
    epochs: int = 30
    # Codes per Adam step.
    batch_size: int = 256
    # Adam's learning rate.
    lr: float = 1.0e-3

    @classmethod
    def check(cls, s: Any, cfg: Any, need: Need) -> None:
        need(1 <= s.transforms <= 32, f"transforms must be in [1, 32] (got {s.transforms}).")
        check_training(s, need)


@SAMPLERS.register(build="vae_cli.samplers.two_stage:build")
@dataclass
class TwoStageSamplerConfig(SamplerConfig):
    name: str = "two_stage"
    # A second VAE on the codes (Dai & Wipf, 2019): MLP encoder and decoder with these hidden widths, a Gaussian
    # p(z|u) with one learned scale gamma, u of the codes' dimension (null) or this many.
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    # The second stage's latent size u; null: the codes' own dimension (the paper's choice).
    latent_dim: int | None = None
    # Passes over the codes (Adam, the codes standardized first).
    epochs: int = 30
    # Codes per Adam step.
    batch_size: int = 256
    # Adam's learning rate.
    lr: float = 1.0e-3

    @classmethod
    def check(cls, s: Any, cfg: Any, need: Need) -> None:
        check_training(s, need)
        need(s.latent_dim is None or s.latent_dim >= 1, f"latent_dim must be >= 1 or null (got {s.latent_dim}).")

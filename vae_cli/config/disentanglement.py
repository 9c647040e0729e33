"""The ``disentanglement`` config node: which metrics, how many samples, which seed (disentanglement_lib's
defaults), and how often training logs them. Read by vae-eval --disentanglement and by the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field

METRICS = ("mig", "dci", "sap", "factor_vae", "beta_vae")


@dataclass
class MigConfig:
    num_train: int = 10_000
    # Histogram bins per code dimension (the discretization of disentanglement_lib's MIG).
    num_bins: int = 20


@dataclass
class SplitSizes:  # DCI and SAP: classifiers fit on num_train codes, scored on num_test others
    num_train: int = 10_000
    num_test: int = 5_000


@dataclass
class SapConfig(SplitSizes):
    # false (the reference default): a linear SVM's accuracy per (code, factor); true: squared correlation.
    continuous: bool = False


@dataclass
class FactorVaeScoreConfig:
    batch_size: int = 64
    num_train: int = 10_000
    num_eval: int = 5_000
    num_variance_estimate: int = 10_000


@dataclass
class BetaVaeScoreConfig:
    batch_size: int = 64
    num_train: int = 10_000
    num_eval: int = 5_000


@dataclass
class DisentanglementConfig:
    # Log the metrics to TensorBoard (disentanglement/*) every N epochs and after the last, and keep the final
    # ones in metrics.json; 0 = only on request (vae-eval RUN --disentanglement). Needs a factor dataset
    # (shapes2d, xyobject, dsprites, image_folder with dataset.factors_csv).
    every_epochs: int = 0
    # Which metrics: any of mig, dci, sap, factor_vae, beta_vae.
    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    # Seed of the observations drawn for the metrics (numpy; separate from training's RNG).
    seed: int = 0
    mig: MigConfig = field(default_factory=MigConfig)
    dci: SplitSizes = field(default_factory=SplitSizes)
    sap: SapConfig = field(default_factory=SapConfig)
    factor_vae: FactorVaeScoreConfig = field(default_factory=FactorVaeScoreConfig)
    beta_vae: BetaVaeScoreConfig = field(default_factory=BetaVaeScoreConfig)

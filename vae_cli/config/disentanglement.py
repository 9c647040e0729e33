"""The ``disentanglement`` config node: which metrics, how many samples, which seed (disentanglement_lib's
defaults), and how often training logs them. Read by vae-eval --disentanglement and by the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vae_cli.config.catalog import ARCHITECTURES
from vae_cli.config.checks import Need, leaves
from vae_cli.config.datasets import DATASETS

METRICS = ("mig", "dci", "sap", "factor_vae", "beta_vae")
# Where a sample size stops meaning anything but hours and memory: 100x disentanglement_lib's defaults.
UPPER_BOUNDS = {
    "num_train": 1_000_000,
    "num_test": 1_000_000,
    "num_eval": 1_000_000,
    "num_variance_estimate": 1_000_000,
    "batch_size": 6_400,
    "num_bins": 2_000,
}
MAX_VOTE_IMAGES = 100_000_000  # ~100x the reference's 64 x 15_000


@dataclass
class MigConfig:
    # Points (codes and their factors) the mutual information is estimated from.
    num_train: int = 10_000
    # Histogram bins per code dimension (the discretization of disentanglement_lib's MIG).
    num_bins: int = 20


@dataclass
class SplitSizes:  # DCI and SAP: classifiers fit on num_train codes, scored on num_test others
    # Codes the per-factor classifiers are fit on.
    num_train: int = 10_000
    # Other codes they are scored on.
    num_test: int = 5_000


@dataclass
class SapConfig(SplitSizes):
    # false (the reference default): a linear SVM's accuracy per (code, factor); true: squared correlation.
    continuous: bool = False


@dataclass
class FactorVaeScoreConfig:
    # Images per vote (all share one fixed factor).
    batch_size: int = 64
    # Votes the majority-vote classifier is built from.
    num_train: int = 10_000
    # Votes it is scored on.
    num_eval: int = 5_000
    # Images the per-dimension scale (for normalizing the codes) is estimated from.
    num_variance_estimate: int = 10_000


@dataclass
class BetaVaeScoreConfig:
    # Pairs of images per point (each pair shares one fixed factor).
    batch_size: int = 64
    # Points the logistic regression is fit on.
    num_train: int = 10_000
    # Points it is scored on.
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

    @classmethod
    def check(cls, node: Any, cfg: Any, need: Need, prefix: str = "disentanglement.") -> None:
        """The metric names and sample sizes (also checked by vae-eval for its own ``--set`` values); with the whole
        config, also that the run has what the metrics need."""
        unknown = [m for m in node.metrics if m not in METRICS]
        need(not unknown, f"{prefix}metrics: unknown {unknown}; choose among {', '.join(METRICS)}.")
        need(node.every_epochs >= 0, f"{prefix}every_epochs must be >= 0 (got {node.every_epochs}).")
        # scikit-learn's random_state takes a 32-bit seed (DCI's gradient boosting, the beta-VAE score's classifier).
        need(
            0 <= node.seed < 2**32,
            f"{prefix}seed must be in [0, 2**32) (got {node.seed}): scikit-learn's classifiers take a 32-bit seed.",
        )
        for key, value in leaves(node, int):
            if key.endswith(("num_train", "num_test", "num_eval", "num_variance_estimate", "batch_size", "num_bins")):
                need(value >= 2, f"{prefix}{key} must be >= 2 (got {value}): the metrics need a spread of samples.")
                most = UPPER_BOUNDS[key.rsplit(".", 1)[-1]]
                need(
                    value <= most,
                    f"{prefix}{key} must be at most {most:_} (got {value:_}): more would run for hours or exhaust "
                    f"memory without changing the score beyond its noise (disentanglement_lib uses 10_000 samples, "
                    f"batches of 64, 20 bins).",
                )
        for metric in ("factor_vae", "beta_vae"):  # each vote or point encodes a batch of images
            c = node[metric]
            images = c.batch_size * (c.num_train + c.num_eval)
            need(
                images <= MAX_VOTE_IMAGES,
                f"{prefix}{metric} would encode {images:_} images (batch_size x (num_train + num_eval)), more than "
                f"{MAX_VOTE_IMAGES:_}: lower {prefix}{metric}.num_train, num_eval or batch_size.",
            )
        if cfg is None or node.every_epochs <= 0:
            return
        d = cfg.dataset
        spec = DATASETS.get(d.name)
        grids = ", ".join(DATASETS.with_factors()[:-1]) + " or " + DATASETS.with_factors()[-1]
        need(
            spec is not None and spec.has_factors(d),
            f"disentanglement.every_epochs={node.every_epochs} needs ground-truth factors, which dataset "
            f"'{d.name}' has not: use dataset={grids}, or an image folder with "
            f"dataset.factors_csv; or set disentanglement.every_epochs=0.",
        )
        arch = ARCHITECTURES.option_of(cfg.model)
        need(
            (arch not in ARCHITECTURES or ARCHITECTURES[arch].latent != "code_grid")
            and not cfg.model.get("conditional", False),
            "disentanglement.every_epochs > 0 scores the encoder mean of an unconditional Gaussian-latent model; "
            "not a VQ-VAE or a conditional model.",
        )

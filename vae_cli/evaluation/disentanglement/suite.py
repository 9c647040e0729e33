"""Every metric of a ``disentanglement`` config on one representation: the numbers vae-eval and TensorBoard show.

Each metric draws its own observations from a generator seeded by (seed, metric), so one metric's numbers do not
change when another is added or removed, and the same seed gives the same numbers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vae_cli.config.disentanglement import METRICS, DisentanglementConfig
from vae_cli.evaluation.disentanglement.beta_vae_score import beta_vae_score
from vae_cli.evaluation.disentanglement.dci import dci
from vae_cli.evaluation.disentanglement.factor_vae_score import factor_vae_score
from vae_cli.evaluation.disentanglement.mig import mig
from vae_cli.evaluation.disentanglement.sampling import Representation, codes_and_factors
from vae_cli.evaluation.disentanglement.sap import sap
from vae_cli.factors import FactorData
from vae_cli.process.progress import duration

log = logging.getLogger(__name__)


@dataclass
class DisentanglementResult:
    scores: dict[str, float]  # disentanglement/<name> -> value: what TensorBoard, eval.json and summaries show
    details: dict[str, Any] = field(default_factory=dict)  # per metric: matrices, per-factor gaps, sizes
    seconds: dict[str, float] = field(default_factory=dict)


def rng_for(seed: int, metric: str) -> np.random.Generator:
    return np.random.default_rng([seed, METRICS.index(metric)])


def score(data: FactorData, represent: Representation, cfg: DisentanglementConfig) -> DisentanglementResult:
    result = DisentanglementResult(scores={})
    for i, metric in enumerate(cfg.metrics, start=1):
        rng = rng_for(cfg.seed, metric)
        started = time.perf_counter()
        log.info("disentanglement: %s (%d of %d metrics, seed %d)", metric, i, len(cfg.metrics), cfg.seed)
        if metric == "mig":
            codes, factors = codes_and_factors(data, represent, cfg.mig.num_train, rng)
            out = mig(codes, factors, cfg.mig.num_bins)
            result.scores["disentanglement/mig"] = out["mig"]
        elif metric in ("dci", "sap"):
            sizes = getattr(cfg, metric)
            train = codes_and_factors(data, represent, sizes.num_train, rng)
            test = codes_and_factors(data, represent, sizes.num_test, rng)
            if metric == "dci":
                out = dci(*train, *test, seed=cfg.seed)
                for key in ("disentanglement", "completeness", "informativeness_test"):
                    result.scores[f"disentanglement/dci_{key}"] = out[key]
            else:
                out = sap(*train, *test, continuous=cfg.sap.continuous)
                result.scores["disentanglement/sap"] = out["sap"]
        elif metric == "factor_vae":
            c = cfg.factor_vae
            out = factor_vae_score(data, represent, rng, c.batch_size, c.num_train, c.num_eval, c.num_variance_estimate)
            result.scores["disentanglement/factor_vae_score"] = out["eval_accuracy"]
        elif metric == "beta_vae":
            c = cfg.beta_vae
            out = beta_vae_score(data, represent, rng, c.batch_size, c.num_train, c.num_eval, seed=cfg.seed)
            result.scores["disentanglement/beta_vae_score"] = out["eval_accuracy"]
        else:  # the config validator names the known ones first
            raise ValueError(f"unknown disentanglement metric {metric!r}")
        result.details[metric] = out
        result.seconds[metric] = time.perf_counter() - started
        log.info("disentanglement: %s done in %s", metric, duration(result.seconds[metric]))
    return result

"""The disentanglement metrics during training: ``disentanglement/*`` in TensorBoard every
``disentanglement.every_epochs`` epochs and after the last, kept in the epoch history (and so in metrics.json).

The metrics draw their observations from numpy generators seeded by the config, never from torch's global RNG,
so a resumed run stays bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import time

from vae_cli.config.datasets import DatasetConfig
from vae_cli.config.disentanglement import DisentanglementConfig
from vae_cli.evaluation.tracking import Tracker

log = logging.getLogger(__name__)


class DisentanglementMonitor:
    def __init__(self, model, cfg: DisentanglementConfig, dataset: DatasetConfig, tracker: Tracker) -> None:
        self.model = model
        self.cfg = cfg
        self.dataset = dataset
        self.tracker = tracker
        self._ground_truth = None  # built at the first scoring (dSprites: reading 2.9 GB)

    @property
    def enabled(self) -> bool:
        return self.cfg.every_epochs > 0

    def on_epoch_end(self, epoch: int, step: int, last: bool) -> dict[str, float]:
        if not self.enabled or not (epoch % self.cfg.every_epochs == 0 or last):
            return {}
        from vae_cli.datasets.factor_sets import ground_truth_for
        from vae_cli.evaluation.disentanglement.representation import encoder_mean
        from vae_cli.evaluation.disentanglement.suite import score

        if self._ground_truth is None:
            self._ground_truth = ground_truth_for(self.dataset)
        started = time.perf_counter()
        result = score(self._ground_truth, encoder_mean(self.model), self.cfg)
        self.tracker.scalars(result.scores, step)
        log.info(
            "disentanglement after epoch %d: %s (%.0f s)",
            epoch,
            ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in result.scores.items()),
            time.perf_counter() - started,
        )
        return result.scores

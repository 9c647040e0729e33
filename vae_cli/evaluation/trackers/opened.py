"""The external trackers ``logger`` turns on, opened for one run (or refused before training, see base.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vae_cli.evaluation.trackers.base import STATE_FILE, Guarded, RunIdentity, TrackerError, saved_state
from vae_cli.process.atomic import write_json


def open_trackers(logger_cfg: Any, run_dir: Path, config: dict[str, Any]) -> list[Guarded]:
    """Open every tracker ``logger_cfg`` enables for the run in ``run_dir`` (a resume continues its tracker runs);
    a tracker that cannot be opened raises TrackerError, after the ones already opened are closed as failed."""
    wanted = []
    if logger_cfg.mlflow.enabled:
        from vae_cli.evaluation.trackers.mlflow_run import MlflowRun

        wanted.append(("mlflow", MlflowRun, logger_cfg.mlflow))
    if logger_cfg.wandb.enabled:
        from vae_cli.evaluation.trackers.wandb_run import WandbRun

        wanted.append(("wandb", WandbRun, logger_cfg.wandb))
    if not wanted:
        return []
    who, saved = RunIdentity.of(run_dir), saved_state(run_dir)
    opened: list[tuple[str, Guarded]] = []
    for key, kind, cfg in wanted:
        try:
            opened.append((key, Guarded(kind(cfg, who, config, saved.get(key, {})))))
        except TrackerError:
            for _, tracker in opened:
                tracker.finish("failed", [])
            raise
    write_json(run_dir / STATE_FILE, {key: t.tracker.state() for key, t in opened}, durable=False)
    return [t for _, t in opened]

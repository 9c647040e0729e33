"""``logger=mlflow``: the run as an MLflow run (through ``MlflowClient``, so nothing global of the mlflow module is
touched): the whole config as params, tags naming the run directory and the sweep, the scalars per step, the
pictures as images, and at the end metrics.json, history.csv and (``log_checkpoints``) the checkpoints as artifacts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from PIL import Image

from vae_cli.config.training import MlflowConfig
from vae_cli.evaluation.trackers.base import RunIdentity, TrackerError, flat_config
from vae_cli.process.version import __version__

# MLflow's client retries a failed request for minutes by default; a training step must not wait that long for a
# server that went down (the tracker is dropped instead: base.Guarded).
HTTP_RETRIES = "2"
HTTP_TIMEOUT_S = "20"
# MLflow takes at most this many params / metrics per request.
BATCH = 100
STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


class MlflowRun:
    name = "MLflow"

    def __init__(self, cfg: MlflowConfig, who: RunIdentity, config: dict[str, Any], saved: dict[str, Any]) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", HTTP_RETRIES)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_TIMEOUT_S)
        try:
            from mlflow.entities import Param, RunTag
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise TrackerError(
                "logger.mlflow.enabled=true (logger=mlflow) needs the mlflow package, which is not installed: "
                "pip install 'vae-cli[trackers]' (or pip install mlflow), or drop logger=mlflow."
            ) from None
        self.cfg = cfg
        where = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "./mlruns"
        try:
            self.client = MlflowClient(tracking_uri=cfg.tracking_uri)
            if saved.get("run_id") and saved.get("tracking_uri") == self.client.tracking_uri:
                self.run_id = str(saved["run_id"])  # a resume: the same MLflow run goes on
                self.client.update_run(self.run_id, status="RUNNING")
                return
            experiment = self.client.get_experiment_by_name(cfg.experiment)
            experiment_id = (
                experiment.experiment_id if experiment is not None else self.client.create_experiment(cfg.experiment)
            )
            tags = {"vae_cli.run_dir": str(who.run_dir), "vae_cli.version": __version__}
            if who.sweep is not None:
                tags.update({"vae_cli.sweep": who.sweep, "vae_cli.job": str(who.job)})
            run = self.client.create_run(experiment_id, run_name=who.name, tags=tags)
            self.run_id = run.info.run_id
            params = [Param(k, str(v)[:6000]) for k, v in flat_config(config).items()]
            for i in range(0, len(params), BATCH):
                self.client.log_batch(self.run_id, params=params[i : i + BATCH])
            self.client.log_batch(self.run_id, tags=[RunTag("mlflow.note.content", f"vae-cli run {who.run_dir}")])
        except Exception as exc:
            raise TrackerError(
                f"MLflow at {where} cannot be used ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}). Start "
                f"the server (mlflow server --host 127.0.0.1 --port 5000), or point logger.mlflow.tracking_uri at "
                f"one that runs, or drop logger=mlflow; nothing was trained."
            ) from None

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        for i in range(0, len(metrics), BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + BATCH])

    def image(self, tag: str, picture: Image.Image, step: int) -> None:
        self.client.log_image(self.run_id, picture, key=tag.replace("/", "_"), step=step)

    def finish(self, status: str, files: list[Path]) -> None:
        for path in files:
            if path.is_file() and (self.cfg.log_checkpoints or path.suffix != ".pt"):
                self.client.log_artifact(
                    self.run_id, str(path), artifact_path=path.parent.name if path.suffix == ".pt" else None
                )
        self.client.set_terminated(self.run_id, status=STATUS[status])

    def state(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "tracking_uri": self.client.tracking_uri}

"""Sweep summary: after ``vae-train -m ...``, one table of every run's overrides and final metrics.

A Hydra callback (``hydra.callbacks.sweep_summary`` in train.yaml), so it works with any launcher that runs the
jobs and leaves their directories under the sweep directory (basic, joblib, submitit).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

METRIC_COLUMNS = (
    "val/elbo",
    "val/recon",
    "val/kl",
    "test/elbo",
    "test/recon",
    "test/kl",
    "test/loss",
    "epochs",
    "wall_time_s",
)


def collect_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory: its number, its overrides, and its metrics.json (empty if it failed)."""
    rows = []
    for job_dir in sorted(
        (p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    ):
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        rows.append({"job": int(job_dir.name), "overrides": " ".join(overrides or []), **metrics})
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


def swept_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The override keys whose value differs between jobs: the sweep's axes, in first-seen order."""
    values: dict[str, set[str]] = {}
    for row in rows:
        for item in row["overrides"].split():
            key, _, value = item.partition("=")
            values.setdefault(key, set()).add(value)
    return [k for k, v in values.items() if len(v) > 1 or any(k not in _as_dict(r) for r in rows)]


def _as_dict(row: dict[str, Any]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in row["overrides"].split())


def write_summary(sweep_dir: Path) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` into ``sweep_dir``: one row per job, one column per swept key
    and per final metric; the CSV also keeps each job's full override list."""
    rows = collect_runs(sweep_dir)
    axes = swept_keys(rows)
    for row in rows:
        row["status"] = "ok" if "test/elbo" in row else "failed"
        row.update({k: v for k, v in _as_dict(row).items() if k in axes})
    columns = ["job", *axes, *METRIC_COLUMNS, "status"]
    csv_path = sweep_dir / "summary.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*columns, "overrides"], extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in [*columns, "overrides"]})
    md_path = sweep_dir / "summary.md"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        csv_path, md_path = write_summary(sweep_dir)
        log.info("sweep summary: %s and %s", csv_path, md_path)
        print(md_path.read_text())

"""Sweep summary: after ``vae-train -m ...``, one table of every run's overrides and final metrics.

It also lists the importance-weighted estimates: ``val/nll_iw`` from training and, for jobs evaluated with
``vae-eval`` (or ``vae-compare --eval``, which rewrites this summary), the ``eval/test/*`` numbers of eval.json.

A Hydra callback (``hydra.callbacks.sweep_summary`` in train.yaml), so it works with any launcher that runs the
jobs and leaves their directories under the sweep directory (basic, joblib, submitit).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vae_cli.atomic import write_text

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
# Shown when at least one job has them: val/nll_iw from training (metrics.json), the rest from vae-eval (eval.json).
EVAL_COLUMNS = (
    "val/nll_iw",
    "eval/test/elbo",
    "eval/test/nll_iw",
    "eval/test/bits_per_dim",
    "eval/test/active_units",
    "eval/test/k",
)
EVAL_KEYS = ("elbo", "recon", "kl", "nll_iw", "log_px_iw", "bits_per_dim", "active_units", "k")


def read_eval(job_dir: Path) -> dict[str, Any]:
    """``eval.json`` (written by vae-eval, one entry per split) flattened to ``eval/<split>/<metric>``."""
    path = job_dir / "eval.json"
    try:
        entries = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}
    if not isinstance(entries, dict):
        return {}
    return {
        f"eval/{split}/{key}": entry[key]
        for split, entry in entries.items()
        if isinstance(entry, dict)
        for key in EVAL_KEYS
        if key in entry
    }


JOB_MARKERS = (".hydra", "run.json", "metrics.json", "vae-train.log")


def is_single_run(path: Path) -> bool:
    return (path / "run.json").is_file() or (path / "checkpoints").is_dir() or (path / "metrics.json").is_file()


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep (``0/``, ``1/``, ...: numbered, and holding a vae-train job), in job order."""
    jobs = [
        p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit() and any((p / m).exists() for m in JOB_MARKERS)
    ]
    return sorted(jobs, key=lambda p: int(p.name))


def collect_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory: its number, its overrides, and its metrics.json (empty if it failed)."""
    rows = []
    for job_dir in job_dirs(sweep_dir):
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        rows.append({"job": int(job_dir.name), "overrides": " ".join(overrides or []), **metrics, **read_eval(job_dir)})
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
    extra = [c for c in EVAL_COLUMNS if any(row.get(c) is not None for row in rows)]
    columns = ["job", *axes, *METRIC_COLUMNS, *extra, "status"]
    csv_path = sweep_dir / "summary.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*columns, "overrides"], extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in [*columns, "overrides"]})
    write_text(csv_path, buffer.getvalue())
    md_path = sweep_dir / "summary.md"
    write_text(md_path, markdown_table(rows, columns))
    return csv_path, md_path


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        csv_path, md_path = write_summary(sweep_dir)
        log.info("sweep summary: %s and %s", csv_path, md_path)
        print(md_path.read_text())

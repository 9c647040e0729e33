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
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vae_cli.process.atomic import write_text
from vae_cli.process.locks import DirLock, holder_of
from vae_cli.runs.results import (
    SAMPLE_KEYS,
    SAMPLE_SHOWN,
    read_eval,
    read_metrics,
    sample_metric_prefix,
    sample_prefix_of,
    stale,
)
from vae_cli.runs.status import read_status
from vae_cli.runs.sweeps.metrics import best_metric, higher_is_better, rank
from vae_cli.runs.sweeps.refusals import clear_refusals, read_refusals
from vae_cli.training.run_layout import sweep_jobs

log = logging.getLogger(__name__)

# Shown when at least one job has them: the bounds and losses of any objective, then the run's size.
METRIC_COLUMNS = (
    "val/loss",
    "val/elbo",
    "val/iw_elbo",
    "test/loss",
    "test/elbo",
    "test/iw_elbo",
    "test/recon",
    "test/kl",
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
    "eval/test/mse",
)
# Shown when at least one job has them: the final disentanglement metrics, from training
# (disentanglement.every_epochs > 0, metrics.json) or from vae-eval --disentanglement (eval.json; it wins).
DISENTANGLEMENT_COLUMNS = (
    "disentanglement/mig",
    "disentanglement/dci_disentanglement",
    "disentanglement/dci_completeness",
    "disentanglement/dci_informativeness_test",
    "disentanglement/sap",
    "disentanglement/factor_vae_score",
    "disentanglement/beta_vae_score",
)
EVAL_KEYS = (
    "elbo",
    "recon",
    "kl",
    "nll_iw",
    "log_px_iw",
    "bits_per_dim",
    "active_units",
    "k",
    "num_images",
    "seed",
    "mse",
)


def flat_eval(job_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """``eval.json`` (written by vae-eval, one entry per split) flattened to ``eval/<split>/<metric>``, with
    ``eval/<split>/stale`` where the entry was computed from a checkpoint the job has since replaced."""
    entries = read_eval(job_dir)
    flat: dict[str, Any] = {}
    for split, entry in entries.items():
        if isinstance(entry, dict) and split.startswith("samples_"):  # vae-eval --samples
            prefix = sample_metric_prefix(split.removeprefix("samples_"))
            flat.update({f"{prefix}/{key}": entry[key] for key in SAMPLE_KEYS if key in entry})
            if stale(entry, metrics):
                flat[f"{prefix}/stale"] = True
            continue
        if not isinstance(entry, dict) or split == "disentanglement":
            continue
        flat.update({f"eval/{split}/{key}": entry[key] for key in EVAL_KEYS if key in entry})
        if stale(entry, metrics):
            flat[f"eval/{split}/stale"] = True
    scores = entries.get("disentanglement", {})
    scores = scores.get("scores", {}) if isinstance(scores, dict) else {}
    if isinstance(scores, dict):
        flat.update({k: v for k, v in scores.items() if k in DISENTANGLEMENT_COLUMNS})
    return flat


def sample_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The sample-quality columns some job has: the prior's first, then each fitted sampler's, by name."""
    prefixes = sorted(
        {k.partition("/")[0] for r in rows for k in r if sample_prefix_of(k)}, key=lambda p: (p != "sample", p)
    )
    return [f"{p}/{key}" for p in prefixes for key in SAMPLE_SHOWN]


def is_single_run(path: Path) -> bool:
    return (path / "run.json").is_file() or (path / "checkpoints").is_dir() or (path / "metrics.json").is_file()


# The job folders of a sweep (0/, 1/, ...: numbered, and holding a vae-train run), in job order.
job_dirs = sweep_jobs


def job_status(job_dir: Path, metrics: dict[str, Any]) -> tuple[str, str]:
    """``(status, reason)`` of one job: ok, or what its run.json says (failed, interrupted), or killed (it said
    "running" but nobody holds its directory any more: SIGKILL, a node lost, out of memory)."""
    status = read_status(job_dir)
    state, reason = status.get("state"), str(status.get("reason") or "")
    if metrics.get("epochs") is not None and state in (None, "finished"):
        return "ok", ""
    if state == "running":
        lock = DirLock(job_dir)
        if lock.acquire():
            lock.release()
            return "killed", "the process ended without a word (SIGKILL, out of memory, a lost node)"
        return "running", ""
    return (state or "failed"), reason or ("no metrics.json: it stopped before the end" if not metrics else "")


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def collect_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory: its number, its overrides, its metrics.json and eval.json, its status, and what
    its recorded config says it minimized (``sweep_metric``, ``objective``)."""
    rows = []
    refused = read_refusals(sweep_dir)
    for job_dir in job_dirs(sweep_dir):
        overrides = _read_yaml(job_dir / ".hydra" / "overrides.yaml")
        if not isinstance(overrides, list) or not overrides:
            overrides = read_status(job_dir).get("overrides") or []
        metrics = read_metrics(job_dir)
        status, reason = job_status(job_dir, metrics)
        if int(job_dir.name) in refused:  # the sweep's latest run refused it: what the folder holds is not it
            status, reason = "refused", refused.pop(int(job_dir.name))
        first_sentence = " ".join(reason.split()).split(". ")[0].replace("|", "/")[:160]  # one table cell
        config = _read_yaml(job_dir / ".hydra" / "config.yaml")
        trainer = config.get("trainer") if isinstance(config, dict) else None
        loss = config.get("loss") if isinstance(config, dict) else None
        rows.append(
            {
                "job": int(job_dir.name),
                "overrides": " ".join(str(o) for o in overrides),
                **metrics,
                **flat_eval(job_dir, metrics),
                "status": status,
                "reason": first_sentence,
                "sweep_metric": str((trainer or {}).get("sweep_metric") or "val/loss")
                if isinstance(trainer, dict)
                else "val/loss",
                "objective": json.dumps(loss, sort_keys=True, default=str),
            }
        )
    for job, reason in sorted(refused.items()):  # refused before its folder existed
        rows.append(
            {
                "job": job,
                "overrides": "",
                "status": "refused",
                "reason": " ".join(reason.split())[:160].replace("|", "/"),
            }
        )
    return sorted(rows, key=lambda r: r["job"])


def mark_best(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """The finished job best by ``best_metric`` (the one vae-compare ranks by; never a NaN) gets best = yes; returns
    the metric and why it was chosen."""
    metric, why = best_metric(rows)
    ranked = [r for r in rank([r for r in rows if r["status"] == "ok"], metric) if "rank" in r]
    if ranked:
        ranked[0]["best"] = "yes"
    for row in rows:
        row.pop("rank", None)
    return metric, why


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


def write_summary(sweep_dir: Path, rows: list[dict[str, Any]] | None = None) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` into ``sweep_dir``: one row per job, one column per swept key
    and per final metric, its status (and why it failed), the best job marked; the CSV also keeps each job's full
    override list. Built from the files each job leaves, so it works for every launcher."""
    rows = collect_runs(sweep_dir) if rows is None else rows
    axes = swept_keys(rows)
    for row in rows:
        row.update({k: v for k, v in _as_dict(row).items() if k in axes})
    metric, why = mark_best(rows)
    shown = [
        c
        for c in (*METRIC_COLUMNS, *EVAL_COLUMNS, *DISENTANGLEMENT_COLUMNS, *sample_columns(rows))
        if any(row.get(c) is not None for row in rows)
    ]
    extra = ["reason"] if any(row["reason"] for row in rows) else []
    columns = ["job", *axes, *shown, "status", *extra, "best"]
    csv_path = sweep_dir / "summary.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*columns, "overrides"], extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in [*columns, "overrides"]})
    write_text(csv_path, buffer.getvalue())
    md_path = sweep_dir / "summary.md"
    direction = "highest" if higher_is_better(metric) else "lowest"
    note = f"\nbest: the {direction} {metric} ({why}); vae-compare ranks by the same unless told otherwise.\n"
    write_text(md_path, markdown_table(rows, columns) + note)
    return csv_path, md_path


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# Jobs that did not finish in the sweeps this process summarized (vae-train then exits with status 1), and the
# sweeps whose every started job finished.
UNFINISHED: list[str] = []
SUMMARIZED: list[Path] = []


class SweepSummary(Callback):
    """Holds the sweep folder for the sweep's whole run (vae-compare waits for it; a second vae-train -m into the
    same folder is refused at once), clears the refusals of its previous run, and writes the summary at the end."""

    def __init__(self) -> None:
        self.lock: DirLock | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
            lock = DirLock(sweep_dir)
            acquired = lock.acquire()
        except OSError as exc:
            log.warning("could not hold the sweep folder %s: %s", sweep_dir, exc)
            return
        if not acquired:
            # Hydra turns a callback's exceptions into warnings: this ends the process itself, before any job.
            print(
                f"vae-train: error: the sweep folder {sweep_dir} is in use by {holder_of(sweep_dir)}. Nothing was "
                f"started. Wait for it to finish (then the same command continues this sweep), or choose another "
                f"hydra.sweep.dir.",
                file=sys.stderr,
            )
            raise SystemExit(2)
        lock.write_holder(sys.argv)
        self.lock = lock
        clear_refusals(sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._summarize(Path(config.hydra.sweep.dir))
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    def _summarize(self, sweep_dir: Path) -> None:
        if not sweep_dir.is_dir():
            return
        rows = collect_runs(sweep_dir)
        csv_path, md_path = write_summary(sweep_dir, rows)
        log.info("sweep summary: %s and %s", csv_path, md_path)
        print(md_path.read_text())
        UNFINISHED.extend(
            f"{sweep_dir / str(r['job'])} ({r['status']})" for r in rows if r["status"] not in ("ok", "replaced")
        )
        # Every job the launcher started (each has a numbered folder, empty if it stopped before it began) is ok.
        started = [p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        settled = {str(r["job"]) for r in rows if r["status"] in ("ok", "replaced")}
        if set(started) <= settled:
            SUMMARIZED.append(sweep_dir)

"""Ranking the jobs of a sweep by one metric (``vae-compare``): a table and a plot in the sweep folder, and scoring
the jobs not scored yet (``--eval``, ``--disentanglement``) through ``vae_cli.runs.scores``."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

from vae_cli.evaluation.plots import line_plot, save_png
from vae_cli.process.atomic import write_text
from vae_cli.process.errors import VaeCliError
from vae_cli.runs.scores import disentanglement_run, evaluate_run
from vae_cli.runs.sweeps.metrics import PREFERRED_METRICS, higher_is_better
from vae_cli.runs.sweeps.summary import (
    DISENTANGLEMENT_COLUMNS,
    _as_dict,
    collect_runs,
    job_dirs,
    markdown_table,
    read_eval,
    swept_keys,
)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def choose_metric(rows: list[dict[str, Any]], requested: str | None) -> str:
    done = [r for r in rows if r["status"] == "ok"]
    if requested is not None:
        if not any(_float(r.get(requested)) is not None for r in done):
            known = sorted({k for r in done for k, v in r.items() if _float(v) is not None and k != "job"})
            raise VaeCliError(
                f"No finished job has the metric '{requested}'. Choose one of: {', '.join(known) or '(none)'}; "
                f"eval/test/* columns appear after vae-eval (or vae-compare --eval)."
            )
        return requested
    for metric in PREFERRED_METRICS:
        if done and all(_float(r.get(metric)) is not None for r in done):
            return metric
    return "val/elbo"


def rank(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Rows best first (ties keep job order); rows without the metric (failed jobs) last, unranked."""
    sign = -1.0 if higher_is_better(metric) else 1.0
    scored = sorted((r for r in rows if _float(r.get(metric)) is not None), key=lambda r: sign * _float(r[metric]))
    for i, row in enumerate(scored, start=1):
        row["rank"] = i
    return scored + [r for r in rows if _float(r.get(metric)) is None]


def plot_series(
    rows: list[dict[str, Any]], axes: list[str], metric: str, x_key: str | None
) -> tuple[str, dict[str, list[tuple[float, float]]]]:
    """(x label, {series name: [(x, metric)]}): x is a numeric swept key, series are the other keys' values."""
    numeric = [a for a in axes if all(_float(r.get(a)) is not None for r in rows)]
    x = x_key if x_key is not None else (numeric[0] if numeric else None)
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        y = _float(row.get(metric))
        if y is None:
            continue
        others = " ".join(f"{a}={row.get(a)}" for a in axes if a != x)
        xv = _float(row.get(x)) if x is not None else float(row["job"])
        if xv is None:
            continue
        series.setdefault(others, []).append((xv, y))
    return (x or "job"), series


def compare(
    sweep_dir: Path, metric: str | None = None, x_key: str | None = None
) -> tuple[list[dict[str, Any]], str, list[Path]]:
    """Rank the jobs of ``sweep_dir``; write compare.csv/.md/.png; return (ranked rows, metric, files)."""
    rows = collect_runs(sweep_dir)
    axes = swept_keys(rows)
    if x_key is not None and x_key not in axes:
        raise VaeCliError(f"--x {x_key} is not a swept key of this sweep; swept keys: {', '.join(axes) or '(none)'}.")
    for row in rows:
        row.update({k: v for k, v in _as_dict(row).items() if k in axes})
    metric = choose_metric(rows, metric)
    ranked = rank(rows, metric)
    shown = ["val/elbo", "val/nll_iw", "test/elbo", "eval/test/nll_iw", "eval/test/active_units"]
    shown += list(DISENTANGLEMENT_COLUMNS)
    shown = [c for c in shown if c != metric and any(r.get(c) is not None for r in rows)]
    columns = ["rank", "job", *axes, metric, *shown, "status"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in ranked:
        writer.writerow({c: row.get(c, "") for c in columns})
    files = [sweep_dir / "compare.csv", sweep_dir / "compare.md", sweep_dir / "compare.png"]
    write_text(files[0], buffer.getvalue())
    direction = "higher is better" if higher_is_better(metric) else "lower is better"
    write_text(files[1], f"Ranked by {metric} ({direction}).\n\n" + markdown_table(ranked, columns))
    x_label, series = plot_series(rows, axes, metric, x_key)
    save_png(line_plot(series, f"{metric} ({direction})", x_label, metric), files[2])
    return ranked, metric, files


def evaluate_jobs(sweep_dir: Path, k: int, data_root: str | None) -> None:
    """vae-eval on the test split for every finished job without a test entry in its eval.json."""
    for job_dir in job_dirs(sweep_dir):
        if "eval/test/nll_iw" in read_eval(job_dir) or not (job_dir / "checkpoints").is_dir():
            continue
        try:
            result, _ = evaluate_run(job_dir, split="test", k=k, data_root=data_root)
        except VaeCliError as exc:
            print(f"vae-compare: job {job_dir.name} not evaluated: {exc}", file=sys.stderr)
            continue
        print(f"job {job_dir.name}: test nll_iw {result.nll_iw:.3f} (K={k}, {result.seconds:.1f} s)", file=sys.stderr)


def score_jobs(sweep_dir: Path, data_root: str | None) -> None:
    """vae-eval --disentanglement for every finished job whose eval.json has no disentanglement entry yet."""
    for job_dir in job_dirs(sweep_dir):
        scored = any(key.startswith("disentanglement/") for key in read_eval(job_dir))
        if scored or not (job_dir / "checkpoints").is_dir():
            continue
        try:
            result, _ = disentanglement_run(job_dir, data_root=data_root)
        except VaeCliError as exc:
            print(f"vae-compare: job {job_dir.name} not scored: {exc}", file=sys.stderr)
            continue
        shown = ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in result.scores.items())
        print(f"job {job_dir.name}: {shown}", file=sys.stderr)

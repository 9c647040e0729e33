"""Ranking the jobs of a sweep by one metric (``vae-compare``): a table and a plot in the sweep folder, and scoring
the jobs not scored yet (``--eval``, ``--disentanglement``) through ``vae_cli.runs.scores``."""

from __future__ import annotations

import csv
import io
import logging
import sys
from pathlib import Path
from typing import Any

from vae_cli.config.catalog import SAMPLERS
from vae_cli.evaluation.plots import line_plot, save_png
from vae_cli.evaluation.reconstruction import ReconstructionResult
from vae_cli.process.atomic import write_text
from vae_cli.process.errors import VaeCliError
from vae_cli.runs.loaded import load_run
from vae_cli.runs.results import owned, read_eval, read_metrics, stale
from vae_cli.runs.samplers import fit_sampler
from vae_cli.runs.scores import disentanglement_run, evaluate_run, sample_quality_run
from vae_cli.runs.sweeps.metrics import best_metric, comparable, finite, higher_is_better, rank
from vae_cli.runs.sweeps.summary import (
    DISENTANGLEMENT_COLUMNS,
    _as_dict,
    collect_runs,
    job_dirs,
    markdown_table,
    sample_columns,
    swept_keys,
)

log = logging.getLogger(__name__)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def choose_metric(rows: list[dict[str, Any]], requested: str | None) -> tuple[str, str]:
    """``(metric, why)``: the requested one, checked to be ranked like with like, or the sweep summary's
    (``best_metric``)."""
    done = [r for r in rows if r["status"] == "ok"]
    if requested is None:
        return best_metric(rows)
    if not any(finite(r.get(requested)) is not None for r in done):
        known = sorted({k for r in done for k, v in r.items() if finite(v) is not None and k not in ("job", "rank")})
        raise VaeCliError(
            f"No finished job has the metric '{requested}'. Choose one of: {', '.join(known) or '(none)'}; "
            f"eval/test/* columns appear after vae-eval (or vae-compare --eval)."
        )
    problem = comparable(rows, requested)
    if problem is not None:
        raise VaeCliError(
            f"Cannot rank by {requested}: {problem}, so its numbers are not comparable. "
            + (
                "Re-evaluate every job alike with vae-compare --eval --k K (it re-evaluates the jobs whose entry "
                "differs), or rank by another metric."
                if requested.startswith("eval/")
                else "Nothing was written."
            )
        )
    return requested, "asked for with --metric"


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
    sweep_dir: Path, metric: str | None = None, x_key: str | None = None, out_dir: Path | None = None
) -> tuple[list[dict[str, Any]], str, list[Path]]:
    """Rank the jobs of ``sweep_dir``; write compare.csv/.md/.png into ``out_dir`` (default: the sweep folder);
    return (ranked rows, metric, files)."""
    rows = collect_runs(sweep_dir)
    axes = swept_keys(rows)
    if x_key is not None and x_key not in axes:
        raise VaeCliError(f"--x {x_key} is not a swept key of this sweep; swept keys: {', '.join(axes) or '(none)'}.")
    for row in rows:
        row.update({k: v for k, v in _as_dict(row).items() if k in axes})
    metric, why = choose_metric(rows, metric)
    ranked = rank(rows, metric)
    shown = ["val/elbo", "val/nll_iw", "test/elbo", "eval/test/nll_iw", "eval/test/active_units", "eval/test/mse"]
    shown += list(DISENTANGLEMENT_COLUMNS) + sample_columns(rows)
    shown = [c for c in shown if c != metric and any(r.get(c) is not None for r in rows)]
    columns = ["rank", "job", *axes, metric, *shown, "status"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in ranked:
        writer.writerow({c: row.get(c, "") for c in columns})
    out = sweep_dir if out_dir is None else out_dir
    files = [out / "compare.csv", out / "compare.md", out / "compare.png"]
    direction = "higher is better" if higher_is_better(metric) else "lower is better"
    unranked = [str(r["job"]) for r in ranked if "rank" not in r and r.get("status") == "ok"]
    note = f" Not ranked (no finite value): job(s) {', '.join(unranked)}." if unranked else ""
    x_label, series = plot_series(rows, axes, metric, x_key)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_text(files[0], buffer.getvalue())
        write_text(files[1], f"Ranked by {metric} ({direction}): {why}.{note}\n\n" + markdown_table(ranked, columns))
        save_png(line_plot(series, f"{metric} ({direction})", x_label, metric), files[2])
    except OSError as exc:
        raise VaeCliError(
            f"Could not write the comparison into {out}: {exc.strerror or exc}. Nothing in the sweep was changed. "
            f"Write it elsewhere with --out DIR."
        ) from None
    return ranked, metric, files


def evaluate_jobs(sweep_dir: Path, k: int, data_root: str | None) -> None:
    """vae-eval on the test split for every finished job whose eval.json has no test entry comparable with the
    others: none yet, another K, part of the split only, or one computed before the job trained further."""
    for job_dir in job_dirs(sweep_dir):
        entry = read_eval(job_dir).get("test")
        current = (
            isinstance(entry, dict)
            and ((entry.get("k") == k and finite(entry.get("nll_iw")) is not None) or bool(entry.get("no_bound")))
            and not stale(entry, read_metrics(job_dir))
        )
        if current or not (job_dir / "checkpoints").is_dir():
            continue
        log.info("job %s: estimating test nll_iw with K=%d", job_dir.name, k)
        try:
            result, _ = evaluate_run(job_dir, split="test", k=k, data_root=data_root)
        except VaeCliError as exc:
            print(f"vae-compare: job {job_dir.name} not evaluated: {exc}", file=sys.stderr)
            continue
        if isinstance(result, ReconstructionResult):  # no bound (an autoencoder): its reconstruction error
            print(f"job {job_dir.name}: no likelihood bound; test MSE {result.mse:.5f}", file=sys.stderr)
            continue
        print(f"job {job_dir.name}: test nll_iw {result.nll_iw:.3f} (K={k}, {result.seconds:.1f} s)", file=sys.stderr)


def sample_jobs(
    sweep_dir: Path,
    prefix: str,
    samples: int,
    data_root: str | None,
    feature_network: str = "trained",
    inception_weights: str | None = None,
) -> None:
    """vae-eval --samples for every finished job without a current entry of this sampler, N and feature network
    (``prefix``: ``sample`` for the prior, ``sample_<key>`` for a fitted sampler, fitted first with its defaults where
    the job has none and the key names a sampler)."""
    sampler = "prior" if prefix == "sample" else prefix.removeprefix("sample_")
    for job_dir in job_dirs(sweep_dir):
        if not (job_dir / "checkpoints").is_dir():
            continue
        entry = read_eval(job_dir).get(f"samples_{sampler}")
        current = (
            isinstance(entry, dict)
            and entry.get("num_samples") == samples
            and finite(entry.get("fid")) is not None
            and str(entry.get("feature_network", "")).startswith(
                "inception" if feature_network == "inception" else "vae-cli-classifier"
            )
            and not stale(entry, read_metrics(job_dir))
        )
        if current:
            continue
        try:
            if sampler != "prior" and not (job_dir / "samplers" / f"{sampler}.pt").exists():
                fit_job_sampler(job_dir, sampler, data_root)
            log.info("job %s: sample quality of %d samples through %s", job_dir.name, samples, sampler)
            result, _ = sample_quality_run(
                job_dir,
                samples,
                sampler=sampler,
                feature_network=feature_network,
                inception_weights=inception_weights,
                data_root=data_root,
            )
        except VaeCliError as exc:
            print(f"vae-compare: job {job_dir.name} not scored: {exc}", file=sys.stderr)
            continue
        s = result.scores
        print(
            f"job {job_dir.name}: {prefix} FID {s.fid:.3f}, precision {s.precision:.3f}, recall {s.recall:.3f} "
            f"(N={samples})",
            file=sys.stderr,
        )


def fit_job_sampler(job_dir: Path, sampler: str, data_root: str | None) -> None:
    """Fit sampler ``sampler`` (a catalog name) with its defaults to a job's codes, as vae-fit-sampler would."""
    if sampler not in SAMPLERS:
        raise VaeCliError(
            f"it has no sampler {sampler!r}, and {sampler!r} is no sampler's name to fit one by "
            f"({', '.join(SAMPLERS.names())}); fit it with vae-fit-sampler {job_dir} --key {sampler}"
        )
    log.info("job %s: fitting sampler %s", job_dir.name, sampler)
    with owned(job_dir, "samplers/"):
        run = load_run(job_dir)
        fit_sampler(run, sampler, [], sampler, 0, data_root=data_root)


def score_jobs(sweep_dir: Path, data_root: str | None) -> None:
    """vae-eval --disentanglement for every finished job whose eval.json has no disentanglement entry yet."""
    for job_dir in job_dirs(sweep_dir):
        entry = read_eval(job_dir).get("disentanglement")
        scored = isinstance(entry, dict) and bool(entry.get("scores"))
        if scored or not (job_dir / "checkpoints").is_dir():
            continue
        log.info("job %s: scoring disentanglement", job_dir.name)
        try:
            result, _ = disentanglement_run(job_dir, data_root=data_root)
        except VaeCliError as exc:
            print(f"vae-compare: job {job_dir.name} not scored: {exc}", file=sys.stderr)
            continue
        shown = ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in result.scores.items())
        print(f"job {job_dir.name}: {shown}", file=sys.stderr)

"""Which metric ranks a sweep, which way, and which rows it may rank: one definition for the sweep summary's "best"
and vae-compare's ranking (read by vae-compare's ``--help`` too, so: no torch here).

A ranking compares like with like:

- **the metric**: ``best_metric`` picks the first that is comparable across every finished job: the test
  split's importance-weighted -log p(x) from vae-eval (``eval/test/nll_iw``) when every job has one computed with
  the same K and N from its current checkpoint; else the jobs' own ``trainer.sweep_metric`` (what a sweeper such as
  Optuna minimized) when it means the same for every job (a bound, or one objective with one set of weights: a
  ``val/loss`` of elbo, iwae and a beta-VAE are three different quantities); else the bound every job reports
  (``val/nll_iw``, then ``val/elbo``);
- **the rows**: only finite values are ranked (a NaN or an infinite value is never best); ``comparable`` says why
  eval.json entries of different K or N, or computed before the job trained further (stale), and the losses of
  different objectives or weights, may not be ranked together.
"""

from __future__ import annotations

import math
from typing import Any

from vae_cli.config.metric_direction import higher_is_better
from vae_cli.runs.results import sample_prefix_of

# Default ranking metrics, in order: the first one every finished job has (comparably).
PREFERRED_METRICS = ("eval/test/nll_iw", "val/nll_iw", "val/elbo")
# Metrics that mean the same whatever the objective and its weights: bounds on log p(x) and their bits/dim.
BOUND_SUFFIXES = ("/elbo", "/nll_iw", "/log_px_iw", "/bits_per_dim")


def finite(value: Any) -> float | None:
    """``value`` as a finite float, else None (missing, text, NaN, infinite)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def eval_split_of(metric: str) -> str | None:
    """``eval/<split>/<key>`` -> ``<split>``; None for a metric that is not a vae-eval entry's."""
    parts = metric.split("/")
    return parts[1] if len(parts) == 3 and parts[0] == "eval" else None


def comparable(rows: list[dict[str, Any]], metric: str) -> str | None:
    """Why the finished rows' ``metric`` may not be ranked together (None: they may): vae-eval entries computed with
    another K or N than the others, or from a checkpoint the job has since replaced."""
    split = eval_split_of(metric)
    scored = [r for r in rows if r.get("status") == "ok" and finite(r.get(metric)) is not None]
    prefix = sample_prefix_of(metric)
    if prefix is not None and scored:
        stale = [str(r["job"]) for r in scored if r.get(f"{prefix}/stale")]
        if stale:
            return f"the sample scores of job(s) {', '.join(stale)} were computed before the job trained further"
        for key, what in (
            ("feature_network", "feature networks"),
            ("num_samples", "numbers of samples N"),
            ("num_real", "numbers of real images"),
        ):
            values = {r.get(f"{prefix}/{key}") for r in scored}
            if len(values) > 1:
                listed = ", ".join(f"job {r['job']}: {r.get(f'{prefix}/{key}')}" for r in scored)
                return f"the sample scores were computed with different {what} ({listed})"
        return None
    if metric.endswith("/loss") and not _means_the_same(scored, metric):
        return (
            f"each job's {metric} is what its own objective minimizes, and the jobs differ in objective or its "
            f"weights (a loss of elbo, iwae and of a beta-VAE are different quantities); rank by a bound every job "
            f"reports instead (val/nll_iw or val/elbo)"
        )
    if split is None or not scored:
        return None
    stale = [str(r["job"]) for r in scored if r.get(f"eval/{split}/stale")]
    if stale:
        return (
            f"the {split} entries of job(s) {', '.join(stale)} were computed before the job trained further (their "
            f"checkpoint is not the one the job ends with)"
        )
    for key, what in (("k", "K (importance samples)"), ("num_images", "N (images)")):
        values = {r.get(f"eval/{split}/{key}") for r in scored}
        if len(values) > 1:
            listed = ", ".join(f"job {r['job']}: {r.get(f'eval/{split}/{key}')}" for r in scored)
            return f"the {split} entries were computed with different {what} ({listed})"
    return None


def _means_the_same(rows: list[dict[str, Any]], metric: str) -> bool:
    """Whether ``metric`` means the same for every row: a bound, or one objective with one set of weights."""
    if metric.endswith(BOUND_SUFFIXES):
        return True
    return len({r.get("objective") for r in rows}) == 1


def best_metric(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """``(metric, why)``: what ranks these rows (see the module docstring), and a sentence saying why that one."""
    done = [r for r in rows if r.get("status") == "ok"]
    if not done:
        return "val/elbo", "no job finished"

    def everyone_has(metric: str) -> bool:
        return all(finite(r.get(metric)) is not None for r in done)

    if everyone_has("eval/test/nll_iw") and comparable(done, "eval/test/nll_iw") is None:
        k = done[0].get("eval/test/k")
        return "eval/test/nll_iw", f"every job's test split was evaluated by vae-eval with K={k} on the same images"
    sweep_metrics = {str(r.get("sweep_metric") or "val/loss") for r in done}
    if len(sweep_metrics) == 1:
        (metric,) = sweep_metrics
        if everyone_has(metric) and _means_the_same(done, metric):
            return metric, "the jobs' trainer.sweep_metric (what a sweeper minimized), the same quantity for every job"
    for metric in PREFERRED_METRICS[1:]:
        if everyone_has(metric):
            return metric, "a bound on log p(x) every job reports, comparable across objectives and their weights"
    # Jobs without a likelihood bound (autoencoders): their samples' FID (the prior's, then a fitted sampler's),
    # then their test reconstruction error, when every job has it comparably.
    fids = sorted(
        {k for r in done for k in r if k.endswith("/fid") and sample_prefix_of(k)}, key=lambda k: (k != "sample/fid", k)
    )
    for metric in [*fids, "eval/test/mse"]:
        if everyone_has(metric) and comparable(done, metric) is None:
            return metric, (
                "the samples' FID every job has (same feature network and N): the jobs include models without a "
                "likelihood bound"
                if metric.endswith("/fid")
                else "the test reconstruction error every job has: the jobs include models without a likelihood bound"
            )
    return "val/elbo", "the ELBO, comparable across objectives"


def rank(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Rows best first (ties keep job order), each ranked one numbered ``rank``; rows without a finite value of the
    metric (failed jobs, NaN) last, unranked."""
    sign = -1.0 if higher_is_better(metric) else 1.0
    scored = sorted((r for r in rows if finite(r.get(metric)) is not None), key=lambda r: sign * finite(r[metric]))
    for i, row in enumerate(scored, start=1):
        row["rank"] = i
    return scored + [r for r in rows if finite(r.get(metric)) is None]

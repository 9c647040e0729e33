"""``vae-compare``: rank the runs of a sweep by one metric, as a table and a plot.

Usage::

    vae-compare outputs/multirun/2026-11-24/09-00-00                 # rank by the best metric available
    vae-compare SWEEP --eval --k 200                                 # first vae-eval every job (test split)
    vae-compare SWEEP --metric val/elbo --x loss.beta
    vae-compare SWEEP --disentanglement --metric disentanglement/mig   # score every job on its factors first
    vae-compare SWEEP --eval --metric sample/fid --samples 5000        # sample quality of every job's prior samples
    vae-compare SWEEP --eval --metric sample_gmm/fid                   # ... through a GMM fitted to each job's codes

Writes ``compare.csv``, ``compare.md`` and ``compare.png`` (the metric against one swept key, one line per value
of the other swept keys) into the sweep folder, and prints the ranked table. With ``--eval`` it also evaluates
every job that has no test entry in its eval.json yet and rewrites the sweep's ``summary.csv``/``summary.md``
with the new columns; with ``--eval --metric sample/...`` (or ``sample_<sampler>/...``) it measures every job's
sample quality instead (vae-eval --samples), fitting the sampler first where a job has none under that key.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from vae_cli.commands.arguments import positive_int
from vae_cli.runs.sweeps.metrics import PREFERRED_METRICS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vae-compare",
        description="Rank the runs of a vae-train sweep (vae-train -m ...) by one metric; write a table and a plot.",
    )
    p.add_argument("sweep_dir", help="a sweep folder, e.g. outputs/multirun/2026-11-24/09-00-00")
    p.add_argument(
        "--metric",
        help="column to rank by (default: what the sweep summary's 'best' uses, the first comparable across every "
        f"finished job of eval/test/nll_iw (same K and N), the jobs' trainer.sweep_metric when it means the same for "
        f"all, {', '.join(PREFERRED_METRICS[1:])})",
    )
    p.add_argument("--x", help="swept key on the plot's x axis (default: the first numeric one)")
    p.add_argument(
        "--out", help="folder for compare.csv/.md/.png (default: the sweep folder; another one for a read-only sweep)"
    )
    p.add_argument(
        "--eval",
        action="store_true",
        help="run vae-eval (test split) on jobs not evaluated yet, or evaluated with another K or before they trained on",
    )
    p.add_argument("--k", type=positive_int, default=100, help="importance samples for --eval (default 100)")
    p.add_argument("--data-root", help="for --eval: folder holding the dataset")
    p.add_argument(
        "--samples",
        type=positive_int,
        default=10_000,
        help="for --eval with a sample/... metric: samples per job (default 10000)",
    )
    p.add_argument(
        "--feature-network",
        choices=("trained", "inception"),
        default="trained",
        help="for --eval with a sample/... metric: the feature network (as vae-eval's)",
    )
    p.add_argument("--inception-weights", help="with --feature-network inception: the weights file")
    p.add_argument(
        "--disentanglement",
        action="store_true",
        help="run vae-eval --disentanglement on jobs not scored yet (factor datasets: shapes2d, dsprites, ...)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from vae_cli.process.errors import VaeCliError, deferred_stop, reported_errors

    sweep_dir = Path(args.sweep_dir).expanduser()
    # Entered before torch is imported: Ctrl-C or SIGTERM at any moment ends with a message, never a traceback.
    from vae_cli.process.log_format import console_logging

    console_logging()  # progress lines and what starts, on stderr
    with reported_errors("vae-compare", "interrupted; every file already written is complete."):
        with deferred_stop():  # torch's import must not be cut midway (process/errors.py)
            from vae_cli.runs.results import owned, sample_prefix_of
            from vae_cli.runs.sweeps.compare import compare, evaluate_jobs, sample_jobs, score_jobs
            from vae_cli.runs.sweeps.summary import is_single_run, job_dirs, write_summary

        if sweep_dir.is_dir() and is_single_run(sweep_dir):
            raise VaeCliError(
                f"{sweep_dir} is a single run, not a sweep; nothing was written into it. vae-compare ranks the jobs "
                f"of a sweep (vae-train -m ..., e.g. outputs/multirun/<date>/<time>); for one run use vae-eval "
                f"{sweep_dir}."
            )
        if not sweep_dir.is_dir() or not job_dirs(sweep_dir):
            raise VaeCliError(
                f"{sweep_dir} is not a sweep folder: expected numbered job folders (0/, 1/, ...) as written by "
                f"vae-train -m (e.g. outputs/multirun/<date>/<time>). For a single run use vae-eval."
            )
        out = Path(args.out).expanduser() if args.out else None
        writes_into_sweep = args.eval or args.disentanglement or out is None
        busy = (
            "the sweep is still running (or another vae-compare writes into it), and a ranking made now would miss "
            "the jobs still training. Nothing was written. Run vae-compare when the sweep has finished, or write "
            "a ranking of what is there now elsewhere with --out DIR."
        )
        with owned(sweep_dir, "the comparison", busy) if writes_into_sweep else contextlib.nullcontext():
            if args.eval or args.disentanglement:
                prefix = sample_prefix_of(args.metric or "")
                if args.eval and prefix is not None:
                    sample_jobs(
                        sweep_dir,
                        prefix,
                        args.samples,
                        args.data_root,
                        args.feature_network,
                        args.inception_weights,
                    )
                elif args.eval:
                    evaluate_jobs(sweep_dir, args.k, args.data_root)
                if args.disentanglement:
                    score_jobs(sweep_dir, args.data_root)
                try:
                    write_summary(sweep_dir)
                except OSError as exc:
                    raise VaeCliError(
                        f"Could not rewrite the sweep summary in {sweep_dir}: {exc.strerror or exc}."
                    ) from None
            _, _, files = compare(sweep_dir, args.metric, args.x, out)
    print(files[1].read_text())
    print("wrote " + ", ".join(str(f) for f in files))


if __name__ == "__main__":
    main()

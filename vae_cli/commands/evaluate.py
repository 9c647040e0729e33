"""``vae-eval``: how good is a trained VAE on a data split.

Usage::

    vae-eval outputs/2026-11-24/08-14-43                 # test split, K = 1000, best checkpoint
    vae-eval RUN --split val --k 5000                    # paper-grade IW estimate on the validation split
    vae-eval RUN/checkpoints/last.pt --data-root ~/data  # another checkpoint; data moved elsewhere
    vae-eval RUN --disentanglement                       # MIG, DCI, SAP, FactorVAE and BetaVAE scores
    vae-eval RUN --disentanglement --set dci.num_train=2000 --set seed=1
    vae-eval RUN --samples 10000                         # FID, KID, precision/recall of prior samples vs test
    vae-eval RUN --samples 10000 --sampler gmm           # ... of samples through a fitted sampler (vae-fit-sampler)
    vae-eval RUN --samples 10000 --feature-network inception --inception-weights pt_inception.pth

Reports ELBO, reconstruction and KL per image, the importance-weighted log-likelihood (IW-K), bits/dim, the
number of active latent units and the KL of each latent dimension; merges them into ``RUN/eval.json`` (one entry
per split), prints a table and logs them to the run's TensorBoard (``eval/<split>/...`` at the checkpoint's step).
With ``--disentanglement`` it scores the encoder mean against the dataset's ground-truth factors instead (the
run's ``disentanglement`` config: metrics, sample sizes, seed; ``--set`` changes them), into eval.json's
``disentanglement`` entry and TensorBoard's ``disentanglement/*``. With ``--samples N`` it measures sample quality:
N images decoded from codes of the model's prior or of a fitted sampler (``--sampler KEY``) against the split, FID,
KID and precision/recall in one feature network's space (``--feature-network``), into eval.json's
``samples_<KEY>`` entry and TensorBoard's ``sample/*`` (the prior) or ``sample_<KEY>/*``. A model without a
likelihood bound (loss=ae, wae, rae, aae; likelihood=msssim) gets its reconstruction error instead of the bound. The work is ``vae_cli.runs.scores``'s; this
module is the command line (torch loads only when a command really runs: fast ``--help``).
"""

from __future__ import annotations

import argparse

from vae_cli.commands.arguments import at_most, positive_int, seed

# More importance samples than this change the estimate by far less than its run time grows (and --k 1e9 would
# ask for terabytes of noise).
MAX_K = 100_000
MAX_SAMPLES = 200_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vae-eval",
        description="Evaluate a trained VAE: ELBO, importance-weighted log p(x), bits/dim, active units, KL per "
        "latent dimension. Writes RUN/eval.json and logs to the run's TensorBoard.",
    )
    p.add_argument("path", help="a run directory (uses checkpoints/best.pt, else last.pt) or a checkpoint file")
    p.add_argument("--split", choices=("test", "val"), default="test", help="data split to evaluate (default test)")
    p.add_argument(
        "--k",
        type=at_most(MAX_K, "K = 1000-5000 already gives paper-grade estimates"),
        default=1000,
        help="importance samples per image (default 1000; 5000 for paper-grade numbers)",
    )
    p.add_argument("--data-root", help="folder holding the dataset, replacing the run's dataset.root")
    p.add_argument("--dataset", help="evaluate on another dataset of the same image shape (e.g. mnist)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="for a run directory: which one")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--seed", type=seed, default=0, help="seed of the importance samples (default 0)")
    p.add_argument("--batch-size", type=positive_int, help="images per batch (default: about 16k decodes per batch)")
    p.add_argument(
        "--num-images",
        type=positive_int,
        help="evaluate only the split's first N images (for slow models: K x N decodes); recorded as the entry "
        "<split>_first<N>, so the whole split's numbers are kept apart",
    )
    p.add_argument("--no-write", action="store_true", help="print only: no eval.json, no TensorBoard")
    p.add_argument(
        "--disentanglement",
        action="store_true",
        help="score disentanglement against the dataset's ground-truth factors (MIG, DCI, SAP, FactorVAE and "
        "BetaVAE scores) instead of the likelihood",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --disentanglement: change a key of the run's disentanglement config, e.g. dci.num_train=2000, "
        "seed=1, metrics=[mig,dci] (repeatable)",
    )
    p.add_argument(
        "--samples",
        type=at_most(MAX_SAMPLES, "50k is the literature's FID sample size"),
        help="measure sample quality instead: FID, KID and precision/recall of N samples against the split",
    )
    p.add_argument(
        "--sampler",
        default="prior",
        help="with --samples: where the codes come from: prior (the model's own, default) or the key of a sampler "
        "fitted with vae-fit-sampler (e.g. gmm)",
    )
    p.add_argument(
        "--feature-network",
        choices=("trained", "inception"),
        default="trained",
        help="with --samples: trained (a classifier vae-cli trains on the dataset once and caches: offline, not "
        "comparable with published FIDs; default) or inception (Inception-v3 from --inception-weights)",
    )
    p.add_argument("--inception-weights", help="with --feature-network inception: the FID Inception-v3 weights file")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from vae_cli.process.errors import deferred_stop, reported_errors

    if args.set and not args.disentanglement:
        build_parser().error("--set changes the disentanglement config: use it with --disentanglement")
    if args.samples is not None and args.disentanglement:
        build_parser().error("--samples and --disentanglement are two evaluations: run them one at a time")
    if args.samples is None and (
        args.sampler != "prior" or args.feature_network != "trained" or args.inception_weights
    ):
        build_parser().error("--sampler, --feature-network and --inception-weights go with --samples N")
    # Entered before torch is imported: Ctrl-C or SIGTERM at any moment ends with a message, never a traceback.
    from vae_cli.process.log_format import console_logging

    console_logging()  # progress lines and what starts, on stderr
    with reported_errors("vae-eval", "interrupted; nothing was written."):
        with deferred_stop():  # torch's import must not be cut midway (process/errors.py)
            from vae_cli.commands.eval_report import format_disentanglement, format_samples, format_table
            from vae_cli.runs.scores import disentanglement_run, evaluate_run, sample_quality_run

        if args.samples is not None:
            quality, run = sample_quality_run(
                args.path,
                args.samples,
                sampler=args.sampler,
                split=args.split,
                seed=args.seed,
                feature_network=args.feature_network,
                inception_weights=args.inception_weights,
                data_root=args.data_root,
                which=args.checkpoint,
                device=args.device,
                num_images=args.num_images,
                write=not args.no_write,
            )
        elif args.disentanglement:
            scored, run = disentanglement_run(
                args.path, args.data_root, args.set, args.checkpoint, args.device, write=not args.no_write
            )
        else:
            result, run = evaluate_run(
                args.path,
                split=args.split,
                k=args.k,
                data_root=args.data_root,
                dataset=args.dataset,
                which=args.checkpoint,
                device=args.device,
                seed=args.seed,
                batch_size=args.batch_size,
                write=not args.no_write,
                num_images=args.num_images,
            )
    if args.samples is not None:
        print(format_samples(quality, run))
        if not args.no_write:
            print(
                f"\nwrote {run.run_dir / 'eval.json'} (entry {quality.entry}) and TensorBoard scalars in {run.run_dir}"
            )
        return
    if args.disentanglement:
        print(format_disentanglement(scored, run))
        if not args.no_write:
            print(f"\nwrote {run.run_dir / 'eval.json'} (entry disentanglement) and TensorBoard disentanglement/*")
        return
    print(format_table(result, run))
    if not args.no_write:
        print(f"\nwrote {run.run_dir / 'eval.json'} and TensorBoard scalars eval/{result.split}/* in {run.run_dir}")


if __name__ == "__main__":
    main()

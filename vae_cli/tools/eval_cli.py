"""``vae-eval``: how good is a trained VAE on a data split.

Usage::

    vae-eval outputs/2026-11-24/08-14-43                 # test split, K = 1000, best checkpoint
    vae-eval RUN --split val --k 5000                    # paper-grade IW estimate on the validation split
    vae-eval RUN/checkpoints/last.pt --data-root ~/data  # another checkpoint; data moved elsewhere
    vae-eval RUN --disentanglement                       # MIG, DCI, SAP, FactorVAE and BetaVAE scores
    vae-eval RUN --disentanglement --set dci.num_train=2000 --set seed=1

Reports ELBO, reconstruction and KL per image, the importance-weighted log-likelihood (IW-K), bits/dim, the
number of active latent units and the KL of each latent dimension; merges them into ``RUN/eval.json`` (one entry
per split), prints a table and logs them to the run's TensorBoard (``eval/<split>/...`` at the checkpoint's step).
With ``--disentanglement`` it scores the encoder mean against the dataset's ground-truth factors instead (the
run's ``disentanglement`` config: metrics, sample sizes, seed; ``--set`` changes them), into eval.json's
``disentanglement`` entry and TensorBoard's ``disentanglement/*``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads only when a command really runs (fast --help)
    from vae_cli.tools.evaluate import EvalResult
    from vae_cli.tools.run_loader import LoadedRun


def bits_per_dim_note(run: LoadedRun) -> str:
    """What this run's bits/dim means (eval.json's ``bits_per_dim_note``), from what its likelihood measures."""
    from vae_cli.models.likelihoods import Measures

    likelihood = str(getattr(run.cfg.likelihood.name, "value", run.cfg.likelihood.name))
    binarize = str(getattr(run.cfg.dataset, "binarize", "none")).split(".")[-1]
    measures = run.model.likelihood.measures
    if measures == Measures.cross_entropy:
        return (
            "Bernoulli likelihood on [0, 1] grey levels: a cross-entropy against soft targets, not a likelihood; "
            "comparable only with models evaluated the same way, not with 8-bit discrete bits/dim. Use "
            "dataset.binarize=dynamic (binary data) or likelihood=continuous_bernoulli (a density on grey levels)."
        )
    if measures == Measures.density:
        return (
            f"{likelihood} density on [0, 1]-scaled pixels (v / 255); bits/dim is read on the 0-255 scale, "
            f"nll / (D ln 2) + log2(255) (the literature's +8, whose pixels are scaled by 1/256): an upper bound on "
            f"the 8-bit discrete bits/dim when the data are uniformly dequantized (dataset.dequantize=true)."
        )
    if likelihood == "bernoulli":
        return (
            f"Bernoulli likelihood on binarized pixels (dataset.binarize={binarize}): a proper discrete "
            f"likelihood, bits per binary pixel, comparable with binarized-data results that binarize the same way."
        )
    return (
        f"{likelihood}: a probability of the 8-bit pixel values, bits/dim = nll / (D ln 2), comparable with the "
        f"discrete bits/dim of the literature (e.g. CIFAR-10)."
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# More importance samples than this change the estimate by far less than its run time grows (and --k 1e9 would
# ask for terabytes of noise).
MAX_K = 100_000


def at_most(most: int):
    def parse(text: str) -> int:
        value = positive_int(text)
        if value > most:
            raise argparse.ArgumentTypeError(
                f"must be at most {most}, got {value} (K = 1000-5000 already gives paper-grade estimates)"
            )
        return value

    return parse


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
        type=at_most(MAX_K),
        default=1000,
        help="importance samples per image (default 1000; 5000 for paper-grade numbers)",
    )
    p.add_argument("--data-root", help="folder holding the dataset, replacing the run's dataset.root")
    p.add_argument("--dataset", help="evaluate on another dataset of the same image shape (e.g. mnist)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="for a run directory: which one")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.add_argument("--seed", type=int, default=0, help="seed of the importance samples (default 0)")
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
    return p


def _progress(total: int, desc: str):
    def wrap(iterable):
        if not sys.stderr.isatty():
            return iterable
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False)

    return wrap


def eval_device(name: str):
    """The torch device of ``--device NAME``, or a message naming the fix when torch sees no such device."""
    from vae_cli.errors import ConfigError
    from vae_cli.training.run import pick_device

    try:
        return pick_device(name)
    except ConfigError as exc:
        raise ConfigError(
            f"--device {name} is not available here (torch sees no such device); use --device auto or cpu."
        ) from exc


def evaluate_run(
    path: str | Path,
    split: str = "test",
    k: int = 1000,
    data_root: str | None = None,
    dataset: str | None = None,
    which: str = "best",
    device: str = "auto",
    seed: int = 0,
    batch_size: int | None = None,
    write: bool = True,
    num_images: int | None = None,
) -> tuple[EvalResult, LoadedRun]:
    """Evaluate one run on one split; unless ``write`` is False, merge the result into ``RUN/eval.json`` and
    log it to the run's TensorBoard."""
    from vae_cli.datasets import labelled_batches
    from vae_cli.errors import VaeCliError
    from vae_cli.tools.evaluate import default_batch_size, evaluate_images
    from vae_cli.tools.run_loader import load_run, load_split

    dev = eval_device(device)
    run = load_run(path, which=which, device=dev)
    data = load_split(run.cfg, split, data_root=data_root, dataset=dataset)
    images, labels = data.images.to(dev), data.labels.to(dev)
    # Another dataset gets its own entry (e.g. "test_mnist"), so the run's own test numbers are kept; so does a
    # subset (e.g. "test_first1000").
    entry = split if dataset in (None, run.cfg.dataset.name) else f"{split}_{dataset}"
    if num_images is not None and num_images < images.shape[0]:
        images, labels = images[:num_images], labels[:num_images]
        entry = f"{entry}_first{num_images}"
    bs = batch_size or default_batch_size(k)
    result = evaluate_images(
        run.model,
        labelled_batches(images, labels, bs),
        k=k,
        seed=seed,
        split=entry,
        progress=_progress(-(-images.shape[0] // bs), f"vae-eval {split} K={k}"),
    )
    if write:
        record = {
            **result.to_dict(),
            "checkpoint": str(run.checkpoint_path),
            "epoch": run.epoch,
            "step": run.step,
            "dataset": dataset or run.cfg.dataset.name,
            "seed": seed,
            "batch_size": bs,
            "device": str(dev),
            "bits_per_dim_note": bits_per_dim_note(run),
        }
        try:
            # TensorBoard first: if the disk is full it fails there, and eval.json is left as it was.
            log_to_tensorboard(run, result)
            write_eval_json(run.run_dir / "eval.json", entry, record)
        except OSError as exc:
            raise VaeCliError(
                f"Could not write the results into {run.run_dir}: {exc.strerror or exc}. Nothing half-written was "
                f"left there (eval.json is replaced whole or not at all). Free disk space or fix the folder's "
                f"permissions, or print the numbers only with --no-write."
            ) from exc
    return result, run


def write_eval_json(path: Path, split: str, record: dict[str, Any]) -> None:
    """Merge ``record`` under ``split`` into eval.json, keeping the other entries; atomic."""
    from vae_cli.atomic import write_json

    existing: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text())
            existing = loaded if isinstance(loaded, dict) else {}
        except (OSError, json.JSONDecodeError):
            existing = {}  # unreadable: replaced whole (the write itself is atomic)
    existing[split] = record
    write_json(path, existing)


def log_to_tensorboard(run: LoadedRun, result: EvalResult) -> None:
    from vae_cli.tools.plots import bar_chart, to_tensor
    from vae_cli.training.tracking import Tracker

    logger = run.cfg.logger
    tracker = Tracker(run.run_dir, enabled=logger.tensorboard, save_png=logger.save_png)
    done = False
    try:
        prefix = f"eval/{result.split}"
        tracker.scalars(
            {
                f"{prefix}/elbo": result.elbo,
                f"{prefix}/recon": result.recon,
                f"{prefix}/kl": result.kl,
                f"{prefix}/nll_iw": result.nll_iw,
                f"{prefix}/bits_per_dim": result.bits_per_dim,
                f"{prefix}/active_units": float(result.active_units),
                **{f"{prefix}/kl_{name}": value for name, value in (result.kl_per_layer or {}).items()},
                **(
                    {
                        f"{prefix}/perplexity": float(result.codebook["perplexity"]),
                        f"{prefix}/codes_used": float(result.codebook["fraction_used"]),
                    }
                    if result.codebook is not None
                    else {}
                ),
            },
            run.step,
        )
        if result.codebook is not None:  # a VQ-VAE: how often each code is used, most used first
            counts = sorted(result.codebook["counts"], reverse=True)
            chart = bar_chart(counts, f"code usage ({result.split})", "codes, most used first", "assignments")
        elif result.kl_per_dim is not None:
            chart = bar_chart(
                result.kl_per_dim, f"KL per latent dimension ({result.split})", "latent dimension", "KL (nats)"
            )
        else:  # a prior without a per-dimension KL: the spread of the posterior means shows which units are used
            chart = bar_chart(
                result.mu_variance, f"Var[mu] per latent dimension ({result.split})", "latent dimension", "Var[mu]"
            )
        tracker.images(f"{prefix}/kl_per_dim", to_tensor(chart)[None], run.step, run.epoch, nrow=1)
        tracker.close()
        done = True
    finally:
        if not done:  # a failed write: remove this evaluation's own, incomplete event file
            event_file = tracker.event_file
            with contextlib.suppress(OSError):
                tracker.close()
            if event_file is not None:
                event_file.unlink(missing_ok=True)


def format_vq_table(result: EvalResult, run: LoadedRun) -> str:
    """A VQ-VAE (and its prior's run): reconstruction, the prior's NLL of the codes, the bound, code usage."""
    cb = result.codebook or {}
    positions = math.prod(run.model.grid)
    learned = run.model.prior.learned
    prior_line = "prior -log p(codes), PixelCNN" if learned else "prior -log p(codes), uniform"
    used = f"{cb.get('codes_used')} / {cb.get('codebook_size')}"
    lines = [
        f"{run.checkpoint_path} (epoch {run.epoch}, step {run.step})",
        f"{result.split} split: {result.num_images} images, a {run.model.grid[0]}x{run.model.grid[1]} code grid of "
        f"{cb.get('codebook_size')} codes, {result.seconds:.1f} s",
        "",
        f"  {'metric (per image)':<34}{'value':>12}",
        f"  {'reconstruction -log p(x|c) (nats)':<34}{result.recon:>12.3f}",
        f"  {prior_line + ' (nats)':<34}{result.kl:>12.3f}",
        f"  {'   per code (bits)':<34}{result.kl / positions / math.log(2):>12.3f}",
        f"  {'-log p(x) <= (nats)':<34}{result.nll_iw:>12.3f}",
        f"  {'   (bits/dim)':<34}{result.bits_per_dim:>12.4f}",
        f"  {'codebook perplexity':<34}{cb.get('perplexity', float('nan')):>12.1f}",
        f"  {'codes used':<34}{used:>12}",
        "",
        "The bound is the ELBO of a one-hot posterior, -log p(x|c(x)) - log p(c(x)): an upper bound on -log p(x)"
        + (
            " under the PixelCNN prior."
            if learned
            else " under the uniform prior (train a PixelCNN prior on the codes "
            f"for a far tighter one: vae-train prior=pixelcnn prior.vqvae={run.run_dir})."
        ),
    ]
    return "\n".join(lines)


def format_table(result: EvalResult, run: LoadedRun) -> str:
    from vae_cli.tools.visuals import dims_by_kl

    if result.codebook is not None:
        return format_vq_table(result, run)

    latent_dim = len(result.mu_variance)
    per_dim_values = result.kl_per_dim if result.kl_per_dim is not None else result.mu_variance
    order = dims_by_kl(per_dim_values)
    shown = 32  # a hierarchy has hundreds of dimensions: the most used ones say what matters
    per_dim = ", ".join(f"z{d}: {per_dim_values[d]:.2f}" for d in order[:shown])
    if len(order) > shown:
        per_dim += f", ... ({len(order) - shown} more)"
    what = (
        "KL per dimension"
        if result.kl_per_dim is not None
        else "Var[mu] per dimension (the prior has no per-dimension KL)"
    )
    lines = [
        f"{run.checkpoint_path} (epoch {run.epoch}, step {run.step})",
        f"{result.split} split: {result.num_images} images, K={result.k}, {result.seconds:.1f} s",
        "",
        f"  {'metric (per image)':<26}{'value':>12}",
        f"  {'ELBO (nats)':<26}{result.elbo:>12.3f}",
        f"  {'reconstruction (nats)':<26}{result.recon:>12.3f}",
        f"  {'KL (nats)':<26}{result.kl:>12.3f}",
        f"  {f'log p(x), IW-{result.k} (nats)':<26}{result.log_px_iw:>12.3f}",
        f"  {'-log p(x) (bits/dim)':<26}{result.bits_per_dim:>12.4f}",
        f"  {'active units':<26}{f'{result.active_units} / {latent_dim}':>12}",
        *(f"  {f'KL of layer {name} (nats)':<26}{value:>12.3f}" for name, value in (result.kl_per_layer or {}).items()),
        "",
        f"{what}, largest first: {per_dim}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from vae_cli.errors import reported_errors

    if args.set and not args.disentanglement:
        build_parser().error("--set changes the disentanglement config: use it with --disentanglement")
    if args.disentanglement:
        from vae_cli.tools.disentanglement_eval import disentanglement_run, format_disentanglement

        with reported_errors("vae-eval", "interrupted; nothing was written."):
            scored, run = disentanglement_run(
                args.path, args.data_root, args.set, args.checkpoint, args.device, write=not args.no_write
            )
        print(format_disentanglement(scored, run))
        if not args.no_write:
            print(f"\nwrote {run.run_dir / 'eval.json'} (entry disentanglement) and TensorBoard disentanglement/*")
        return
    with reported_errors("vae-eval", "interrupted; nothing was written."):
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
    print(format_table(result, run))
    if not args.no_write:
        print(f"\nwrote {run.run_dir / 'eval.json'} and TensorBoard scalars eval/{result.split}/* in {run.run_dir}")


if __name__ == "__main__":
    main()

"""``vae-sample``: show what a trained VAE does, as PNG files.

Usage::

    vae-sample outputs/2026-11-24/08-14-43 --out pictures            # 64 of everything, seed 0
    vae-sample RUN --out pictures --n 16 --seed 3 --temperature 0.7

Writes into ``--out``: ``samples.png`` (prior samples, z = temperature * eps), ``reconstructions.png`` (rows of
real images, each followed by a row of their reconstructions), ``interpolations_linear.png`` and
``interpolations_slerp.png`` (one row per pair of real images: the two originals at the ends, decoded points of
z in between), ``traversals.png`` (one row per latent dimension, sorted by KL so the dimensions the model uses come
first, each swept from -3 to 3 around one image's code), ``latent_scatter.png`` (posterior means coloured by
class; PCA above 2-D) and, for 2-D latents, ``manifold.png`` (the decoder over a grid of prior quantiles).

Everything runs on the CPU from a seeded generator, so the same run, options and seed give byte-identical files.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

from vae_cli.commands.arguments import at_most, non_negative_float, positive_int, seed

log = logging.getLogger("vae_cli.sample")

TRAVERSAL_RANGE = 3.0
# Images encoded per batch for the traversals' order and the scatter.
SPLIT_BATCH = 1000
SCATTER_MAX_POINTS = 2000
# A grid of more images is unreadable and its PNG grows without bound (--n 1000000000 once tried to allocate it).
MAX_IMAGES = 1024
MAX_STEPS = 64
UNREADABLE = "a grid that large is unreadable"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vae-sample",
        description="Write PNGs of a trained VAE: prior samples, reconstructions, interpolations (linear and "
        "spherical), latent traversals, the latent scatter and, for 2-D latents, the decoded manifold.",
    )
    p.add_argument("path", help="a run directory (uses checkpoints/best.pt, else last.pt) or a checkpoint file")
    p.add_argument("--out", required=True, help="folder for the PNG files (created if missing)")
    p.add_argument(
        "--n",
        type=at_most(MAX_IMAGES, UNREADABLE),
        default=64,
        help=f"prior samples and reconstructions (default 64, at most {MAX_IMAGES})",
    )
    p.add_argument("--seed", type=seed, default=0, help="seed for samples and the choice of images (default 0)")
    p.add_argument(
        "--temperature", type=non_negative_float, default=1.0, help="prior samples use z = T * eps (default 1)"
    )
    p.add_argument(
        "--steps",
        type=at_most(MAX_STEPS, UNREADABLE),
        default=10,
        help=f"decoded points per interpolation (default 10, at most {MAX_STEPS})",
    )
    p.add_argument("--dims", type=positive_int, default=10, help="latent dimensions to traverse (default 10)")
    p.add_argument("--label", type=int, help="a conditional model (CVAE): draw every sample of this class")
    p.add_argument(
        "--uniform-codes",
        action="store_true",
        help="a VQ-VAE without a learned prior: decode uniformly drawn codes anyway (noise; for comparison with a "
        "PixelCNN prior's samples)",
    )
    p.add_argument(
        "--sampler",
        default="prior",
        help="where samples.png's codes come from: prior (the model's own, default) or the key of a sampler fitted "
        "with vae-fit-sampler (e.g. gmm)",
    )
    p.add_argument("--split", choices=("test", "val"), default="test", help="where the real images come from")
    p.add_argument("--data-root", help="folder holding the dataset, replacing the run's dataset.root")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="for a run directory: which one")
    return p


def write_pictures(args: argparse.Namespace) -> list[Path]:
    from vae_cli.process.errors import deferred_stop

    with deferred_stop():  # torch's import must not be cut midway (process/errors.py)
        import torch

        from vae_cli.datasets.batches import batch_count, labelled_batches
        from vae_cli.datasets.preprocess import to_unit_float
        from vae_cli.evaluation.latent_views import (
            MeanDecoder,
            dims_by_usage,
            interpolation_grid,
            latent_scatter,
            manifold_latents,
            traversal_latents,
        )
        from vae_cli.evaluation.plots import labelled_grid, save_png, value_label
        from vae_cli.process import progress
        from vae_cli.process.errors import VaeCliError
        from vae_cli.runs.loaded import load_run, load_split
        from vae_cli.runs.samplers import load_sampler

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise VaeCliError(f"--out {out} is a file, not a folder; pass a folder for the PNG files.")
    run = load_run(args.path, which=args.checkpoint, device="cpu", channels_last=True)
    model, decode = run.model, MeanDecoder(run.model)
    if args.label is not None and not model.conditional:
        raise VaeCliError(
            f"--label {args.label}: {run.run_dir} is not a conditional model (it was trained without "
            f"model.conditional=true), so its samples cannot be asked for a class. Drop --label."
        )
    if args.label is not None and not 0 <= args.label < model.num_classes:
        raise VaeCliError(f"--label {args.label} is not a class of this model: use 0 to {model.num_classes - 1}.")
    if not model.can_sample and not args.uniform_codes:
        raise VaeCliError(
            f"{run.run_dir} is a VQ-VAE trained under the uniform prior over its codes, so it has nothing to sample "
            f"from: uniformly drawn codes decode to noise. Train a PixelCNN prior on its codes, then sample that run:\n"
            f"  vae-train prior=pixelcnn prior.vqvae={run.run_dir}\n  vae-sample <that run> --out {args.out}\n"
            f"(--uniform-codes decodes uniform codes anyway, to see the difference.)"
        )
    split = load_split(run.cfg, args.split, data_root=args.data_root)
    images, labels = split.images, split.labels
    gen = torch.Generator().manual_seed(args.seed)
    written: list[Path] = []

    def save(name: str, grid: torch.Tensor, nrow: int, **labels: Any) -> None:
        written.append(save_png(labelled_grid(grid, nrow, **labels), out / name))

    names = split.class_names

    def class_name(c: int) -> str:
        return names[c] if 0 <= c < len(names) else f"class {c}"

    # Prior samples, at the given temperature; a CVAE's are one class (--label), or one class per row. Or codes
    # from a fitted sampler (--sampler KEY).
    if args.sampler != "prior":
        if args.temperature != 1.0:
            raise VaeCliError("--temperature scales the prior's draws; a fitted sampler (--sampler) draws as fitted.")
        fitted = load_sampler(run, args.sampler)
        log.info("sampling %d images through sampler %s (seed %d)", args.n, fitted.describe(), args.seed)
        z = fitted.sampler.sample(args.n, gen)
        source = f"sampler {fitted.describe()}"
    else:
        log.info("sampling %d images from the prior (temperature %g, seed %d)", args.n, args.temperature, args.seed)
        z = model.prior_sample(args.n, generator=gen, temperature=args.temperature).cpu()
        source = f"the prior, temperature {args.temperature:g}"
    nrow = math.ceil(math.sqrt(args.n))
    sample_labels = None
    if model.conditional:
        rows = torch.arange(args.n) // nrow
        sample_labels = torch.full((args.n,), args.label) if args.label is not None else rows % model.num_classes
    about = f"{run.checkpoint_path.name} of {run.run_dir.name}, epoch {run.epoch}, seed {args.seed}"
    classes = [class_name(int(c)) for c in sample_labels[::nrow]] if sample_labels is not None else None
    save(
        "samples.png",
        decode(z, sample_labels),
        nrow=nrow,
        title=f"samples from {source} ({about})",
        row_labels=classes,
    )

    # Real images chosen by the seed: reconstructions, then interpolation pairs.
    log.info("reconstructions and interpolations of %s images", args.split)
    n_img = images.shape[0]
    order = torch.randperm(n_img, generator=gen)
    chosen_idx = order[: min(args.n, n_img)]
    chosen, chosen_y = to_unit_float(images[chosen_idx]), labels[chosen_idx]
    with torch.no_grad():
        mu_chosen, _ = model.encode(chosen, chosen_y)
    cols = min(8, chosen.shape[0])
    rows = -(-chosen.shape[0] // cols)
    pad = rows * cols - chosen.shape[0]
    originals = torch.cat([chosen, torch.ones(pad, *chosen.shape[1:])])
    recons = torch.cat([decode(mu_chosen, chosen_y), torch.ones(pad, *chosen.shape[1:])])
    pairs = torch.stack([originals.view(rows, cols, *chosen.shape[1:]), recons.view(rows, cols, *chosen.shape[1:])], 1)
    save(
        "reconstructions.png",
        pairs.reshape(-1, *chosen.shape[1:]),
        nrow=cols,
        title=f"{args.split} images and their reconstructions ({about})",
        row_labels=["original", "reconstruction"] * rows,
    )

    n_pairs = max(1, min(8, n_img // 2))
    end_idx = order[: 2 * n_pairs] if n_img >= 2 else torch.tensor([0, 0])
    ends, ends_y = to_unit_float(images[end_idx]), labels[end_idx]
    with torch.no_grad():
        mu_ends, _ = model.encode(ends, ends_y)
    x0, x1, z0, z1 = ends[0::2], ends[1::2], mu_ends[0::2], mu_ends[1::2]
    y0 = ends_y[0::2] if model.conditional else None
    steps = [f"{i / (args.steps + 1):.2g}" for i in range(1, args.steps + 1)]
    for name, spherical in (("interpolations_linear.png", False), ("interpolations_slerp.png", True)):
        save(
            name,
            interpolation_grid(decode, x0, x1, z0, z1, args.steps, spherical, y0),
            nrow=args.steps + 2,
            title=f"{'spherical' if spherical else 'linear'} interpolation between the encodings of two {args.split} "
            f"images ({about})",
            col_labels=["x0", *steps, "x1"],
        )

    # The posterior means of the split's first SCATTER_MAX_POINTS images: the traversals' order (KL, or Var[mu]),
    # and the scatter. (The whole split changed neither a ranking nor the picture, and took minutes for a hierarchy.)
    shown = min(SCATTER_MAX_POINTS, n_img)
    mus, logvars = [], []
    with torch.no_grad():
        batches = labelled_batches(images[:shown], labels[:shown], SPLIT_BATCH)
        total = batch_count(shown, SPLIT_BATCH)
        for x, y in progress.tracked(batches, f"encoding {shown:,} {args.split} images", total=total):
            mu, logvar = model.encode(x, y)
            mus.append(mu)
            logvars.append(logvar)
    mu_all = torch.cat(mus)
    dims = dims_by_usage(model, mu_all, torch.cat(logvars))[: args.dims]
    values = torch.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, 11)
    traversal_y = chosen_y[:1].repeat(len(dims) * len(values)) if model.conditional else None
    save(
        "traversals.png",
        decode(traversal_latents(mu_chosen[0], dims, values), traversal_y),
        nrow=len(values),
        title=f"one latent at a time from a {args.split} image's mu, most used latents first ({about})",
        row_labels=[f"z[{int(d)}]" for d in dims],
        col_labels=[value_label(v) for v in values.tolist()],
    )
    scatter = latent_scatter(
        mu_all[:shown], labels[:shown], f"{args.split} split: posterior means", class_names=split.class_names
    )
    written.append(save_png(scatter, out / "latent_scatter.png"))
    if model.latent_dim == 2:
        side = 20
        manifold_y = torch.full((side * side,), args.label or 0) if model.conditional else None
        save(
            "manifold.png",
            decode(manifold_latents(side), manifold_y),
            nrow=side,
            title=f"the 2-D latent plane through the prior's quantiles: z[0] left to right, z[1] top to bottom "
            f"({about})",
        )
    return written


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from vae_cli.process.errors import reported_errors
    from vae_cli.process.log_format import console_logging

    console_logging()  # progress lines and what starts, on stderr
    with reported_errors("vae-sample", "interrupted; every file already written is complete."):
        written = write_pictures(args)
    for path in written:
        print(path)


if __name__ == "__main__":
    main()

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
import math
from pathlib import Path

from vae_cli.tools.eval_cli import positive_int

TRAVERSAL_RANGE = 3.0
SCATTER_MAX_POINTS = 2000


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vae-sample",
        description="Write PNGs of a trained VAE: prior samples, reconstructions, interpolations (linear and "
        "spherical), latent traversals, the latent scatter and, for 2-D latents, the decoded manifold.",
    )
    p.add_argument("path", help="a run directory (uses checkpoints/best.pt, else last.pt) or a checkpoint file")
    p.add_argument("--out", required=True, help="folder for the PNG files (created if missing)")
    p.add_argument("--n", type=positive_int, default=64, help="prior samples and reconstructions (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed for samples and the choice of images (default 0)")
    p.add_argument(
        "--temperature", type=non_negative_float, default=1.0, help="prior samples use z = T * eps (default 1)"
    )
    p.add_argument("--steps", type=positive_int, default=10, help="decoded points per interpolation (default 10)")
    p.add_argument("--dims", type=positive_int, default=10, help="latent dimensions to traverse (default 10)")
    p.add_argument("--split", choices=("test", "val"), default="test", help="where the real images come from")
    p.add_argument("--data-root", help="folder holding the dataset, replacing the run's dataset.root")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="for a run directory: which one")
    return p


def write_pictures(args: argparse.Namespace) -> list[Path]:
    import torch

    from vae_cli.datasets import eval_batches, to_unit_float
    from vae_cli.tools.evaluate import kl_per_dimension
    from vae_cli.tools.plots import grid_image, save_png
    from vae_cli.tools.run_loader import load_run, load_split
    from vae_cli.tools.visuals import (
        MeanDecoder,
        dims_by_kl,
        interpolation_grid,
        latent_scatter,
        manifold_latents,
        traversal_latents,
    )

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        from vae_cli.errors import VaeCliError

        raise VaeCliError(f"--out {out} is a file, not a folder; pass a folder for the PNG files.")
    run = load_run(args.path, which=args.checkpoint, device="cpu")
    split = load_split(run.cfg, args.split, data_root=args.data_root)
    images, labels = split.images, split.labels
    model, decode = run.model, MeanDecoder(run.model, run.loss_fn.likelihood)
    gen = torch.Generator().manual_seed(args.seed)
    written: list[Path] = []

    def save(name: str, grid: torch.Tensor, nrow: int) -> None:
        written.append(save_png(grid_image(grid, nrow=nrow), out / name))

    # Prior samples, at the given temperature.
    z = args.temperature * torch.randn(args.n, model.latent_dim, generator=gen)
    save("samples.png", decode(z), nrow=math.ceil(math.sqrt(args.n)))

    # Real images chosen by the seed: reconstructions, then interpolation pairs.
    n_img = images.shape[0]
    order = torch.randperm(n_img, generator=gen)
    chosen = to_unit_float(images[order[: min(args.n, n_img)]])
    with torch.no_grad():
        mu_chosen, _ = model.encode(chosen)
    cols = min(8, chosen.shape[0])
    rows = -(-chosen.shape[0] // cols)
    pad = rows * cols - chosen.shape[0]
    originals = torch.cat([chosen, torch.ones(pad, *chosen.shape[1:])])
    recons = torch.cat([decode(mu_chosen), torch.ones(pad, *chosen.shape[1:])])
    pairs = torch.stack([originals.view(rows, cols, *chosen.shape[1:]), recons.view(rows, cols, *chosen.shape[1:])], 1)
    save("reconstructions.png", pairs.reshape(-1, *chosen.shape[1:]), nrow=cols)

    n_pairs = max(1, min(8, n_img // 2))
    ends = to_unit_float(images[order[: 2 * n_pairs]]) if n_img >= 2 else to_unit_float(images[[0, 0]])
    with torch.no_grad():
        mu_ends, _ = model.encode(ends)
    x0, x1, z0, z1 = ends[0::2], ends[1::2], mu_ends[0::2], mu_ends[1::2]
    for name, spherical in (("interpolations_linear.png", False), ("interpolations_slerp.png", True)):
        save(name, interpolation_grid(decode, x0, x1, z0, z1, args.steps, spherical), nrow=args.steps + 2)

    # The whole split's posterior means: KL order for the traversals, and the scatter.
    mus, kls = [], []
    with torch.no_grad():
        for x in eval_batches(images, 1000):
            mu, logvar = model.encode(x)
            mus.append(mu)
            kls.append(kl_per_dimension(mu, logvar).sum(0))
    mu_all = torch.cat(mus)
    dims = dims_by_kl(torch.stack(kls).sum(0) / n_img)[: args.dims]
    values = torch.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, 11)
    save("traversals.png", decode(traversal_latents(mu_chosen[0], dims, values)), nrow=len(values))
    shown = min(SCATTER_MAX_POINTS, n_img)
    scatter = latent_scatter(
        mu_all[:shown], labels[:shown], f"{args.split} split: posterior means", class_names=split.class_names
    )
    written.append(save_png(scatter, out / "latent_scatter.png"))
    if model.latent_dim == 2:
        side = 20
        save("manifold.png", decode(manifold_latents(side)), nrow=side)
    return written


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from vae_cli.errors import reported_errors

    with reported_errors("vae-sample", "interrupted; every file already written is complete."):
        written = write_pictures(args)
    for path in written:
        print(path)


if __name__ == "__main__":
    main()

"""``vae-fit-sampler``: fit a density to a trained run's latent codes, for sampling it where its codes are.

Usage::

    vae-fit-sampler RUN --sampler gmm --components 10      # a Gaussian mixture (EM), saved as RUN/samplers/gmm.pt
    vae-fit-sampler RUN --sampler flow --key maf           # a masked autoregressive flow, as samplers/maf.pt
    vae-fit-sampler RUN --sampler two_stage                # a second-stage VAE on the codes (Dai & Wipf)
    vae-fit-sampler RUN --sampler gmm --set covariance=diag --seed 1 --key gmm_diag

The codes are the means of q(z|x) of the run's training split (the checkpoint of ``--checkpoint``). The sampler is
saved with its config, what it was fitted on and a checksum; ``vae-sample RUN --sampler KEY`` and ``vae-eval RUN
--samples N --sampler KEY`` use it. The same run, sampler, settings and seed give the same sampler. An existing key
is kept unless ``--replace`` (which moves the old file to samplers/old/).
"""

from __future__ import annotations

import argparse

from vae_cli.commands.arguments import positive_int, seed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vae-fit-sampler",
        description="Fit a density (gmm, flow, two_stage, prior) to a trained run's training codes and save it in "
        "the run directory, for vae-sample and vae-eval --samples.",
    )
    p.add_argument("path", help="a run directory (uses checkpoints/best.pt, else last.pt) or a checkpoint file")
    p.add_argument("--sampler", default="gmm", help="gmm (default), flow, two_stage or prior")
    p.add_argument("--components", type=positive_int, help="gmm: mixture components (default 10)")
    p.add_argument("--key", help="the name it is saved under, samplers/<key>.pt (default: the sampler's name)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the fit (default 0)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="change a key of the sampler's config"
    )
    p.add_argument("--num-images", type=positive_int, help="fit to the first N training images' codes only")
    p.add_argument("--replace", action="store_true", help="replace an existing key (the old file is moved aside)")
    p.add_argument("--data-root", help="folder holding the dataset, replacing the run's dataset.root")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="for a run directory: which one")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from vae_cli.process.errors import deferred_stop, reported_errors
    from vae_cli.process.log_format import console_logging

    console_logging()
    with reported_errors("vae-fit-sampler", "interrupted; no sampler was written."):
        with deferred_stop():
            from pathlib import Path

            from vae_cli.runs.loaded import load_run, run_dir_of
            from vae_cli.runs.results import owned
            from vae_cli.runs.samplers import fit_sampler
            from vae_cli.runs.scores import eval_device

        overrides = list(args.set)
        if args.components is not None:
            if args.sampler != "gmm":
                build_parser().error("--components is a setting of --sampler gmm")
            overrides.append(f"components={args.components}")
        path = Path(args.path).expanduser()
        with owned(path if path.is_dir() else run_dir_of(path), "samplers/"):
            run = load_run(path, which=args.checkpoint, device=eval_device(args.device), channels_last=True)
            fitted = fit_sampler(
                run,
                args.sampler,
                overrides,
                args.key,
                args.seed,
                data_root=args.data_root,
                num_images=args.num_images,
                replace=args.replace,
            )
    on = fitted.record["fitted_on"]
    print(f"{fitted.describe()}")
    print(
        f"fitted to {on['num_codes']:,} training codes (mean of q(z|x), {on['latent_dim']}-D) of {on['checkpoint']} "
        f"(epoch {on['epoch']}), seed {on['seed']}, in {fitted.record['seconds']:.1f} s"
    )
    for name, value in fitted.record["fit"].items():
        print(f"  {name:<24}{value:>12.4f}")
    print(f"\nwrote {fitted.path}")
    print(
        f"use it: vae-sample {run.run_dir} --sampler {fitted.key} --out pics; vae-eval {run.run_dir} --samples 10000 --sampler {fitted.key}"
    )


if __name__ == "__main__":
    main()

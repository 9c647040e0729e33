"""Sample quality of the generative autoencoders (Model zoo IV) on Fashion-MNIST, each sampled through its own prior
and through a GMM(10) fitted to its training codes, as pythae's benchmark compares them (Chadebec et al., 2022).

Every row: the same convolutional networks (model=conv, latent 16), grey-level Fashion-MNIST (Bernoulli
cross-entropy reconstruction), Adam 1e-3, batch 128, the same epochs; one ``vae-train -m ... trainer.seed=0,1,2``
sweep per model (a killed benchmark picks up where it stopped). Then per job: ``vae-fit-sampler --sampler gmm
--components 10``, ``vae-eval --samples N`` through the prior and through the GMM (FID, KID, precision/recall in
vae-cli's offline feature network: not comparable with published Inception FIDs), and the test reconstruction MSE
(z = the encoder's mean, every model alike), all from each job's last checkpoint (the same budget for every row:
best.pt is chosen by each objective's own validation term, which for the adversarial ones says little about samples).
Sample grids of seed 0 go to ``--images``.

    python benchmarks/sample_quality.py --epochs 10 --seeds 3 --out /tmp/vae-sample-quality --images docs/images/zoo4
    python benchmarks/sample_quality.py --models vae ae --epochs 1 --seeds 1 --samples 2000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

# No IW estimate during training (the autoencoders have none; the train time compares like with like).
COMMON = [
    "dataset=fashion_mnist",
    "model=conv",
    "model.latent_dim=16",
    "trainer.batch_size=128",
    "optim.lr=1e-3",
    "trainer.nll_iw_every_epochs=0",
]
MODELS: dict[str, list[str]] = {
    "vae": [],
    "beta_vae": ["loss.beta=4"],
    "ae": ["loss=ae"],
    "wae": ["loss=wae"],
    "rae_l2": ["loss=rae", "loss.regularizer=l2"],
    "aae": ["loss=aae"],
    "vaegan": ["loss=vaegan"],
}
LABELS = {
    "vae": "VAE",
    "beta_vae": "β-VAE (β=4)",
    "ae": "AE",
    "wae": "WAE-MMD (IMQ, λ=10)",
    "rae_l2": "RAE-L2",
    "aae": "AAE",
    "vaegan": "VAE-GAN (γ=1)",
}


def tool(name: str, args: list[str]) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / name
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc


def reconstruction_mse(job: Path, checkpoint: str) -> float:
    from vae_cli import load_run
    from vae_cli.datasets.batches import labelled_batches
    from vae_cli.evaluation.reconstruction import reconstruction_error

    run = load_run(job, which=checkpoint)
    test = run.split("test")
    return reconstruction_error(run.model, labelled_batches(test.images, test.labels, 500), "test", "").mse


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--out", default="/tmp/vae-sample-quality")
    p.add_argument("--images", help="folder for seed 0's sample grids (prior and GMM per model)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="last", help="which checkpoint of each job")
    args = p.parse_args()
    out = Path(args.out)
    rows = []
    for name in args.models:
        sweep = out / name
        seeds = ",".join(str(s) for s in range(args.seeds))
        if not (sweep / "summary.csv").exists():
            started = time.time()
            tool(
                "vae-train",
                [
                    "-m",
                    *COMMON,
                    *MODELS[name],
                    f"trainer.epochs={args.epochs}",
                    f"trainer.seed={seeds}",
                    f"hydra.sweep.dir={sweep}",
                ],
            )
            print(f"{name}: trained {args.seeds} seed(s) in {time.time() - started:.0f} s", file=sys.stderr)
        per_seed = []
        for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
            if not (job / "samplers" / "gmm.pt").exists():
                tool(
                    "vae-fit-sampler",
                    [str(job), "--sampler", "gmm", "--components", "10", "--checkpoint", args.checkpoint],
                )
            entries = json.loads((job / "eval.json").read_text()) if (job / "eval.json").exists() else {}
            for sampler in ("prior", "gmm"):
                entry = entries.get(f"samples_{sampler}", {})
                if entry.get("num_samples") != args.samples:
                    tool(
                        "vae-eval",
                        [
                            str(job),
                            "--samples",
                            str(args.samples),
                            "--sampler",
                            sampler,
                            "--checkpoint",
                            args.checkpoint,
                        ],
                    )
            entries = json.loads((job / "eval.json").read_text())
            metrics = json.loads((job / "metrics.json").read_text())
            per_seed.append(
                {
                    "prior": entries["samples_prior"],
                    "gmm": entries["samples_gmm"],
                    "mse": reconstruction_mse(job, args.checkpoint),
                    "wall": metrics["wall_time_s"],
                    "feature_network": entries["samples_prior"]["feature_network"],
                }
            )
            if args.images and job.name == "0":
                for sampler in ("prior", "gmm"):
                    pics = out / "pics" / name / sampler
                    tool(
                        "vae-sample",
                        [
                            str(job),
                            "--sampler",
                            sampler,
                            "--n",
                            "64",
                            "--out",
                            str(pics),
                            "--checkpoint",
                            args.checkpoint,
                        ],
                    )
                    target = Path(args.images) / f"{name}_{sampler}.png"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes((pics / "samples.png").read_bytes())
        rows.append((name, per_seed))
        print(f"{name}: done", file=sys.stderr)

    def cell(values: list[float], digits: int) -> str:
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"

    networks = {s["feature_network"] for _, per in rows for s in per}
    print(
        f"Fashion-MNIST, model=conv latent 16, {args.epochs} epochs, {args.seeds} seed(s) (mean (min–max)); "
        f"N={args.samples} samples against the 10,000 test images; features: {', '.join(sorted(networks))}\n"
    )
    print("| model | FID prior | FID GMM(10) | precision prior / GMM | recall prior / GMM | test MSE | train s |")
    print("|---|---|---|---|---|---|---|")
    for name, per in rows:

        def f(sampler: str, key: str, per: list = per) -> list[float]:
            return [x[sampler][key] for x in per]

        print(
            f"| {LABELS[name]} | {cell(f('prior', 'fid'), 2)} | {cell(f('gmm', 'fid'), 2)} | "
            f"{cell(f('prior', 'precision'), 3)} / {cell(f('gmm', 'precision'), 3)} | "
            f"{cell(f('prior', 'recall'), 3)} / {cell(f('gmm', 'recall'), 3)} | "
            f"{cell([x['mse'] for x in per], 4)} | {cell([x['wall'] for x in per], 0)} |"
        )
    (out / "results.json").write_text(json.dumps({n: p for n, p in rows}, indent=1, default=str))


if __name__ == "__main__":
    main()

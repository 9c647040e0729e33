"""What the per-epoch evaluation costs beside training, for every preset and architecture, by default.

Each configuration trains one epoch on a subset (``--subset`` images), validates on ``--val`` images and
estimates ``val/nll_iw`` on ``--iw`` images, with its own model, likelihood and objective. Its history.csv says
where the time went (train_seconds, val_seconds, nll_iw_seconds); from the per-image costs measured there this
prints what the default evaluation costs at the configuration's full size (55,000 training and 5,000 validation
images of Fashion-MNIST, the IW estimate every ``trainer.nll_iw_every_epochs`` epochs on the images
``trainer.nll_iw_images=null`` picks): the validation's share of an epoch and the IW estimate's share of the
training between two estimates.

    python benchmarks/eval_budget.py --out /tmp/eval-budget
"""

from __future__ import annotations

import argparse
import csv
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vae_cli.training.latent_monitor import IW_BUDGET, IW_LEAST_IMAGES  # noqa: E402

CONFIGS = {
    "fmnist_mlp": ["experiment=fmnist_mlp"],
    "fmnist_cb": ["experiment=fmnist_cb"],
    "fmnist_resnet": ["experiment=fmnist_resnet"],
    "fmnist_hvae": ["experiment=fmnist_hvae"],
    "beta_vae": ["experiment=beta_vae"],
    "conv": ["model=conv"],
    "iwae k=5": ["loss=iwae"],
    "vqvae": ["model=vqvae"],
}
FULL_TRAIN, FULL_VAL = 55_000, 5_000


def vae_train() -> str:
    local = Path(sys.executable).parent / "vae-train"
    return str(local) if local.exists() else "vae-train"


def measure(name: str, overrides: list[str], out: Path, args: argparse.Namespace) -> dict[str, float]:
    run_dir = out / name.replace(" ", "_").replace("=", "")
    if not (run_dir / "history.csv").is_file():
        cmd = [
            vae_train(),
            *overrides,
            "dataset=fashion_mnist",
            f"dataset.subset={args.subset}",
            f"dataset.eval_subset={args.val}",
            "trainer.epochs=1",
            f"trainer.nll_iw_images={args.iw}",
            "trainer.embedding=false",
            "trainer.progress=none",
            f"hydra.run.dir={run_dir}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{name}: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    (row,) = list(csv.DictReader((run_dir / "history.csv").open()))
    import yaml

    cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    t = cfg["trainer"]
    per_train = float(row["train_seconds"]) / args.subset
    per_val = float(row["val_seconds"]) / args.val
    k = int(row.get("nll_iw_k") or t["nll_iw_k"])
    per_iw_sample = (
        float(row["nll_iw_seconds"]) / (float(row["nll_iw_images"]) * k) if row.get("nll_iw_seconds") else 0.0
    )
    every = max(1, int(t["nll_iw_every_epochs"]))
    iw_images = min(FULL_VAL, max(IW_LEAST_IMAGES, math.ceil(IW_BUDGET * FULL_TRAIN * every / k)))
    epoch = per_train * FULL_TRAIN
    return {
        "epoch_s": epoch,
        "val_share": per_val * FULL_VAL / epoch,
        "iw_images": iw_images,
        "k": k,
        "every": every,
        "iw_share": per_iw_sample * k * iw_images / (epoch * every),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--subset", type=int, default=2000, help="training images measured")
    p.add_argument("--val", type=int, default=1000, help="validation images measured")
    p.add_argument("--iw", type=int, default=200, help="IW-estimate images measured")
    p.add_argument("--configs", nargs="*", default=list(CONFIGS))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        "| configuration | training epoch at full size (s) | validation / epoch | IW estimate: K, every, images | IW / training between estimates |"
    )
    print("|---|---|---|---|---|")
    for name in args.configs:
        r = measure(name, CONFIGS[name], args.out, args)
        print(
            f"| {name} | {r['epoch_s']:.0f} | {100 * r['val_share']:.1f}% | K={r['k']}, every {r['every']}, "
            f"{r['iw_images']:,} images | {100 * r['iw_share']:.1f}% |",
            flush=True,
        )


if __name__ == "__main__":
    main()

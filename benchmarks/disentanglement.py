"""Disentanglement on shapes2d, measured: a plain VAE, beta-VAE, beta-TCVAE and FactorVAE at one budget.

Each variant trains the same conv model (disentanglement_lib's encoder widths 32-32-64-64, 10 latents, batch 64)
on the same seeded subset of the shapes2d grid for the same epochs; then ``vae-eval --disentanglement`` scores
each (MIG, DCI, SAP, FactorVAE and BetaVAE scores) with the sizes given here, and the final latent traversals of
the four are put side by side.

    python benchmarks/disentanglement.py --out /tmp/vae-disentanglement
    python benchmarks/disentanglement.py --num-train 20000 --epochs 1 --metric-scale 0.1 --out /tmp/quick

Resumable: a finished run is not trained again, a scored one not scored again. Prints a markdown table; writes
results.json and traversals.png into --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VARIANTS: dict[str, list[str]] = {
    "vae": ["loss=elbo"],
    "beta_vae": ["loss=elbo", "loss.beta=4"],
    "beta_tcvae": ["loss=beta_tcvae", "loss.beta=6"],
    "factor_vae": ["loss=factor_vae", "loss.gamma=10"],
}
MODEL = ["model=conv", "model.conv_channels=[32,32,64,64]", "model.latent_dim=10", "trainer.batch_size=64"]
COMMON = ["trainer.embedding=false", "trainer.progress=none", "trainer.nll_iw_every_epochs=0"]
# disentanglement_lib's sample sizes; --metric-scale multiplies the vote and classifier sizes.
REFERENCE = {
    "mig.num_train": 10_000,
    "dci.num_train": 10_000,
    "dci.num_test": 5_000,
    "sap.num_train": 10_000,
    "sap.num_test": 5_000,
    "factor_vae.num_train": 10_000,
    "factor_vae.num_eval": 5_000,
    "factor_vae.num_variance_estimate": 10_000,
    "beta_vae.num_train": 10_000,
    "beta_vae.num_eval": 5_000,
}
SHOWN = {
    "disentanglement/mig": "MIG",
    "disentanglement/dci_disentanglement": "DCI D",
    "disentanglement/dci_completeness": "DCI C",
    "disentanglement/dci_informativeness_test": "DCI I",
    "disentanglement/sap": "SAP",
    "disentanglement/factor_vae_score": "FactorVAE",
    "disentanglement/beta_vae_score": "BetaVAE",
}


def tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def run(cmd: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--num-train", type=int, default=100_000, help="grid points in the training split")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metric-scale", type=float, default=0.2, help="x the reference sample sizes (MIG keeps 10k)")
    p.add_argument("--out", type=Path, default=Path("/tmp/vae-disentanglement"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = {k: v if k.startswith("mig") else max(100, int(v * args.metric_scale)) for k, v in REFERENCE.items()}
    results = []
    for name in args.variants:
        run_dir = args.out / name
        train_s = eval_s = 0.0
        if not (run_dir / "metrics.json").is_file():
            resume = [f"trainer.resume={run_dir}"] if (run_dir / "checkpoints" / "last.pt").is_file() else []
            train_s = run(
                [
                    tool("vae-train"),
                    "dataset=shapes2d",
                    f"dataset.num_train={args.num_train}",
                    *MODEL,
                    *VARIANTS[name],
                    *COMMON,
                    f"trainer.epochs={args.epochs}",
                    f"trainer.seed={args.seed}",
                    f"hydra.run.dir={run_dir}",
                    *resume,
                ]
            )
        eval_file = run_dir / "eval.json"
        if not (eval_file.is_file() and "disentanglement" in json.loads(eval_file.read_text())):
            sets = [a for k, v in sizes.items() for a in ("--set", f"{k}={v}")]
            eval_s = run([tool("vae-eval"), str(run_dir), "--disentanglement", "--checkpoint", "last", *sets])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        entry = json.loads(eval_file.read_text())["disentanglement"]
        results.append(
            {
                "variant": name,
                "overrides": " ".join(VARIANTS[name]),
                "scores": entry["scores"],
                "test_elbo": metrics.get("test/elbo"),
                "train_wall_s": metrics.get("wall_time_s", train_s),
                "score_wall_s": eval_s or sum(entry["seconds"].values()),
                "metric_seconds": entry["seconds"],
            }
        )
        print(f"{name}: {entry['scores']}", file=sys.stderr)
    (args.out / "results.json").write_text(json.dumps({"sizes": sizes, "results": results}, indent=2) + "\n")
    print(
        f"\nshapes2d, {args.num_train} training grid points, {args.epochs} epochs, seed {args.seed}; conv 32-32-64-64, "
        f"10 latents, batch 64; metrics on the encoder mean, sizes {sizes}\n"
    )
    print("| variant | overrides | " + " | ".join(SHOWN.values()) + " | test ELBO | train s | score s |")
    print("|---|---|" + "---|" * (len(SHOWN) + 3))
    for r in results:
        cells = " | ".join(f"{r['scores'].get(k, float('nan')):.3f}" for k in SHOWN)
        print(
            f"| {r['variant']} | `{r['overrides']}` | {cells} | {r['test_elbo']:.1f} | {r['train_wall_s']:.0f} | "
            f"{r['score_wall_s']:.0f} |"
        )
    traversals(args.out, [r["variant"] for r in results])
    return 0


def traversals(out: Path, names: list[str]) -> None:
    """The last latent traversal grid of each run (dims sorted by KL, -3..3), side by side with a title each."""
    from PIL import Image, ImageDraw

    grids = []
    for name in names:
        files = sorted((out / name / "images").glob("latent_traversals_epoch*.png"))
        if files:
            grids.append((name, Image.open(files[-1]).convert("RGB")))
    if not grids:
        return
    pad, title = 8, 18
    width = sum(g.width for _, g in grids) + pad * (len(grids) + 1)
    height = max(g.height for _, g in grids) + title + 2 * pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x = pad
    for name, grid in grids:
        draw.text((x, pad // 2), name, fill="black")
        canvas.paste(grid, (x, title + pad))
        x += grid.width + pad
    canvas.save(out / "traversals.png")


if __name__ == "__main__":
    sys.exit(main())

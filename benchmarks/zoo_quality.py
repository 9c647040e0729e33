"""Model-zoo quality on real data: test IW-NLL (K = 1000) of each variant at one fixed budget, several seeds.

Dynamically binarized Fashion-MNIST, the classic 784-400-20 MLP, Adam 1e-3, batch 128, the same epochs for every
variant; each variant is one ``vae-train -m ... trainer.seed=0,1,2`` sweep (so a killed benchmark run picks up where it
stopped: finished jobs are kept), then ``vae-compare --eval --k 1000`` evaluates every job on the test split.

    python benchmarks/zoo_quality.py --epochs 10 --seeds 3 --out /tmp/vae-zoo-quality
    python benchmarks/zoo_quality.py --variants elbo iwae5 vamp --epochs 2 --seeds 1 --k 100   # a quick look
    python benchmarks/zoo_quality.py --group zoo3 --epochs 10 --seeds 3     # Model zoo III: the posteriors

Prints a markdown table: test -log p(x) (IW-K, nats) mean and range over the seeds, test ELBO, seconds per epoch
and the wall time of each variant.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS: dict[str, list[str]] = {
    "elbo": [],
    "iwae5": ["loss=iwae", "loss.k=5"],
    "vamp": ["prior=vamp", "prior.components=500"],
    "mog": ["prior=mog", "prior.components=10"],
    "beta_tcvae": ["loss=beta_tcvae"],  # its defaults: beta 6, alpha = gamma = 1, minibatch-weighted sampling
    "iwae50": ["loss=iwae", "loss.k=50"],  # last: about 50 decoder passes a step, the longest by far
    # Model zoo III (--group zoo3): posteriors, beside the Gaussian at the same latent size.
    "gauss2": ["model.latent_dim=2"],
    "gauss10": ["model.latent_dim=10"],
    "gauss20": [],
    "planar10": ["posterior=planar", "posterior.flows=10"],
    "iaf4": ["posterior=iaf", "posterior.flows=4"],
    # The affine step without a context (pythae's IAF; posterior.step=affine): beside the paper's gated one.
    "iaf4_affine": ["posterior=iaf", "posterior.flows=4", "posterior.step=affine", "posterior.context=0"],
    "vmf10": ["posterior=vmf", "prior=uniform_sphere", "model.latent_dim=10"],
    "vmf20": ["posterior=vmf", "prior=uniform_sphere"],
    "poincare2": ["posterior=wrapped_normal", "prior=wrapped_normal", "model.latent_dim=2"],
    "poincare10": ["posterior=wrapped_normal", "prior=wrapped_normal", "model.latent_dim=10"],
    "piwae": ["loss=piwae", "loss.m=2", "loss.k=4"],
    "ciwae": ["loss=ciwae", "loss.k=8", "loss.beta=0.05"],
    "hvae": ["loss=hvae", "loss.leapfrog_steps=5", "loss.tempering=0.5"],
}
GROUPS = {
    "zoo1": ["elbo", "iwae5", "vamp", "mog", "beta_tcvae", "iwae50"],
    "zoo3": [
        "gauss20",
        "planar10",
        "iaf4",
        "iaf4_affine",
        "gauss10",
        "vmf10",
        "vmf20",
        "gauss2",
        "poincare2",
        "poincare10",
        "piwae",
        "ciwae",
        "hvae",
    ],
}
BASE = [
    "dataset=fashion_mnist",
    "dataset.binarize=dynamic",
    "trainer.nll_iw_every_epochs=0",  # vae-compare --eval measures the test split once, with K = --k
    "trainer.embedding=false",
    "trainer.progress=none",
]


def tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def run_variant(out: Path, name: str, epochs: int, seeds: int, k: int, extra: list[str], first_seed: int = 0) -> dict:
    sweep = out / name
    seed_axis = "trainer.seed=" + ",".join(str(s) for s in range(first_seed, seeds))
    args = ["-m", *BASE, *VARIANTS[name], *extra, f"trainer.epochs={epochs}", seed_axis, f"hydra.sweep.dir={sweep}"]
    started = time.perf_counter()
    train = subprocess.run([tool("vae-train"), *args], capture_output=True, text=True)
    if train.returncode != 0:
        raise SystemExit(f"{name}: vae-train failed:\n{train.stderr[-3000:]}")
    compare = subprocess.run(
        [tool("vae-compare"), str(sweep), "--eval", "--k", str(k), "--metric", "eval/test/nll_iw"],
        capture_output=True,
        text=True,
    )
    if compare.returncode != 0:
        raise SystemExit(f"{name}: vae-compare failed:\n{compare.stderr[-3000:]}")
    wall = time.perf_counter() - started
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    nll = [float(r["eval/test/nll_iw"]) for r in rows]
    per_epoch = []
    for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        metrics = json.loads((job / "metrics.json").read_text())
        per_epoch.append(55_000 / metrics["images_per_sec"])
    return {
        "variant": name,
        "overrides": " ".join(VARIANTS[name]) or "(defaults)",
        "nll": nll,
        "elbo": [float(r["eval/test/elbo"]) for r in rows],
        "s_per_epoch": statistics.median(per_epoch),
        "wall_s": wall,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--group", choices=list(GROUPS), default="zoo1", help="the variants of one zoo issue")
    p.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS), help="these instead of --group's")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--k", type=int, default=1000, help="importance samples of the test IW-NLL")
    p.add_argument(
        "--first-seed", type=int, default=0, help="seeds first-seed..seeds-1 (more seeds later, in another --out)"
    )
    p.add_argument("--out", type=Path, default=Path("/tmp/vae-zoo-quality"))
    p.add_argument(
        "--extra", nargs="*", default=[], help="more overrides for every variant (e.g. trainer.precision=bf16)"
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.variants or GROUPS[args.group]:
        result = run_variant(args.out, name, args.epochs, args.seeds, args.k, args.extra, args.first_seed)
        results.append(result)
        print(f"{name}: nll {statistics.mean(result['nll']):.2f} ({result['wall_s']:.0f} s)", file=sys.stderr)
    print(
        f"\nFashion-MNIST, dynamically binarized; MLP 784-400-20; {args.epochs} epochs; seeds {args.first_seed}-{args.seeds - 1}; "
        f"test -log p(x) by IW-{args.k}\n"
    )
    print("| variant | overrides | test −log p(x), IW-K (nats): mean (min–max) | test ELBO | s/epoch | wall s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        nll, elbo = r["nll"], r["elbo"]
        print(
            f"| {r['variant']} | `{r['overrides']}` | {statistics.mean(nll):.2f} ({min(nll):.2f}–{max(nll):.2f}) | "
            f"{statistics.mean(elbo):.2f} | {r['s_per_epoch']:.1f} | {r['wall_s']:.0f} |"
        )
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

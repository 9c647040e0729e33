"""vae-eval and vae-sample on the ResNet VAE, the hierarchical VAE, the VQ-VAE and its PixelCNN prior: wall time of this
installation against another (``--baseline-bin``, e.g. an older checkout's .venv/bin), side by side.

Each installation trains its own small runs with the same overrides (one epoch on 640 Fashion-MNIST images: the
models' sizes are the presets' defaults, which is what the tools' time depends on), then the tools run on them
alternately, ``--reps`` times each; the table gives medians and the ratio.

    python benchmarks/eval_paths.py --baseline-bin /work/baseline/.venv/bin --out /tmp/eval-paths
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

TRAIN = ["trainer.epochs=1", "trainer.embedding=false"]
DATA = ["dataset=fashion_mnist", "dataset.subset=640"]
RUNS = {
    "resnet": [*DATA, "model=resnet"],
    "hvae": [*DATA, "model=hvae"],
    "vqvae": [*DATA, "model=vqvae"],
    "pixelcnn": ["prior=pixelcnn", "prior.vqvae={out}/vqvae"],  # the VQ-VAE run's data
}


def run(cmd: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--baseline-bin", type=Path, required=True, help="the other installation's bin folder")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--num-images", type=int, default=1000)
    args = p.parse_args()
    here = Path(sys.executable).parent
    installs = {"this": here, "baseline": args.baseline_bin}
    for name, bin_dir in installs.items():
        out = args.out / name
        for run_name, overrides in RUNS.items():
            run_dir = out / run_name
            if not (run_dir / "metrics.json").is_file():
                extra = [o.format(out=out) for o in overrides]
                run([str(bin_dir / "vae-train"), *TRAIN, *extra, f"hydra.run.dir={run_dir}"])
    times: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(args.reps):
        for run_name in RUNS:
            for name, bin_dir in installs.items():
                run_dir = args.out / name / run_name
                evaluate = [str(bin_dir / "vae-eval"), str(run_dir), "--k", str(args.k), "--num-images"]
                times.setdefault((run_name, "vae-eval", name), []).append(
                    run([*evaluate, str(args.num_images), "--no-write"])
                )
                pictures = args.out / name / f"{run_name}-pictures"
                # A VQ-VAE without its prior has nothing to sample but uniform codes (its decoder's time).
                uniform = ["--uniform-codes"] if run_name == "vqvae" else []
                times.setdefault((run_name, "vae-sample", name), []).append(
                    run([str(bin_dir / "vae-sample"), str(run_dir), "--out", str(pictures), "--n", "64", *uniform])
                )
    print(
        f"vae-eval --k {args.k} --num-images {args.num_images} --no-write; vae-sample --n 64 (median of {args.reps}, s)"
    )
    print("| run | tool | this | baseline | baseline / this |")
    print("|---|---|---|---|---|")
    for run_name in RUNS:
        for tool in ("vae-eval", "vae-sample"):
            this = statistics.median(times[(run_name, tool, "this")])
            base = statistics.median(times[(run_name, tool, "baseline")])
            print(f"| {run_name} | {tool} | {this:.1f} | {base:.1f} | {base / this:.2f}× |")


if __name__ == "__main__":
    main()

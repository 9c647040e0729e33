"""Model zoo II, measured: each preset trained with its own config, then test -log p(x) by IW-K (vae-eval), bits/dim
where the likelihood makes them meaningful, wall times, and the validation curves against wall-clock time.

    python benchmarks/zoo_presets.py --out /tmp/vae-presets                       # every preset, as configured
    python benchmarks/zoo_presets.py --presets fmnist_mlp fmnist_hvae --epochs fmnist_hvae=5 --k 1000 --num-images 2000

Resumable: a preset whose run finished is not trained again, an unfinished one is resumed, an evaluation already
in eval.json is kept. The colour preset trains on a generated image folder (benchmarks/make_colour_shapes.py) since
CIFAR-10 cannot be downloaded everywhere. Prints a markdown table; writes curves.png (val/elbo per image, the
bound on -log p(x), against wall-clock minutes) and results.json into --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRESETS = ["fmnist_mlp", "fmnist_cb", "fmnist_resnet", "fmnist_hvae", "colour_logistic"]
COMMON = ["trainer.embedding=false", "trainer.progress=none"]


def tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def train(out: Path, preset: str, epochs: int | None, extra: list[str]) -> Path:
    run_dir = out / preset
    if (run_dir / "metrics.json").is_file():
        return run_dir
    args = [f"experiment={preset}", *COMMON, *extra]
    if preset == "colour_logistic":
        folder = out / "colour_shapes"
        if not folder.is_dir():
            run([sys.executable, str(REPO / "benchmarks" / "make_colour_shapes.py"), "--out", str(folder)])
        args.append(f"dataset.root={folder}")
    if epochs is not None:
        args.append(f"trainer.epochs={epochs}")
    if (run_dir / "checkpoints" / "last.pt").is_file():
        run([tool("vae-train"), f"trainer.resume={run_dir}", *([f"trainer.epochs={epochs}"] if epochs else [])])
    else:
        run([tool("vae-train"), *args, f"hydra.run.dir={run_dir}"])
    return run_dir


def evaluate(run_dir: Path, k: int, num_images: int) -> dict:
    entry = f"test_first{num_images}"
    path = run_dir / "eval.json"
    existing = json.loads(path.read_text()) if path.is_file() else {}
    if entry not in existing and "test" not in existing:
        run([tool("vae-eval"), str(run_dir), "--k", str(k), "--num-images", str(num_images)])
        existing = json.loads(path.read_text())
    return existing.get(entry) or existing["test"]


def curve(run_dir: Path) -> list[tuple[float, float]]:
    """(minutes since the run's first event, val -ELBO) per epoch, from the run's TensorBoard events (a resumed
    run's later event files continue the clock of the first)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if "val/elbo" not in acc.Tags().get("scalars", []):
        return []
    start = acc.FirstEventTimestamp()
    return [((e.wall_time - start) / 60, -e.value) for e in acc.Scalars("val/elbo")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS)
    p.add_argument("--out", type=Path, default=Path("/tmp/vae-presets"))
    p.add_argument("--epochs", nargs="*", default=[], help="preset=N: train that preset for N epochs instead")
    p.add_argument("--k", type=int, default=1000, help="importance samples of the test IW-NLL")
    p.add_argument("--num-images", type=int, default=2000, help="test images evaluated (the split's first N)")
    p.add_argument("--extra", nargs="*", default=[], help="more overrides for every preset")
    args = p.parse_args()
    epochs = {k: int(v) for k, v in (item.split("=") for item in args.epochs)}
    args.out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    for preset in args.presets:
        started = time.perf_counter()
        run_dir = train(args.out, preset, epochs.get(preset), args.extra)
        trained = time.perf_counter() - started
        metrics = json.loads((run_dir / "metrics.json").read_text())
        result = evaluate(run_dir, args.k, args.num_images)
        rows.append(
            {
                "preset": preset,
                "epochs": metrics["epochs"],
                "train_min": metrics["wall_time_s"] / 60,
                "images_per_sec": metrics["images_per_sec"],
                "nll": result["nll_iw"],
                "elbo": result["elbo"],
                "bits_per_dim": result["bits_per_dim"],
                "note": result.get("bits_per_dim_note", ""),
                "num_images": result["num_images"],
                "k": result["k"],
                "eval_min": result["seconds"] / 60,
                "kl_per_layer": result.get("kl_per_layer"),
                "active_units": result["active_units"],
            }
        )
        curves[preset] = curve(run_dir)
        print(f"{preset}: nll {result['nll_iw']:.2f} ({trained:.0f} s this call)", file=sys.stderr)
    (args.out / "results.json").write_text(json.dumps({"rows": rows, "curves": curves}, indent=2))
    from vae_cli.evaluation.plots import line_plot, save_png

    shown = {name: pts for name, pts in curves.items() if pts and name.startswith("fmnist") and name != "fmnist_cb"}
    if shown:
        plot = line_plot(shown, "binarized Fashion-MNIST: val -ELBO", "wall-clock minutes", "nats per image")
        save_png(plot, args.out / "curves.png")
    print(f"\nTest split's first {args.num_images} images, -log p(x) by IW-{args.k}; `vae-train experiment=<preset>`\n")
    print(
        "| preset | epochs | train (min) | img/s | test −log p(x), IW-K (nats) | test −ELBO | bits/dim | eval (min) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['preset']} | {r['epochs']} | {r['train_min']:.1f} | {r['images_per_sec']:.0f} | {r['nll']:.2f} | "
            f"{-r['elbo']:.2f} | {r['bits_per_dim']:.3f} | {r['eval_min']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Speed benchmark: ``vae-train`` side by side with the classic PyTorch VAE example and a bare eager loop.

    python benchmarks/speed.py                                   # every suite (~15 min on 2 CPU cores)
    python benchmarks/speed.py --suite mlp --reps 3 --epochs 10  # one suite
    python benchmarks/speed.py --smoke                           # seconds: proves the script works

Every contender runs in its own process (so peak RSS is its own), one after another, and the order rotates
each repetition, so load from other processes on a shared machine falls on all contenders alike. Figures are
medians over repetitions (epoch times: over every epoch of every repetition); ratios are taken between
contenders measured in the same run. Suites:

- ``mlp`` / ``conv``: (a) classic example design, (b) bare eager loop on preloaded tensors, (c) ``vae-train``
  (fp32 default, and ``trainer.precision=bf16``), same model, batch 128, Adam 1e-3, all 60k training images
  (``dataset.val_size=0``), 10k test images. On CUDA (when present) also graphs and compile variants.
- ``ablation``: the bare loop with one speed feature added at a time: what each gives.
- ``startup``: ``vae-train --help``, ``import torch``, and launch -> first optimizer step of ``vae-train``.
- ``scaling``: ``vae-train`` epoch time and peak RSS versus training-set size and batch size.

Results are printed as Markdown tables and written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vae_cli.config import CpuWait
from vae_cli.cpu_threads import choose_wait_policy

REPO = Path(__file__).resolve().parents[1]
CONTENDERS = REPO / "benchmarks" / "contenders.py"


@dataclass
class Run:
    """One process: what it measured, and what the OS says about it."""

    epoch_times: list[float]
    test_loss: float
    n_train: int
    peak_rss_mb: float
    wall_s: float
    first_step_s: float | None = None
    extra: dict = field(default_factory=dict)


def vae_train_exe() -> str:
    candidate = Path(sys.executable).parent / "vae-train"
    return str(candidate) if candidate.is_file() else "vae-train"


ENV: dict[str, str] = dict(os.environ)


def run_process(
    cmd: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> tuple[str, float, float, float]:
    """Run ``cmd``; returns (stdout, wall seconds, peak RSS in MB of that process alone, launch Unix time)."""
    with tempfile.TemporaryFile("w+") as out:
        launched = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True, env={**ENV, **(env or {})}
        )
        try:
            # wait4 gives this child's own rusage (ru_maxrss in KiB on Linux).
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    if wall > timeout:
        print(f"  warning: {cmd[1]} took {wall:.0f}s (> {timeout:.0f}s)", file=sys.stderr)
    return text, wall, usage.ru_maxrss / 1024, launched


def run_contender(
    kind: str,
    args: argparse.Namespace,
    model: str,
    device: str,
    extra: list[str],
    env: dict[str, str] | None = None,
    seed: int = 0,
) -> Run:
    cmd = [
        sys.executable,
        str(CONTENDERS),
        kind,
        f"--data-root={args.data_root}",
        f"--model={model}",
        f"--device={device}",
        f"--epochs={args.epochs if model == 'mlp' else args.conv_epochs}",
        f"--subset={args.subset}",
        f"--seed={seed}",
        *extra,
    ]
    text, wall, rss, launched = run_process(cmd, REPO, args.timeout, env)
    line = next(ln for ln in text.splitlines() if ln.startswith("RESULT "))
    r = json.loads(line[len("RESULT ") :])
    first = r["first_step"] - launched if r.get("first_step") else None
    return Run(r["epoch_times"], r["test_loss"], r["n_train"], rss, wall, first, r)


def run_vae_train(args: argparse.Namespace, overrides: list[str], seed: int = 0) -> Run:
    n_train = _n_train(args, overrides)
    if not any(o.startswith("dataset.subset=") for o in overrides) and args.subset:
        overrides = [*overrides, f"dataset.subset={args.subset}"]
    with tempfile.TemporaryDirectory(prefix="vae-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [
            vae_train_exe(),
            "dataset=fashion_mnist",
            f"dataset.root={args.data_root}",
            "dataset.val_size=0",  # all 60k images train, as in the other contenders
            f"hydra.run.dir={run_dir}",
            f"trainer.seed={seed}",
            *overrides,
        ]
        _, wall, rss, launched = run_process(cmd, Path(tmp), args.timeout)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
        history = ckpt.get("train_state", ckpt)["history"]
        log_text = (run_dir / "vae-train.log").read_text()
    times = [n_train / h["images_per_sec"] for h in history]
    found = re.search(r"first optimizer step done at unix time ([0-9.]+)", log_text)
    first = float(found.group(1)) - launched if found else None
    return Run(times, metrics["test/loss"], n_train, rss, wall, first, {})


def _n_train(args: argparse.Namespace, overrides: list[str]) -> int:
    for o in overrides:
        if o.startswith("dataset.subset="):
            return int(o.split("=", 1)[1])
    return args.subset or 60_000


# ----- reporting ----------------------------------------------------------------------------------------------
def median_epoch(runs: list[Run]) -> float:
    return statistics.median(t for r in runs for t in r.epoch_times)


def fmt_losses(runs: list[Run]) -> str:
    losses = sorted(r.test_loss for r in runs)
    med = statistics.median(losses)
    return f"{med:.2f}" + (f" ({losses[0]:.2f}–{losses[-1]:.2f})" if len(losses) > 1 else "")


def table(title: str, results: dict[str, list[Run]], reference: str, floor: str | None) -> str:
    ref = median_epoch(results[reference])
    base = median_epoch(results[floor]) if floor else None
    head = f"| contender | s/epoch (median) | images/s | test loss, median (min–max) | peak RSS MB | wall s/run | × vs {reference} |"
    if floor:
        head += f" ÷ {floor} |"
    lines = [f"### {title}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for name, runs in results.items():
        ep = median_epoch(runs)
        n = runs[0].n_train
        row = (
            f"| {name} | {ep:.3f} | {n / ep:,.0f} | {fmt_losses(runs)} | "
            f"{statistics.median(r.peak_rss_mb for r in runs):.0f} | {statistics.median(r.wall_s for r in runs):.1f} | "
            f"{ref / ep:.2f}× |"
        )
        if floor and base:
            row += f" {ep / base:.2f} |"
        lines.append(row)
    return "\n".join(lines)


def interleaved(contenders: dict[str, callable], reps: int) -> dict[str, list[Run]]:
    """Run every contender ``reps`` times, rotating the order each repetition. Repetition ``r`` runs every
    contender with seed ``r``, so the test-loss range is seed noise, comparable across contenders."""
    names = list(contenders)
    results: dict[str, list[Run]] = {n: [] for n in names}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            t0 = time.perf_counter()
            run = contenders[name](rep)
            results[name].append(run)
            print(
                f"  rep {rep + 1}/{reps} {name}: {statistics.median(run.epoch_times):.3f} s/epoch, "
                f"test loss {run.test_loss:.2f}, {run.peak_rss_mb:.0f} MB ({time.perf_counter() - t0:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return results


# ----- suites -------------------------------------------------------------------------------------------------
def suite_model(args: argparse.Namespace, model: str, device: str) -> str:
    epochs = args.epochs if model == "mlp" else args.conv_epochs
    common = [f"model={model}", f"trainer.epochs={epochs}", f"trainer.device={device}"]
    c: dict[str, callable] = {
        "(a) classic": lambda r: run_contender("classic", args, model, device, [], seed=r),
        "(b) bare": lambda r: run_contender("bare", args, model, device, [], seed=r),
        "(c) vae-train": lambda r: run_vae_train(args, common, r),
        "vae-train bf16": lambda r: run_vae_train(args, [*common, "trainer.precision=bf16"], r),
    }
    if device == "cuda":
        c["vae-train bf16 graphs"] = lambda r: run_vae_train(
            args, [*common, "trainer.precision=bf16", "trainer.cuda_graphs=true"], r
        )
        c["vae-train bf16 compile graphs"] = lambda r: run_vae_train(
            args, [*common, "trainer.precision=bf16", "trainer.compile=true", "trainer.cuda_graphs=true"], r
        )
    if args.with_compile and device != "cuda":
        c["vae-train bf16 compile"] = lambda r: run_vae_train(
            args, [*common, "trainer.precision=bf16", "trainer.compile=true"], r
        )
    print(f"suite {model} on {device}: {epochs} epochs, {args.reps} reps", file=sys.stderr)
    res = interleaved(c, args.reps)
    title = f"{model.upper()} on {device}, batch 128, {epochs} epochs"
    return table(title, res, "(a) classic", "(b) bare")


def suite_ablation(args: argparse.Namespace) -> str:
    steps = {
        "bare: textbook (foreach Adam, F.bce_with_logits)": [],
        "+ fused Adam": ["--fused-adam"],
        "+ fused Adam + fast BCE (= vae-train fp32 step)": ["--fused-adam", "--fast-bce"],
        "+ bf16 autocast (= vae-train bf16 step)": ["--fused-adam", "--fast-bce", "--bf16"],
        "bf16 without the fused Adam / fast BCE": ["--bf16"],
    }
    other = "ACTIVE" if ENV["OMP_WAIT_POLICY"] == "PASSIVE" else "PASSIVE"
    flipped = {"OMP_WAIT_POLICY": other}
    active = f"textbook with OMP_WAIT_POLICY={other} (the other CPU wait policy)"
    if args.with_compile:
        steps["+ torch.compile (bf16)"] = ["--fused-adam", "--fast-bce", "--bf16", "--compile"]
    sub = argparse.Namespace(**{**vars(args), "epochs": args.ablation_epochs})
    print(f"suite ablation: {args.ablation_epochs} epochs, {args.reps} reps", file=sys.stderr)
    runs = {k: (lambda r, e=e: run_contender("bare", sub, "mlp", "cpu", e, seed=r)) for k, e in steps.items()}
    runs[active] = lambda r: run_contender("bare", sub, "mlp", "cpu", [], flipped, seed=r)
    res = interleaved(runs, args.reps)
    first = next(iter(steps))
    return table(f"What each step feature gives (MLP, CPU, {args.ablation_epochs} epochs)", res, first, None)


def suite_startup(args: argparse.Namespace) -> str:
    reps = max(3, args.reps)
    help_s = [run_process([vae_train_exe(), "--help"], REPO, args.timeout)[1] for _ in range(reps)]
    torch_s = [run_process([sys.executable, "-c", "import torch"], REPO, args.timeout)[1] for _ in range(reps)]
    firsts = []
    for _ in range(reps):
        r = run_vae_train(args, ["trainer.epochs=1", "dataset.subset=1280"])
        firsts.append(r.first_step_s)
    return "\n".join(
        [
            f"### Start-up (median of {reps})",
            "",
            "| what | seconds |",
            "|---|---|",
            f"| `vae-train --help` | {statistics.median(help_s):.2f} |",
            f"| `python -c 'import torch'` (for scale) | {statistics.median(torch_s):.2f} |",
            f"| `vae-train dataset=fashion_mnist`: launch → first optimizer step | {statistics.median(firsts):.2f} |",
        ]
    )


def suite_scaling(args: argparse.Namespace) -> str:
    sizes = [1280, 2560] if args.smoke else [10_000, 20_000, 40_000, 60_000]
    batches = [128, 512] if args.smoke else [64, 128, 256, 512, 1024]
    lines = [
        "### Scaling (vae-train, fp32, 1 epoch per run, in-memory data)",
        "",
        "| train images | batch | s/epoch | images/s | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    runs = [(n, 128) for n in sizes] + [(sizes[-1], b) for b in batches if b != 128]
    for n, b in runs:
        r = run_vae_train(args, ["trainer.epochs=1", f"dataset.subset={n}", f"trainer.batch_size={b}"])
        ep = r.epoch_times[0]
        lines.append(f"| {n:,} | {b} | {ep:.3f} | {n / ep:,.0f} | {r.peak_rss_mb:.0f} |")
        print(f"  scaling n={n} batch={b}: {ep:.3f} s, {r.peak_rss_mb:.0f} MB", file=sys.stderr, flush=True)
    return "\n".join(lines)


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


def stage_data(root: Path) -> None:
    """Uncompressed IDX files in ``<root>/FashionMNIST/raw/``: what torchvision's class (contenders a, b) reads,
    and where ``vae-train dataset.root=<root>`` looks first."""
    raw = root / "FashionMNIST" / "raw"
    for name in IDX_FILES:
        target = raw / name
        if target.exists():
            continue
        source = next((p for p in (raw / f"{name}.gz", SYSTEM_FASHION / f"{name}.gz") if p.is_file()), None)
        if source is None:
            raise SystemExit(f"benchmark: {name}(.gz) is in neither {raw} nor {SYSTEM_FASHION}; see README (Data).")
        raw.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".partial")
        with gzip.open(source, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, target)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--suite",
        nargs="+",
        default=["mlp", "conv", "ablation", "startup", "scaling"],
        choices=["mlp", "conv", "ablation", "startup", "scaling"],
    )
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10, help="MLP epochs per run (the classic budget)")
    p.add_argument("--conv-epochs", type=int, default=2)
    p.add_argument("--ablation-epochs", type=int, default=2)
    p.add_argument("--subset", type=int, default=0, help="train on the first N images (0 = all 60k)")
    p.add_argument("--with-compile", action="store_true", help="add torch.compile contenders (~40 s compile each)")
    p.add_argument("--data-root", default=str(REPO / "data"))
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument(
        "--cpu-wait",
        choices=["auto", "spin", "sleep"],
        default="auto",
        help="one OpenMP wait policy for every contender: spin (ACTIVE), sleep (PASSIVE), or auto: chosen once "
        "from the machine's load, as vae-train's trainer.cpu_wait=auto does",
    )
    p.add_argument("--out", default="", help="also write the tables and raw runs as JSON here")
    p.add_argument("--smoke", action="store_true", help="tiny: 1 rep, 1 epoch, 1280 images; proves it runs")
    args = p.parse_args()
    if args.smoke:
        args.reps, args.epochs, args.conv_epochs, args.ablation_epochs, args.subset = 1, 1, 1, 1, 1280
    args.data_root = str(Path(args.data_root).resolve())
    load = os.getloadavg()[0]
    policy = choose_wait_policy(CpuWait(args.cpu_wait), load, os.cpu_count() or 1)
    ENV["OMP_WAIT_POLICY"] = policy or "ACTIVE"  # explicit, so every contender (vae-train too) gets the same
    ENV.pop("GOMP_SPINCOUNT", None)
    stage_data(Path(args.data_root))

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    info = (
        f"torch {torch.__version__}, {os.cpu_count()} CPU threads, devices: {', '.join(devices)}, "
        f"OMP_WAIT_POLICY={ENV['OMP_WAIT_POLICY']} (--cpu-wait={args.cpu_wait}, load {load:.1f}); "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(info, file=sys.stderr)
    sections = [f"_{info}_"]
    for suite in args.suite:
        if suite in ("mlp", "conv"):
            sections += [suite_model(args, suite, d) for d in devices]
        elif suite == "ablation":
            sections.append(suite_ablation(args))
        elif suite == "startup":
            sections.append(suite_startup(args))
        elif suite == "scaling":
            sections.append(suite_scaling(args))
        print("\n\n".join(sections[-1:]), flush=True)
        print(flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"info": info, "tables": sections}, indent=2) + "\n")


if __name__ == "__main__":
    main()

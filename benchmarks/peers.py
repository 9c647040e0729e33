"""Peer benchmark: vae-cli against pythae 0.1.2 on every model both have, side by side, near the hardware floor.

    python benchmarks/peers.py                                  # every shared model, 3 epochs, 2 reps (~35 min)
    python benchmarks/peers.py --models vae iwae vamp --reps 3  # some rows
    python benchmarks/peers.py --models iaf planar --compiled-too  # and vae-cli with trainer.compile=true
    python benchmarks/peers.py --smoke                          # a minute: proves the script runs

pythae is installed by this script into a virtual environment of its own (``--pythae-venv``, created on first use
and reused), with the torch of the running interpreter pinned, so both contenders run the same torch build and the
same BLAS/oneDNN. Each row trains the same model on the same data the same way: Fashion-MNIST binarized by the
threshold 0.5 (``dataset.binarize=static_threshold``; pythae gets the same tensor), all 60k training images,
the classic MLP 784-400-20 (ReLU, Bernoulli likelihood), batch 128, Adam lr 1e-3, the same epochs and the
hyperparameters of the row (``ROWS``: vae-cli's overrides beside pythae's config in peer_pythae.py).

Per contender and repetition, two processes: the training (pythae's ``TrainingPipeline`` as its users run it;
``vae-train`` with its default views, logs and checkpoints), whose launch-to-exit wall time is the whole-process
time, and the evaluation: the test negative log-likelihood, importance-sampled with K samples per image on the first
N test images (pythae's ``get_nll``, vae-cli's ``vae-eval --k K --num-images N``), so no speed is bought with
quality. Contenders alternate within a repetition and the order rotates between repetitions; figures are medians
(epoch times: over every epoch after the first of every repetition, the first carries one-time warm-up).

The floor: this machine's sustained GEMM rate (fp32 and bf16, 1024x1024 matmuls in this process) and each model's
matmul FLOPs per step (torch's FlopCounterMode on one forward + backward of a batch of 128, in each contender's own
code), so each contender's step is reported as a fraction of the time its matmuls would take at that rate.

The tests do not run it (the first run installs pythae and a torch wheel into its environment); they check its
FLOP counts against the closed form and that every row composes (tests/unit/test_peers_benchmark.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed
from speed import run_process, stage_data, vae_train_exe

from vae_cli.config.enums import CpuWait
from vae_cli.process.cpu_threads import USER_KEYS, MachineLoad, choose_wait_env, describe, read_machine_load

REPO = Path(__file__).resolve().parents[1]
PYTHAE_RUNNER = REPO / "benchmarks" / "peer_pythae.py"
PYTHAE_VERSION = "0.1.2"
SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")

SQUARED_ERROR = ["likelihood=gaussian", f"likelihood.std={0.5**0.5!r}"]
# row: (vae-cli overrides, peer_pythae.py model). Hyperparameters equal on both sides (peer_pythae.build).
ROWS: dict[str, tuple[list[str], str]] = {
    "VAE": ([], "vae"),
    "β-VAE (β=4)": (["loss.beta=4"], "beta_vae"),
    "IWAE (k=5)": (["loss=iwae", "loss.k=5"], "iwae"),
    "VampPrior (K=500)": (["prior=vamp", "prior.components=500"], "vamp"),
    "β-TCVAE (β=6, MSS)": (["loss=beta_tcvae", "loss.beta=6", "loss.estimator=mss"], "beta_tcvae"),
    "FactorVAE (γ=10, 5×1000 disc.)": (
        ["loss=factor_vae", "loss.gamma=10", "loss.disc_hidden=[1000,1000,1000,1000,1000]"],
        "factor_vae",
    ),
    "InfoVAE-MMD (IMQ, λ=1000)": (["loss=info_vae", "loss.alpha=0", "loss.lambda=1000"], "info_vae"),
    # pythae's IAF: the affine step z exp(s) + m, no context (vae-cli's default is the paper's gated step with h;
    # its MADEs use ELU where pythae's use ReLU).
    "IAF (4 affine MADE steps, 320×2)": (
        [
            "posterior=iaf",
            "posterior.flows=4",
            "posterior.hidden=[320,320]",
            "posterior.step=affine",
            "posterior.context=0",
        ],
        "iaf",
    ),
    "planar flows (10)": (["posterior=planar", "posterior.flows=10"], "planar"),
    "S-VAE (vMF, d=20)": (["posterior=vmf", "prior=uniform_sphere"], "svae"),
    "PIWAE (m=2, k=4)": (["loss=piwae", "loss.m=2", "loss.k=4"], "piwae"),
    "CIWAE (k=8, β=0.05)": (["loss=ciwae", "loss.k=8", "loss.beta=0.05"], "ciwae"),
    # Autoencoders (issue 24). pythae trains them on squared error, so vae-cli's rows use the Gaussian likelihood
    # with sigma^2 = 1/2: -log p(x|z) = |x - mean|^2 + a constant.
    "AE (squared error)": (["loss=ae", *SQUARED_ERROR], "ae"),
    "WAE-MMD (IMQ, 7 scales, λ=10)": (["loss=wae", "loss.kernel=imq", "loss.lambda=10", *SQUARED_ERROR], "wae"),
    "RAE-L2 (β=1, λ=1e-4)": (
        ["loss=rae", "loss.regularizer=l2", "loss.embedding_weight=1", "loss.decoder_weight=1e-4", *SQUARED_ERROR],
        "rae_l2",
    ),
    "RAE-GP (β=1, λ=1e-4)": (
        ["loss=rae", "loss.regularizer=gp", "loss.embedding_weight=1", "loss.decoder_weight=1e-4", *SQUARED_ERROR],
        "rae_gp",
    ),
    "AAE (2×1000 disc.)": (["loss=aae", "loss.adversarial_weight=1", "loss.disc_hidden=[1000,1000]"], "aae"),
}
# Rows without a likelihood bound: their quality figure is the per-pixel squared error of the test reconstructions
# at the code (vae-eval's "mean squared error (per pixel)"; peer_pythae.py --metric mse), not an IW NLL.
RECONSTRUCTION_ROWS = {"ae", "wae", "rae_l2", "rae_gp", "aae"}
SHORT = {name: peer for name, (_, peer) in ROWS.items()}


@dataclass
class Result:
    epoch_times: list[float]
    whole_s: float
    nll: float
    eval_s: float
    step_flops: float
    bf16: bool
    extra: dict = field(default_factory=dict)

    def epoch(self) -> float:
        # The first epoch carries one-time costs (allocator, oneDNN primitive caches); the later ones are the rate.
        return statistics.median(self.epoch_times[1:] or self.epoch_times)


# ----- setup ----------------------------------------------------------------------------------------------------
def ensure_pythae(venv: Path) -> Path:
    """The Python of a virtual environment with pythae 0.1.2 and this interpreter's torch (created once)."""
    python = venv / "bin" / "python"
    marker = venv / f"ready-pythae-{PYTHAE_VERSION}-torch-{torch.__version__}"
    if marker.exists():
        return python
    print(f"peers: creating {venv} (pythae {PYTHAE_VERSION}, torch {torch.__version__})", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    torch_pin = f"torch=={torch.__version__.split('+')[0]}"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            torch_pin,
            f"pythae=={PYTHAE_VERSION}",
        ],
        check=True,
    )
    got = subprocess.run(
        [str(python), "-c", "import torch; print(torch.__version__)"], check=True, capture_output=True, text=True
    ).stdout.strip()
    if got != torch.__version__:
        raise SystemExit(f"peers: pythae's environment got torch {got}, this one runs {torch.__version__}")
    marker.touch()
    return python


def gemm_rate(dtype: torch.dtype, n: int = 1024, seconds: float = 2.0) -> float:
    """Sustained FLOP/s of an n x n x n matmul in ``dtype`` on this process's threads."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def vae_cli_step_flops(overrides: list[str]) -> float:
    """Matmul/convolution FLOPs of one vae-cli training step (forward + backward of the objective) on 128 images."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from torch.utils.flop_counter import FlopCounterMode

    from vae_cli.config.schema import register_configs
    from vae_cli.training.session import build_model_and_objective

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    data = SimpleNamespace(
        image_shape=(1, 28, 28),
        train=torch.zeros(60_000, 1, 1, 1),
        num_classes=10,
        name="fashion_mnist",
        streamed=False,
    )
    model, objective = build_model_and_objective(cfg, data, torch.device("cpu"))
    x = (torch.rand(128, 1, 28, 28) > 0.5).float()
    counter = FlopCounterMode(display=False)
    with counter:
        terms = objective(model, x, None, torch.zeros(()))
        objective.minimized(terms).backward()
    return float(counter.get_total_flops())


# ----- contenders -----------------------------------------------------------------------------------------------
def run_pythae(python: Path, args: argparse.Namespace, peer: str, seed: int) -> Result:
    cmd = [
        str(python),
        str(PYTHAE_RUNNER),
        f"--model={peer}",
        f"--epochs={args.epochs}",
        f"--data-root={args.system_data}",
        f"--subset={args.subset}",
        f"--seed={seed}",
        f"--nll-k={args.nll_k}",
        f"--nll-n={args.nll_n}",
        f"--metric={'mse' if peer in RECONSTRUCTION_ROWS else 'nll'}",
    ]
    text, wall, _, _ = run_process(cmd, REPO, args.timeout)
    r = json.loads(next(ln for ln in text.splitlines() if ln.startswith("RESULT "))[len("RESULT ") :])
    # Launch to exit, less the NLL estimate the same process ran after training (vae-cli's runs in vae-eval).
    whole = wall - r["eval_s"]
    return Result(r["epoch_times"], whole, r["test_nll"], r["eval_s"], r["step_flops"], False, r)


def run_vae_cli(args: argparse.Namespace, overrides: list[str], seed: int, metric: str = "nll") -> Result:
    with tempfile.TemporaryDirectory(prefix="vae-peers-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [
            vae_train_exe(),
            "dataset=fashion_mnist",
            f"dataset.root={args.data_root}",
            "dataset.val_size=0",
            "dataset.binarize=static_threshold",
            f"trainer.epochs={args.epochs}",
            f"trainer.seed={seed}",
            f"hydra.run.dir={run_dir}",
            *([f"dataset.subset={args.subset}"] if args.subset else []),
            *overrides,
        ]
        _, whole, _, _ = run_process(cmd, Path(tmp), args.timeout, args.vae_cli_env)
        ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
        history = ckpt.get("train_state", ckpt)["history"]
        n_train = args.subset or 60_000
        times = [n_train / h["images_per_sec"] for h in history]
        precision = str(json.loads((run_dir / "metrics.json").read_text()).get("precision", ""))
        eval_cmd = [
            str(Path(vae_train_exe()).with_name("vae-eval")),
            str(run_dir),
            f"--k={args.nll_k}",
            f"--num-images={args.nll_n}",
            "--seed=0",
            "--no-write",
        ]
        text, eval_s, _, _ = run_process(eval_cmd, Path(tmp), args.timeout)
    pattern = (
        r"mean squared error \(per pixel, \[0, 1\] scale\)\s+(-?[0-9.]+)"
        if metric == "mse"
        else r"log p\(x\), IW-\d+ \(nats\)\s+(-?[0-9.]+)"
    )
    found = re.search(pattern, text)
    if not found:
        raise RuntimeError(f"vae-eval printed no {'MSE' if metric == 'mse' else 'IW estimate'}:\n{text[-2000:]}")
    value = float(found.group(1)) if metric == "mse" else -float(found.group(1))
    return Result(times, whole, value, eval_s, 0.0, precision == "bf16", {"precision": precision})


# ----- report ---------------------------------------------------------------------------------------------------
def med(values: list[float]) -> float:
    return statistics.median(values)


def report(args: argparse.Namespace, results: dict[str, dict[str, list[Result]]], flops: dict, rates: dict) -> str:
    steps = -(-(args.subset or 60_000) // 128)
    head = (
        "| model | contender | s/epoch | × pythae (epoch) | whole process s | × pythae (whole) | "
        f"test NLL (IW-{args.nll_k}) or MSE per pixel, first {args.nll_n} images | Δ | matmul GFLOP/step | % of floor |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row, by in results.items():
        peer = by["pythae 0.1.2"]
        if not peer or not all(by.values()):
            lines.append(f"| {row} | (a contender failed: see the log) | | | | | | | | |")
            continue
        p_epoch, p_whole, p_nll = (
            med([r.epoch() for r in peer]),
            med([r.whole_s for r in peer]),
            med([r.nll for r in peer]),
        )
        for name, runs in by.items():
            ep, whole, nll = med([r.epoch() for r in runs]), med([r.whole_s for r in runs]), med([r.nll for r in runs])
            f = peer[0].step_flops if name.startswith("pythae") else flops[row]
            rate = rates["bf16"] if runs[0].bf16 else rates["fp32"]
            floor_pct = 100 * (f / rate) / (ep / steps) if f else float("nan")
            digits, label = (4, "MSE ") if SHORT[row] in RECONSTRUCTION_ROWS else (2, "")
            spread = (
                f" ({min(r.nll for r in runs):.{digits}f}–{max(r.nll for r in runs):.{digits}f})"
                if len(runs) > 1
                else ""
            )
            lines.append(
                f"| {row} | {name} | {ep:.2f} | {p_epoch / ep:.2f}× | {whole:.1f} | {p_whole / whole:.2f}× | "
                f"{label}{nll:.{digits}f}{spread} | {nll - p_nll:+.{digits}f} | {f / 1e9:.2f} | {floor_pct:.0f}% |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=[], choices=sorted(SHORT.values()), help="only these rows")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--subset", type=int, default=0, help="first N training images (0: all 60k)")
    p.add_argument("--nll-k", type=int, default=256)
    p.add_argument("--nll-n", type=int, default=1000)
    p.add_argument("--fp32-too", action="store_true", help="also vae-cli with trainer.precision=fp32")
    p.add_argument(
        "--compiled-too",
        action="store_true",
        help="also vae-cli with trainer.compile=true (its compile time is in the first epoch and the whole process)",
    )
    p.add_argument("--vae-cli-extra", nargs="*", default=[], help="overrides for every vae-cli run")
    p.add_argument("--pythae-venv", default=str(Path.home() / ".cache" / "vae-cli-bench" / "pythae-venv"))
    p.add_argument("--data-root", default=str(REPO / "data"))
    p.add_argument("--system-data", default=str(SYSTEM_FASHION))
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", default="", help="also write the results as JSON here")
    p.add_argument("--smoke", action="store_true", help="2 rows, 1 epoch, 3000 images: proves the script runs")
    args = p.parse_args()
    if args.smoke:
        args.models = args.models or ["vae", "iwae"]
        args.epochs, args.reps, args.subset, args.nll_k, args.nll_n = 2, 1, 3000, 16, 50
    stage_data(Path(args.data_root))
    # Each contender waits between parallel regions as its users' runs do on an idle machine: pythae with OpenMP's
    # default (long spins, the fastest alone), vae-train with what its cpu_wait=auto picks there (bounded spins).
    # Given explicitly, because auto decides from the load average, which still shows the contender before it.
    cpus = read_machine_load().cpus
    wait_env = choose_wait_env(CpuWait.auto, MachineLoad(0.0, 0, cpus))
    for key in USER_KEYS:
        speed.ENV.pop(key, None)
    args.vae_cli_env = wait_env
    python = ensure_pythae(Path(args.pythae_venv))
    rows = {name: spec for name, spec in ROWS.items() if not args.models or spec[1] in args.models}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rates = {"fp32": gemm_rate(torch.float32), "bf16": gemm_rate(torch.bfloat16)}
    print(f"peers: GEMM fp32 {rates['fp32'] / 1e9:.0f} GFLOP/s, bf16 {rates['bf16'] / 1e9:.0f}", file=sys.stderr)
    flops = {row: vae_cli_step_flops([*overrides, *args.vae_cli_extra]) for row, (overrides, _) in rows.items()}
    contenders: dict[str, callable] = {}
    results: dict[str, dict[str, list[Result]]] = {}
    failed: list[str] = []
    for row, (overrides, peer) in rows.items():
        extra = [*overrides, *args.vae_cli_extra]
        metric = "mse" if peer in RECONSTRUCTION_ROWS else "nll"
        contenders = {
            "pythae 0.1.2": lambda s, peer=peer: run_pythae(python, args, peer, s),
            "vae-cli": lambda s, extra=extra, metric=metric: run_vae_cli(args, extra, s, metric),
        }
        if args.fp32_too:
            contenders["vae-cli fp32"] = lambda s, extra=extra, metric=metric: run_vae_cli(
                args, [*extra, "trainer.precision=fp32"], s, metric
            )
        if args.compiled_too:
            contenders["vae-cli compiled"] = lambda s, extra=extra, metric=metric: run_vae_cli(
                args, [*extra, "trainer.compile=true"], s, metric
            )
        results[row] = {name: [] for name in contenders}
        names = list(contenders)
        for rep in range(args.reps):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                try:
                    r = contenders[name](rep)
                except RuntimeError as exc:  # one contender failing loses its row's figure, not the whole run
                    print(f"  {row} rep {rep + 1}/{args.reps} {name}: FAILED\n{exc}", file=sys.stderr, flush=True)
                    failed.append(f"{row}: {name}")
                    continue
                results[row][name].append(r)
                print(
                    f"  {row} rep {rep + 1}/{args.reps} {name}: {r.epoch():.2f} s/epoch, whole {r.whole_s:.1f} s, "
                    f"{'MSE' if peer in RECONSTRUCTION_ROWS else 'NLL'} {r.nll:.4g}",
                    file=sys.stderr,
                    flush=True,
                )
    finished = time.strftime("%H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    title = (
        f"### vae-cli against pythae {PYTHAE_VERSION}: MLP 784-400-20, batch 128, Adam 1e-3, {args.epochs} epochs on "
        f"{args.subset or 60_000} binarized Fashion-MNIST images, median of {args.reps}\n\n"
        f"Taken {started}–{finished} (load average at the end {load:.1f}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, vae-train with {describe(wait_env)} (its choice on an idle machine), pythae with OpenMP's default waits; GEMM floor fp32 {rates['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {rates['bf16'] / 1e9:.0f} GFLOP/s (1024³ matmuls). vae-cli's rows train in "
        f"{'/'.join(sorted({r.extra.get('precision') or '?' for by in results.values() for n, rs in by.items() if n != 'pythae 0.1.2' for r in rs}))}; "
        "pythae trains in fp32 (its mixed precision is CUDA-only).\n"
    )
    text = title + "\n" + report(args, results, flops, rates)
    if failed:
        text += "\n\nFailed runs: " + "; ".join(failed)
    print(text)
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "gemm_flops_per_s": rates,
                    "vae_cli_step_flops": flops,
                    "results": {
                        row: {n: [r.__dict__ for r in rs] for n, rs in by.items()} for row, by in results.items()
                    },
                    "table": text,
                },
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    main()

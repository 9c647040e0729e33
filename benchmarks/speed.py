"""Speed benchmark: ``vae-train`` side by side with the classic PyTorch VAE example and a bare eager loop.

    python benchmarks/speed.py                                   # every suite (~15 min on 2 CPU cores)
    python benchmarks/speed.py --suite mlp --reps 3 --epochs 10  # one suite
    python benchmarks/speed.py --smoke                           # seconds: proves the script works

Every contender runs in its own process (so peak RSS is its own), one after another, and the order rotates
each repetition, so load from other processes on a shared machine falls on all contenders alike. Figures are
medians over repetitions (epoch times: over every epoch of every repetition); ratios are taken between
contenders measured in the same run. Suites:

- ``mlp`` / ``conv``: (a) classic example design, (b) bare eager loop on preloaded tensors, (c) ``vae-train``
  (the default ``trainer.precision=auto``, and fp32 and bf16 explicitly), same model, batch 128, Adam 1e-3, all 60k training images
  (``dataset.val_size=0``), 10k test images. On CUDA (when present) also graphs and compile variants.
- ``ablation``: the bare loop with one speed feature added at a time: what each gives.
- ``startup``: ``vae-train --help``, ``import torch``, and launch -> first optimizer step of ``vae-train``.
- ``scaling``: ``vae-train`` epoch time and peak RSS versus training-set size and batch size.
- ``waits`` (not in the default list: the collapse it shows takes minutes): the ``vae-train`` step under each
  OpenMP wait policy, alone and as two runs at once; why ``trainer.cpu_wait=auto`` does what it does.
- ``folder`` (not in the default list: it writes 200k files and a 2.4 GB cache under ``--folder-root``): a
  generated folder of 64x64 RGB JPEGs at each of ``--folder-sizes``; first load (decode + cache) and second load
  (cache hit), then one epoch of ``dataset=image_folder`` in memory and streamed (``dataset.memory_budget_mb``
  below the decoded size), with the peak memory of the whole process tree (DataLoader workers included).
- ``sweeps`` (not in the default list): a 12-job sweep of 1-epoch runs with the basic launcher and with joblib
  (n_jobs=2), side by side, and a whole default 5-epoch run against the classic example's, launch to exit.
- ``whole`` (not in the default list): the whole default 5-epoch run against the classic example's, launch to exit
  (the sweeps suite's last table, alone; with ``--baseline-exe`` also the previous installation's default run).
- ``zoo`` (not in the default list): every objective and prior of the model zoo on the classic MLP, each one's
  s/epoch next to the plain ELBO's (``--zoo-epochs``, ``--zoo-variants``, ``--zoo-extra trainer.precision=bf16``).

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
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

from vae_cli.config.enums import CpuWait
from vae_cli.process.cpu_threads import BOUNDED_SPINS, choose_wait_env, describe, read_machine_load

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


class TreeMemory:
    """Peak memory of a process and all its descendants (DataLoader workers), sampled from /proc every
    ``interval`` seconds while it runs (a spike shorter than that can be missed).

    ``rss_mb``: the peak of the sum of every process's RSS (pages two processes share count in each, and pages of
    a memory-mapped file count while they are mapped and resident). ``anon_mb``: the peak of the sum of anonymous
    PSS (``Pss_Anon`` of smaps_rollup): the memory only the tree holds (heap, tensors), each shared page split
    between its sharers, without the page cache of mapped files, which the kernel can drop under pressure.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.rss_mb = self.anon_mb = 0.0
        self.max_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            rss = anon = 0
            pids = _process_tree(self.pid)
            for pid in pids:
                fields = _rollup_kb(pid)
                rss += fields.get("Rss", 0)
                anon += fields.get("Pss_Anon", 0)
            self.rss_mb, self.anon_mb = max(self.rss_mb, rss / 1024), max(self.anon_mb, anon / 1024)
            self.max_procs = max(self.max_procs, len(pids))
            self._stop.wait(self.interval)


def _process_tree(root: int) -> list[int]:
    """``root`` and its descendants, from the parent pid in every /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _rollup_kb(pid: int) -> dict[str, int]:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            lines = f.read().splitlines()[1:]
    except OSError:  # gone since the listing
        return {}
    return {k.rstrip(":"): int(v) for k, v, *_ in (line.split() for line in lines)}


def run_process(
    cmd: list[str], cwd: Path, timeout: float, env: dict[str, str | None] | None = None, tree: list | None = None
) -> tuple[str, float, float, float]:
    """Run ``cmd``; returns (stdout, wall seconds, peak RSS in MB, launch Unix time). The peak RSS is wait4's: that
    of the process, or of its largest descendant (e.g. a DataLoader worker) if that one was larger.
    With ``tree`` (a list), the :class:`TreeMemory` of the process tree is appended to it. ``env`` is laid over
    the benchmark's environment; a value of None removes that variable."""
    full_env = {k: v for k, v in {**ENV, **(env or {})}.items() if v is not None}
    with tempfile.TemporaryFile("w+") as out:
        launched = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True, env=full_env)
        sampler = TreeMemory(proc.pid) if tree is not None else None
        try:
            # wait4 gives this child's own rusage (ru_maxrss in KiB on Linux).
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        finally:
            if sampler is not None:
                sampler.stop()
                tree.append(sampler)
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
    env: dict[str, str | None] | None = None,
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


def run_vae_train(
    args: argparse.Namespace,
    overrides: list[str],
    seed: int = 0,
    dataset: list[str] | None = None,
    n_train: int = 0,
    tree: list | None = None,
    exe: str | None = None,
) -> Run:
    """One ``vae-train`` run on Fashion-MNIST, or on ``dataset`` (overrides; then ``n_train`` training images).
    ``tree``: see :func:`run_process`; ``exe``: another installation's vae-train (default: this one's)."""
    if dataset is None:
        n_train = _n_train(args, overrides)
        if not any(o.startswith("dataset.subset=") for o in overrides) and args.subset:
            overrides = [*overrides, f"dataset.subset={args.subset}"]
        # all 60k images train, as in the other contenders
        dataset = ["dataset=fashion_mnist", f"dataset.root={args.data_root}", "dataset.val_size=0"]
    with tempfile.TemporaryDirectory(prefix="vae-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [exe or vae_train_exe(), *dataset, f"hydra.run.dir={run_dir}", f"trainer.seed={seed}", *overrides]
        _, wall, rss, launched = run_process(cmd, Path(tmp), args.timeout, tree=tree)
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
        "(c) vae-train": lambda r: run_vae_train(args, common, r),  # defaults: precision=auto
        "vae-train fp32": lambda r: run_vae_train(args, [*common, "trainer.precision=fp32"], r),
        "vae-train bf16": lambda r: run_vae_train(args, [*common, "trainer.precision=bf16"], r),
    }
    if args.baseline_exe:  # another installation (the previous commit), interleaved with this one
        c["(c) vae-train, baseline"] = lambda r: run_vae_train(args, common, r, exe=args.baseline_exe)
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


# The model zoo's variants (README "Model zoo"): each one's step, next to the plain ELBO's.
ZOO = {
    "elbo": [],
    "elbo + free bits": ["loss.free_bits=0.1"],
    "elbo + capacity": ["loss.capacity_max=25"],
    "iwae k=5": ["loss=iwae", "loss.k=5"],
    "iwae k=5 dreg": ["loss=iwae", "loss.k=5", "loss.estimator=dreg"],
    "iwae k=50": ["loss=iwae", "loss.k=50"],
    "beta_tcvae mws": ["loss=beta_tcvae"],
    "beta_tcvae mss": ["loss=beta_tcvae", "loss.estimator=mss"],
    "factor_vae": ["loss=factor_vae"],
    "dip_vae ii": ["loss=dip_vae", "loss.variant=ii"],
    "info_vae imq": ["loss=info_vae"],
    "vamp (500)": ["prior=vamp"],
    "mog (10)": ["prior=mog"],
    "cvae": ["model.conditional=true"],
    # Model zoo II: likelihoods, the update guard and weight average, the residual and hierarchical networks.
    "continuous bernoulli": ["likelihood=continuous_bernoulli"],
    "gaussian, learned σ": ["likelihood=gaussian", "likelihood.std=learned"],
    "logistic mixture (10)": ["likelihood=logistic_mixture"],
    "elbo + skip guard + ema": ["trainer.skip_grad_norm=2000", "trainer.ema_decay=0.999"],
    "resnet [16,32,64]": ["model=resnet", "model.widths=[16,32,64]", "model.blocks=1"],
    "hvae 3 layers [16,32,64]": ["model=hvae", "model.widths=[16,32,64]", "model.blocks=1", "model.latent_channels=4"],
    # Model zoo III: posteriors and the importance-weighted / Hamiltonian objectives.
    "planar (10 flows)": ["posterior=planar", "posterior.flows=10"],
    "radial (10 flows)": ["posterior=radial", "posterior.flows=10"],
    "iaf (4 steps)": ["posterior=iaf", "posterior.flows=4"],
    "vmf d=20": ["posterior=vmf", "prior=uniform_sphere"],
    "poincare d=20": ["posterior=wrapped_normal", "prior=wrapped_normal"],
    "hamiltonian (5 leapfrog)": ["loss=hvae", "loss.leapfrog_steps=5", "loss.tempering=0.5"],
    "piwae m=2 k=4": ["loss=piwae", "loss.m=2", "loss.k=4"],
    "ciwae k=8": ["loss=ciwae", "loss.k=8", "loss.beta=0.05"],
    # Model zoo IV: autoencoders.
    "ae": ["loss=ae"],
    "wae imq (7 scales)": ["loss=wae"],
    "rae l2": ["loss=rae", "loss.regularizer=l2"],
    "aae": ["loss=aae"],
}


def suite_zoo(args: argparse.Namespace) -> str:
    """Every objective / prior / likelihood of the zoo on the classic MLP (default precision, CPU), and the residual and
    hierarchical networks, side by side with the plain ELBO."""
    common = [f"trainer.epochs={args.zoo_epochs}", "trainer.device=cpu", *args.zoo_extra]
    chosen = {name: ZOO[name] for name in ZOO if not args.zoo_variants or name in args.zoo_variants}
    c = {name: (lambda r, extra=extra: run_vae_train(args, [*common, *extra], r)) for name, extra in chosen.items()}
    if args.baseline_exe:  # each variant also on another installation (the previous commit), interleaved
        for name, extra in chosen.items():
            c[f"{name}, baseline"] = lambda r, extra=extra: run_vae_train(
                args, [*common, *extra], r, exe=args.baseline_exe
            )
    print(f"suite zoo: {args.zoo_epochs} epochs, {args.reps} reps", file=sys.stderr)
    res = interleaved(c, args.reps)
    title = (
        f"Model zoo: MLP 784-400-20 (unless the row names another model) on cpu, batch 128, "
        f"{args.zoo_epochs} epoch(s), {' '.join(args.zoo_extra) or 'trainer.precision=auto (the default)'}"
    )
    reference = "elbo" if "elbo" in chosen else next(iter(chosen))  # the ratios are against the ELBO when it ran
    return table(title, res, reference, reference)


def suite_ablation(args: argparse.Namespace) -> str:
    steps = {
        "bare: textbook (foreach Adam, F.bce_with_logits)": [],
        "+ fused Adam": ["--fused-adam"],
        "+ fused Adam + fast BCE (= vae-train fp32 step)": ["--fused-adam", "--fast-bce"],
        "+ bf16 autocast (= vae-train bf16 step)": ["--fused-adam", "--fast-bce", "--bf16"],
        "bf16 without the fused Adam / fast BCE": ["--bf16"],
        "+ malloc thresholds (= vae-train bf16 process)": ["--fused-adam", "--fast-bce", "--bf16", "--malloc"],
    }
    # The other CPU wait policy (GOMP_SPINCOUNT, when set, overrides the spin count OMP_WAIT_POLICY implies).
    sleeping = ENV.get("OMP_WAIT_POLICY") == "PASSIVE"
    flipped = {"GOMP_SPINCOUNT": "1000"} if sleeping else {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"}
    active = f"textbook with {describe(flipped)} (the other CPU wait policy)"
    if args.with_compile:
        steps["+ torch.compile (bf16)"] = ["--fused-adam", "--fast-bce", "--bf16", "--compile"]
    sub = argparse.Namespace(**{**vars(args), "epochs": args.ablation_epochs})
    print(f"suite ablation: {args.ablation_epochs} epochs, {args.reps} reps", file=sys.stderr)
    runs = {k: (lambda r, e=e: run_contender("bare", sub, "mlp", "cpu", e, seed=r)) for k, e in steps.items()}
    runs[active] = lambda r: run_contender("bare", sub, "mlp", "cpu", [], flipped, seed=r)
    res = interleaved(runs, args.reps)
    first = next(iter(steps))
    return table(f"What each step feature gives (MLP, CPU, {args.ablation_epochs} epochs)", res, first, None)


WAIT_POLICIES: dict[str, dict[str, str | None]] = {
    "OpenMP default (300k spins)": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None},
    f"GOMP_SPINCOUNT={BOUNDED_SPINS} (auto, idle machine)": {
        "OMP_WAIT_POLICY": None,
        "GOMP_SPINCOUNT": str(BOUNDED_SPINS),
    },
    "OMP_WAIT_POLICY=PASSIVE (sleep; auto, busy machine)": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None},
}


def wait_policies(extra_spins: list[int]) -> dict[str, dict[str, str | None]]:
    """The policies of the waits suite: WAIT_POLICIES and a bounded spin for each of ``--wait-spins``."""
    policies = dict(WAIT_POLICIES)
    bad = [s for s in extra_spins if s < 0]
    if bad:
        print(f"speed.py: --wait-spins takes spin counts >= 0 (GOMP_SPINCOUNT), not {bad}.", file=sys.stderr)
        raise SystemExit(2)
    for spins in extra_spins:
        if spins != BOUNDED_SPINS:
            policies[f"GOMP_SPINCOUNT={spins}"] = {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": str(spins)}
    return policies


def suite_waits(args: argparse.Namespace) -> str:
    """The vae-train step (the bare loop with its fused Adam and fast BCE; ``--wait-bf16``: and bf16 with its malloc
    settings, vae-train's default step on a bf16 CPU) under each OpenMP wait policy, run alone and as two runs at
    once (each with torch's 2 threads: what a parallel sweep does to a 2-core machine)."""
    from concurrent.futures import ThreadPoolExecutor

    sub = argparse.Namespace(**{**vars(args), "epochs": args.ablation_epochs})
    flags = ["--fused-adam", "--fast-bce", *(["--bf16", "--malloc"] if args.wait_bf16 else [])]
    policies = wait_policies(args.wait_spins)
    print(f"suite waits: {sub.epochs} epochs, {args.reps} reps", file=sys.stderr)
    alone: dict[str, list[float]] = {k: [] for k in policies}
    paired: dict[str, list[float]] = {k: [] for k in policies}
    for rep in range(args.reps):
        names = list(policies)
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            env = policies[name]
            alone[name] += run_contender("bare", sub, "mlp", "cpu", flags, env, seed=rep).epoch_times
            with ThreadPoolExecutor(2) as pool:
                pair = [pool.submit(run_contender, "bare", sub, "mlp", "cpu", flags, env, rep + k) for k in (0, 1)]
                paired[name] += [t for f in pair for t in f.result().epoch_times]
            print(
                f"  rep {rep + 1} {name}: alone {alone[name][-1]:.2f} s, two at once {paired[name][-1]:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    step = "bf16" if args.wait_bf16 else "fp32"
    lines = [
        f"### CPU thread waits (vae-train {step} step, MLP, {sub.epochs} epochs, median s/epoch)",
        "",
        "| wait policy | alone | two runs at once | two at once ÷ alone |",
        "|---|---|---|---|",
    ]
    for name in policies:
        a, p = statistics.median(alone[name]), statistics.median(paired[name])
        lines.append(f"| {name} | {a:.2f} | {p:.2f} | {p / a:.1f}× |")
    first = next(iter(policies))
    lines.append(
        f"\n(alone, versus {first}: "
        + ", ".join(
            f"{name.split(' ')[0]} {statistics.median(alone[name]) / statistics.median(alone[first]):.2f}×"
            for name in policies
        )
        + ")"
    )
    return "\n".join(lines)


def suite_startup(args: argparse.Namespace) -> str:
    """``vae-train --help`` and launch -> first optimizer step; with ``--baseline-exe`` (another installation's
    vae-train, e.g. the previous commit's) both side by side, interleaved, with their ratio."""
    reps = max(3, args.reps)
    exes = {"this": vae_train_exe()}
    if args.baseline_exe:
        exes["baseline"] = args.baseline_exe
    help_s: dict[str, list[float]] = {name: [] for name in exes}
    firsts: dict[str, list[float]] = {name: [] for name in exes}
    torch_s = [run_process([sys.executable, "-c", "import torch"], REPO, args.timeout)[1] for _ in range(reps)]
    for rep in range(reps):
        order = list(exes.items()) if rep % 2 == 0 else list(reversed(exes.items()))  # alternate who goes first
        for name, exe in order:
            help_s[name].append(run_process([exe, "--help"], REPO, args.timeout)[1])
        for name, exe in order:
            firsts[name].append(run_vae_train(args, ["trainer.epochs=1", "dataset.subset=1280"], exe=exe).first_step_s)
    med = {name: (statistics.median(help_s[name]), statistics.median(firsts[name])) for name in exes}
    lines = [f"### Start-up (median of {reps})", ""]
    if args.baseline_exe:
        lines += [
            f"Baseline: `{args.baseline_exe}`, measured interleaved with this installation.",
            "",
            "| what | this (s) | baseline (s) | this / baseline |",
            "|---|---|---|---|",
            f"| `vae-train --help` | {med['this'][0]:.2f} | {med['baseline'][0]:.2f} | "
            f"{med['this'][0] / med['baseline'][0]:.2f} |",
            f"| `vae-train dataset=fashion_mnist`: launch → first optimizer step | {med['this'][1]:.2f} | "
            f"{med['baseline'][1]:.2f} | {med['this'][1] / med['baseline'][1]:.2f} |",
            f"| `python -c 'import torch'` (for scale) | {statistics.median(torch_s):.2f} | | |",
        ]
        return "\n".join(lines)
    return "\n".join(
        [
            *lines,
            "| what | seconds |",
            "|---|---|",
            f"| `vae-train --help` | {med['this'][0]:.2f} |",
            f"| `python -c 'import torch'` (for scale) | {statistics.median(torch_s):.2f} |",
            f"| `vae-train dataset=fashion_mnist`: launch → first optimizer step | {med['this'][1]:.2f} |",
        ]
    )


def suite_sweeps(args: argparse.Namespace) -> str:
    """A 12-job sweep of 1-epoch runs with the basic launcher (one job after another, in one process) and with
    joblib (two worker processes, one thread each), side by side; and one whole default 5-epoch run against the
    classic example's 5 epochs, launch to exit."""
    jobs = 2 if args.smoke else 12
    sweep_args = [
        "-m",
        "dataset=fashion_mnist",
        f"dataset.root={args.data_root}",
        "trainer.epochs=1",
        "trainer.seed=" + ",".join(str(i) for i in range(jobs)),
        *([f"dataset.subset={args.subset}"] if args.subset else []),
    ]
    launchers = {"basic (sequential)": [], "joblib n_jobs=2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}
    walls: dict[str, list[float]] = {name: [] for name in launchers}
    whole: dict[str, list[float]] = {"classic example, 5 epochs": [], "vae-train trainer.epochs=5 (defaults)": []}
    for rep in range(args.reps):
        for name, extra in launchers.items():
            with tempfile.TemporaryDirectory(prefix="vae-bench-sweep-") as tmp:
                cmd = [vae_train_exe(), *sweep_args, *extra, f"hydra.sweep.dir={tmp}/sweep"]
                _, wall, _, _ = run_process(cmd, Path(tmp), args.timeout)
                walls[name].append(wall)
            print(f"  rep {rep + 1}: {name}: {wall:.1f} s", file=sys.stderr, flush=True)
        five = argparse.Namespace(**{**vars(args), "epochs": 1 if args.smoke else 5})
        whole["classic example, 5 epochs"].append(run_contender("classic", five, "mlp", "cpu", [], seed=rep).wall_s)
        with tempfile.TemporaryDirectory(prefix="vae-bench-whole-") as tmp:
            cmd = [vae_train_exe(), "dataset=fashion_mnist", f"dataset.root={args.data_root}"]
            cmd += [f"trainer.epochs={five.epochs}", f"trainer.seed={rep}", f"hydra.run.dir={tmp}/run"]
            cmd += [f"dataset.subset={args.subset}"] if args.subset else []
            whole["vae-train trainer.epochs=5 (defaults)"].append(run_process(cmd, Path(tmp), args.timeout)[1])
    base = statistics.median(walls["basic (sequential)"])
    classic = statistics.median(whole["classic example, 5 epochs"])
    lines = [
        f"### A {jobs}-job sweep of 1-epoch runs (median of {args.reps}), and one whole run",
        "",
        "| what | wall s | × vs reference |",
        "|---|---|---|",
    ]
    for name, values in walls.items():
        lines.append(f"| sweep, {name} | {statistics.median(values):.1f} | {base / statistics.median(values):.2f}× |")
    for name, values in whole.items():
        lines.append(f"| {name} | {statistics.median(values):.1f} | {classic / statistics.median(values):.2f}× |")
    lines.append("")
    lines.append("References: the basic launcher for the sweeps, the classic example for the whole runs.")
    return "\n".join(lines)


def suite_whole(args: argparse.Namespace) -> str:
    """The whole default run, launch to exit: the classic example's 5 epochs against ``vae-train
    trainer.epochs=5`` with every default (views, validation, checkpoints, the test split), its fp32 step, and with
    ``--baseline-exe`` the previous installation's defaults; interleaved, the order rotating each repetition."""
    epochs = 1 if args.smoke else 5
    five = argparse.Namespace(**{**vars(args), "epochs": epochs})

    def vae_train(extra: list[str], exe: str | None = None) -> callable:
        def run(rep: int) -> Run:
            with tempfile.TemporaryDirectory(prefix="vae-bench-whole-") as tmp:
                cmd = [exe or vae_train_exe(), "dataset=fashion_mnist", f"dataset.root={args.data_root}"]
                cmd += [f"trainer.epochs={epochs}", f"trainer.seed={rep}", f"hydra.run.dir={tmp}/run", *extra]
                cmd += [f"dataset.subset={args.subset}"] if args.subset else []
                _, wall, rss, _ = run_process(cmd, Path(tmp), args.timeout)
                test = json.loads((Path(tmp) / "run" / "metrics.json").read_text())["test/loss"]
            return Run([wall], test, 0, rss, wall)

        return run

    c: dict[str, callable] = {
        f"classic example, {epochs} epochs": lambda r: run_contender("classic", five, "mlp", "cpu", [], seed=r),
        f"vae-train trainer.epochs={epochs} (defaults)": vae_train([]),
        f"vae-train trainer.epochs={epochs} trainer.precision=fp32": vae_train(["trainer.precision=fp32"]),
    }
    if args.baseline_exe:
        c[f"vae-train trainer.epochs={epochs} (defaults), baseline"] = vae_train([], args.baseline_exe)
    print(f"suite whole: {epochs} epochs, {args.reps} reps", file=sys.stderr)
    res = interleaved(c, args.reps)
    classic = statistics.median(r.wall_s for r in res[f"classic example, {epochs} epochs"])
    lines = [
        f"### The whole default run, launch to exit (median of {args.reps})",
        "",
        "| what | wall s | test loss (median) | × vs classic |",
        "|---|---|---|---|",
    ]
    for name, runs in res.items():
        wall = statistics.median(r.wall_s for r in runs)
        lines.append(f"| {name} | {wall:.1f} | {fmt_losses(runs)} | {classic / wall:.2f}× |")
    return "\n".join(lines)


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
        r = run_vae_train(
            args, ["trainer.epochs=1", f"dataset.subset={n}", f"trainer.batch_size={b}", "trainer.precision=fp32"]
        )
        ep = r.epoch_times[0]
        lines.append(f"| {n:,} | {b} | {ep:.3f} | {n / ep:,.0f} | {r.peak_rss_mb:.0f} |")
        print(f"  scaling n={n} batch={b}: {ep:.3f} s, {r.peak_rss_mb:.0f} MB", file=sys.stderr, flush=True)
    return "\n".join(lines)


# ----- folder of images ----------------------------------------------------------------------------------------
FOLDER_CLASSES = 10
FOLDER_CHUNK = 1000  # images per generation task; the noise seed is the chunk's number, so any pool size agrees
FOLDER_DONE = ".complete"  # hidden: the image_folder scan skips it
_Y, _X = np.mgrid[-1:1:64j, -1:1:64j]
PATTERNS = (  # class c draws pattern c % 5, in warm (c < 5) or cool colours
    lambda f, p: np.sin(f * _Y + p),  # horizontal stripes
    lambda f, p: np.sin(f * _X + p),  # vertical stripes
    lambda f, p: np.sin(f * (_X + _Y) + p),  # diagonal stripes
    lambda f, p: np.sign(np.sin(f * _X + p) * np.sin(f * _Y + p)),  # checkers
    lambda f, p: np.sin(f * np.hypot(_X - 0.3 * np.cos(p), _Y - 0.3 * np.sin(p))),  # rings
)


def folder_image_path(split: str, i: int) -> str:
    return f"{split}/c{i % FOLDER_CLASSES}/{i:07d}.jpg"


def _write_folder_chunk(job: tuple[str, str, int, int]) -> None:
    """Images ``start..stop`` of ``split``: a procedural pattern of the image's class plus noise, as JPEG."""
    from PIL import Image

    root, split, start, stop = job
    rng = np.random.default_rng([start, split == "test"])
    for i in range(start, stop):
        c = i % FOLDER_CLASSES
        v = 0.5 + 0.5 * PATTERNS[c % 5](rng.uniform(3, 12), rng.uniform(0, 2 * np.pi))
        low, high = rng.uniform(0, 90, 3), rng.uniform(150, 255, 3)
        if c >= 5:
            low, high = low[::-1], high[::-1]  # cool colours
        rgb = low + v[..., None] * (high - low) + rng.normal(0, 12, (64, 64, 3))
        img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
        img.save(os.path.join(root, folder_image_path(split, i)), quality=90)


def make_folder(root: Path, n_train: int, n_test: int) -> float:
    """``root/train/c<k>/*.jpg`` (``n_train`` images) and ``root/test/c<k>/*.jpg`` (``n_test``), deterministic;
    kept if a previous run finished it. Returns the seconds spent writing (0 when reused)."""
    if (root / FOLDER_DONE).is_file():
        return 0.0
    t0 = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    for split in ("train", "test"):
        for c in range(FOLDER_CLASSES):
            (root / split / f"c{c}").mkdir(parents=True)
    jobs = [
        (str(root), split, a, min(a + FOLDER_CHUNK, n))
        for split, n in (("train", n_train), ("test", n_test))
        for a in range(0, n, FOLDER_CHUNK)
    ]
    with Pool(os.cpu_count()) as pool:
        pool.map(_write_folder_chunk, jobs, chunksize=1)
    (root / FOLDER_DONE).write_text(f"{n_train} train, {n_test} test\n")
    return time.perf_counter() - t0


def link_folder(big: Path, root: Path, n_train: int, n_test: int) -> None:
    """``root`` holds the first ``n_train`` training images of ``big`` (hard links: no copy) and all its test ones."""
    if (root / FOLDER_DONE).is_file():
        return
    shutil.rmtree(root, ignore_errors=True)
    for split in ("train", "test"):
        for c in range(FOLDER_CLASSES):
            (root / split / f"c{c}").mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            os.link(big / folder_image_path(split, i), root / folder_image_path(split, i))
    (root / FOLDER_DONE).write_text(f"{n_train} train, {n_test} test\n")


TIME_LOAD = """
import sys, time
from vae_cli.config.datasets import DatasetConfig
from vae_cli.datasets.loader import load_dataset
cfg = DatasetConfig(name="image_folder", root=sys.argv[1], cache_dir=sys.argv[2], image_size=64, channels=3,
                    val_size=0)
t0 = time.perf_counter()
data = load_dataset(cfg, seed=0)
print("LOAD", time.perf_counter() - t0, data.train.shape[0], data.streamed)
"""


def time_load(args: argparse.Namespace, root: Path, cache: Path) -> float:
    """Seconds of ``load_dataset`` (files or cache -> training split in memory) in a fresh process."""
    text, *_ = run_process([sys.executable, "-c", TIME_LOAD, str(root), str(cache)], REPO, args.timeout)
    return float(next(ln for ln in text.splitlines() if ln.startswith("LOAD ")).split()[1])


def suite_folder(args: argparse.Namespace) -> str:
    sizes = sorted(args.folder_sizes)
    base = Path(args.folder_root)
    base.mkdir(parents=True, exist_ok=True)
    big = base / f"n{sizes[-1]}"
    made = make_folder(big, sizes[-1], args.folder_test)
    made_note = f"written in {made:.0f} s ({os.cpu_count()} processes)" if made else "reused from a previous run"
    print(f"suite folder: {big} {made_note}", file=sys.stderr, flush=True)
    model = args.folder_model
    loads = [
        f"### Image folder: loading (64×64 RGB JPEGs, {args.folder_test:,} test images, fresh process per load)",
        "",
        "| train images | decoded MiB | first load s (scan + decode + cache) | second load s (cache hit) | "
        "images/s decoded |",
        "|---|---|---|---|---|",
    ]
    train = [
        f"### Image folder: one epoch of `vae-train model={model}`, in memory vs streamed "
        f"(budget {args.stream_budget_mb} MiB, {args.folder_workers} workers)",
        "",
        "| train images | mode | s/epoch | images/s | peak RSS MB, process tree (sum) | peak anonymous PSS MB, "
        "process tree | processes | peak RSS MB, largest single process |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        root = base / f"n{n}"
        link_folder(big, root, n, args.folder_test)
        cache = base / "cache" / f"n{n}"
        shutil.rmtree(cache, ignore_errors=True)  # a genuine first load
        first = time_load(args, root, cache)
        second = time_load(args, root, cache)
        mib = n * 3 * 64 * 64 / 2**20
        loads.append(f"| {n:,} | {mib:,.0f} | {first:.1f} | {second:.2f} | {n / first:,.0f} |")
        print(f"  folder n={n}: first load {first:.1f} s, second {second:.2f} s", file=sys.stderr, flush=True)
        dataset = [
            "dataset=image_folder",
            f"dataset.root={root}",
            f"dataset.cache_dir={cache}",
            "dataset.image_size=64",
            "dataset.channels=3",
            "dataset.val_size=0",
            f"dataset.num_workers={args.folder_workers}",
        ]
        for mode, budget in (("in memory", max(4096, int(mib) + 1)), ("streamed", args.stream_budget_mb)):
            tree: list[TreeMemory] = []
            overrides = [f"model={model}", "trainer.epochs=1", f"dataset.memory_budget_mb={budget}"]
            r = run_vae_train(args, overrides, dataset=dataset, n_train=n, tree=tree)
            # The tree's sum is never below the largest process's peak, which wait4 gives exactly.
            ep, mem = r.epoch_times[0], tree[0]
            mem.rss_mb = max(mem.rss_mb, r.peak_rss_mb)
            train.append(
                f"| {n:,} | {mode} | {ep:.1f} | {n / ep:,.0f} | {mem.rss_mb:,.0f} | {mem.anon_mb:,.0f} | "
                f"{mem.max_procs} | {r.peak_rss_mb:,.0f} |"
            )
            print(
                f"  folder n={n} {mode}: {ep:.1f} s/epoch, tree RSS {mem.rss_mb:.0f} MB, anon {mem.anon_mb:.0f} MB "
                f"({r.wall_s:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    note = f"Images generated by the benchmark into {base} ({made_note})."
    return "\n".join(loads) + "\n\n" + "\n".join(train) + "\n\n" + note


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
        choices=["mlp", "conv", "ablation", "startup", "scaling", "folder", "waits", "zoo", "sweeps", "whole"],
    )
    p.add_argument("--reps", type=int, default=3)
    p.add_argument(
        "--wait-spins", type=int, nargs="*", default=[], help="waits suite: also these GOMP_SPINCOUNT values"
    )
    p.add_argument("--wait-bf16", action="store_true", help="waits suite: the bf16 step (vae-train's default here)")
    p.add_argument(
        "--baseline-exe",
        default="",
        help="startup, whole, zoo, mlp and conv suites: another installation's vae-train (e.g. the previous commit's "
        ".venv/bin/vae-train), measured side by side",
    )
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
    p.add_argument("--folder-sizes", type=int, nargs="+", default=[50_000, 200_000], help="folder suite: train images")
    p.add_argument("--folder-test", type=int, default=2000, help="folder suite: test images (the same at every size)")
    p.add_argument(
        "--folder-root", default="/tmp/vae-cli-bench-folder", help="folder suite: images and caches (reused)"
    )
    p.add_argument("--folder-model", default="mlp", choices=["mlp", "conv"])
    p.add_argument("--folder-workers", type=int, default=2, help="folder suite: dataset.num_workers")
    p.add_argument("--stream-budget-mb", type=int, default=256, help="folder suite: memory budget of the streamed runs")
    p.add_argument("--zoo-epochs", type=int, default=1, help="zoo suite: epochs per run")
    p.add_argument("--zoo-variants", nargs="*", default=[], choices=list(ZOO), help="zoo suite: only these")
    p.add_argument("--zoo-extra", nargs="*", default=[], help="zoo suite: overrides for every variant (precision...)")
    p.add_argument("--out", default="", help="also write the tables and raw runs as JSON here")
    p.add_argument("--smoke", action="store_true", help="tiny: 1 rep, 1 epoch, 1280 images; proves it runs")
    args = p.parse_args()
    if args.smoke:
        args.reps, args.epochs, args.conv_epochs, args.ablation_epochs, args.subset = 1, 1, 1, 1, 1280
        args.zoo_epochs = 1
        args.folder_sizes, args.folder_test, args.stream_budget_mb = [300, 600], 100, 1
        args.folder_root = str(Path(args.folder_root) / "smoke")
    args.data_root = str(Path(args.data_root).resolve())
    load = read_machine_load()
    wait_env = choose_wait_env(CpuWait(args.cpu_wait), load)
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):  # explicit, so every contender (vae-train too) gets the same
        ENV.pop(key, None)
    ENV.update(wait_env)
    stage_data(Path(args.data_root))

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    info = (
        f"torch {torch.__version__}, {os.cpu_count()} CPU threads, devices: {', '.join(devices)}, "
        f"{describe(wait_env)} (--cpu-wait={args.cpu_wait}, load {load.load_1min:.1f}, "
        f"{load.runnable_others} other tasks runnable); "
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
        elif suite == "folder":
            sections.append(suite_folder(args))
        elif suite == "waits":
            sections.append(suite_waits(args))
        elif suite == "zoo":
            sections.append(suite_zoo(args))
        elif suite == "sweeps":
            sections.append(suite_sweeps(args))
        elif suite == "whole":
            sections.append(suite_whole(args))
        print("\n\n".join(sections[-1:]), flush=True)
        print(flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"info": info, "tables": sections}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Soak test: many short `vae-train` runs, sequential and concurrent, some killed (SIGKILL / SIGTERM) at random
moments and resumed; then every run directory is checked for completeness and every checkpoint is loaded.

Every run uses the same config and seed, so every run, killed or not, must end with weights bit-identical to an
uninterrupted reference run: a strong check that no kill ever lost or corrupted state. Three more scenarios hit
run-directory ownership (vae_cli/runs/ownership.py):

- ``writers``: several processes started at once into one run directory: exactly one trains, every other one is
  refused (exit 2), and the run ends identical to the reference;
- ``resume-while-running``: ``trainer.resume=`` of a run, again and again while it trains: each refused, the run
  unharmed;
- ``sweep-kills``: a sweep killed with SIGKILL at random moments and started again with the same command each time:
  finished jobs are never retrained or rewritten, and every job ends identical to the same job of an uninterrupted
  sweep;
- ``sweep-signals``: a joblib sweep (2 workers) and an Optuna study (trials in batches of 2) each stopped by SIGINT (to
  the process group, as Ctrl-C), SIGTERM or SIGKILL (to the parent) at random moments and continued with the same
  command: true exit statuses, no traceback, no worker alive after its parent, and every job ends bit-identical to
  an uninterrupted run of its configuration.

    python benchmarks/soak.py --runs 12 --concurrency 3 --kill-fraction 0.5
    python benchmarks/soak.py --scenarios writers resume-while-running sweep-kills
    python benchmarks/soak.py --scenarios sweep-signals --signal-kills 6

Not part of the default test run (it takes minutes). Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vae_cli.training.checkpoint import load_checkpoint

CONFIG = [
    "dataset=synthetic",
    "dataset.num_train=1152",
    "dataset.num_test=128",
    "dataset.val_size=128",
    "model.hidden_dims=[64]",
    "model.latent_dim=4",
    "trainer.epochs=3",
    "trainer.batch_size=64",
    "trainer.log_every_steps=4",
    "trainer.num_images=16",
    "trainer.checkpoint_every_steps=1",  # a checkpoint write every step, so kills often land mid-write
]


@dataclass
class RunReport:
    name: str
    mode: str
    kills: list[str] = field(default_factory=list)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def vae_train() -> str:
    local = Path(sys.executable).parent / "vae-train"
    return str(local) if local.exists() else "vae-train"


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([vae_train(), *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def one_run(root: Path, name: str, mode: str, kill: bool, rng: random.Random) -> RunReport:
    report = RunReport(name, mode)
    run_dir = root / name
    t0 = time.perf_counter()
    proc = start([*CONFIG, f"hydra.run.dir={run_dir}"], root)
    if kill:
        for _ in range(rng.randint(1, 3)):
            deadline = time.time() + 120
            while not (run_dir / "checkpoints" / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 1.0))
            if proc.poll() is not None:
                break
            sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
            proc.send_signal(sig)
            proc.wait()
            report.kills.append(sig.name)
            try:
                load_checkpoint(run_dir / "checkpoints" / "last.pt")
            except Exception as exc:
                report.problems.append(f"after {sig.name}: last.pt does not load: {exc}")
            proc = start([f"trainer.resume={run_dir}"], root)
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        report.problems.append(f"exit {proc.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}")
    report.seconds = time.perf_counter() - t0
    return report


def check_run_dir(run_dir: Path, reference: dict[str, torch.Tensor] | None) -> list[str]:
    problems = []
    for rel in (".hydra/config.yaml", "metrics.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        if not (run_dir / rel).is_file():
            problems.append(f"missing {rel}")
    if not list(run_dir.glob("events.out.tfevents.*")):
        problems.append("no TensorBoard events")
    if not list((run_dir / "images").glob("*.png")):
        problems.append("no PNG grids")
    if list((run_dir / "checkpoints").glob(".*.tmp")):
        problems.append("stale temporary checkpoint files")
    for name in ("last.pt", "best.pt"):
        try:
            load_checkpoint(run_dir / "checkpoints" / name)
        except Exception as exc:
            problems.append(f"{name} does not load: {exc}")
    if (run_dir / "metrics.json").is_file() and json.loads((run_dir / "metrics.json").read_text())["epochs"] != 3:
        problems.append("metrics.json does not report 3 epochs")
    if reference is not None and (run_dir / "checkpoints" / "last.pt").is_file():
        weights = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
        if any(not torch.equal(weights[k], reference[k]) for k in reference):
            problems.append("final weights differ from the uninterrupted reference run")
    return problems


def weights_of(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def tree_digest(root: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def writers(root: Path, reference: dict[str, torch.Tensor], n: int) -> list[str]:
    """``n`` processes into one run directory at once: one trains, the rest are refused."""
    run_dir = root / "shared"
    procs = [start([*CONFIG, f"hydra.run.dir={run_dir}"], root) for _ in range(n)]
    results = [(p.wait(timeout=600), p.stderr.read() if p.stderr else "") for p in procs]
    codes = [code for code, _ in results]
    problems = []
    if codes.count(0) != 1 or any(c not in (0, 2) for c in codes):
        problems.append(f"exit codes {codes}: exactly one 0, the rest 2 expected")
    refused = [err for code, err in results if code == 2]
    if not all("in use by" in err or "already holds" in err for err in refused):
        problems.append("a refused writer did not say why")
    if len(list(run_dir.glob("events.out.tfevents.*"))) != 1:
        problems.append("more than one writer's TensorBoard events in the run directory")
    problems += check_run_dir(run_dir, reference)
    return problems


def resume_while_running(root: Path, reference: dict[str, torch.Tensor], attempts: int) -> list[str]:
    run_dir = root / "busy"
    proc = start([*CONFIG, f"hydra.run.dir={run_dir}"], root)
    while not (run_dir / "checkpoints" / "last.pt").exists() and proc.poll() is None:
        time.sleep(0.01)
    problems, tried = [], 0
    while proc.poll() is None and tried < attempts:
        attempt = subprocess.run([vae_train(), f"trainer.resume={run_dir}"], cwd=root, capture_output=True, text=True)
        tried += 1
        if attempt.returncode == 0 and proc.poll() is None:
            problems.append("a resume ran while the run was still training")
        elif attempt.returncode not in (0, 2):
            problems.append(f"a resume attempt ended with exit {attempt.returncode}")
    proc.wait(timeout=600)
    if proc.returncode != 0:
        problems.append(f"the run itself ended with exit {proc.returncode}")
    return problems + check_run_dir(run_dir, reference) + ([] if tried else ["no attempt was made while it trained"])


def sweep_kills(root: Path, kills: int, rng: random.Random) -> list[str]:
    """A sweep SIGKILLed ``kills`` times and restarted with the same command; compared with an unkilled one."""
    axis = "trainer.seed=0,1,2,3"
    ref_dir, dir_ = root / "sweep_ref", root / "sweep"
    subprocess.run([vae_train(), "-m", *CONFIG, axis, f"hydra.sweep.dir={ref_dir}"], cwd=root, capture_output=True)
    command = [vae_train(), "-m", *CONFIG, axis, f"hydra.sweep.dir={dir_}"]
    problems: list[str] = []
    finished_digests: dict[str, dict[str, str]] = {}
    for _ in range(kills):
        proc = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(3.0, 9.0))
        proc.kill()
        proc.wait()
        for job in sorted(p for p in dir_.glob("[0-9]*") if (p / "metrics.json").is_file()):
            digest = tree_digest(job)
            if job.name in finished_digests and finished_digests[job.name] != digest:
                problems.append(f"finished job {job.name} was rewritten by a restart")
            finished_digests.setdefault(job.name, digest)
    final = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if final.returncode != 0:
        problems.append(f"the last restart ended with exit {final.returncode}: {final.stderr[-400:]}")
    for name, digest in finished_digests.items():
        if tree_digest(dir_ / name) != digest:
            problems.append(f"finished job {name} was rewritten by the last restart")
    for job in sorted(ref_dir.glob("[0-9]*")):
        mine = dir_ / job.name
        if not (mine / "metrics.json").is_file():
            problems.append(f"job {job.name} never finished")
            continue
        a, b = weights_of(job), weights_of(mine)
        if any(not torch.equal(a[k], b[k]) for k in a):
            problems.append(f"job {job.name}'s final weights differ from the unkilled sweep's")
    return problems


JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
OPTUNA = [
    "hydra/sweeper=optuna",
    "hydra.sweeper.n_trials=4",
    "hydra.sweeper.n_jobs=2",
    "hydra.sweeper.sampler.seed=0",
    "optim.lr=tag(log, interval(1e-4, 1e-2))",
]
STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


def children_of(pid: int) -> list[int]:
    from vae_cli.process.workers import child_processes

    return child_processes(pid)


def alive(pids: list[int]) -> list[int]:
    left = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            left.append(pid)
    return left


def stopped_and_rerun(
    root: Path, name: str, extra: list[str], kills: int, rng: random.Random
) -> tuple[Path, list[str]]:
    """A sweep stopped ``kills`` times by a random signal at a random moment (SIGINT to its process group, as a
    terminal's Ctrl-C; SIGTERM or SIGKILL to its parent, as kill, timeout or an out-of-memory killer), each time
    started again with the same command, then run to the end: exit statuses true, no worker left behind."""
    sweep = root / name
    command = [vae_train(), "-m", *CONFIG, *extra, f"hydra.sweep.dir={sweep}"]
    problems: list[str] = []
    for _ in range(kills):
        proc = subprocess.Popen(
            command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        time.sleep(rng.uniform(1.5, 8.0))  # past the interpreter's own start, where no program handles a signal
        sig = rng.choice(STOPS)
        workers = children_of(proc.pid)
        if proc.poll() is None:
            if sig == signal.SIGINT:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        _, err = proc.communicate(timeout=600)
        expected = {0, -9} if sig == signal.SIGKILL else {0, 128 + sig}
        if proc.returncode not in expected:
            problems.append(
                f"{sig.name}: exit {proc.returncode} ({err.strip().splitlines()[-1] if err.strip() else ''})"
            )
        if "Traceback" in err:
            problems.append(f"{sig.name}: a traceback")
        deadline = time.time() + 120
        while alive(workers) and time.time() < deadline:
            time.sleep(0.2)
        if alive(workers):
            problems.append(f"{sig.name}: {len(alive(workers))} worker(s) still alive 120 s after the parent ended")
    final = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if final.returncode != 0:
        problems.append(f"the last restart ended with exit {final.returncode}: {final.stderr[-400:]}")
    return sweep, problems


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights_of(a), weights_of(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def sweep_signals(root: Path, kills: int, rng: random.Random) -> dict[str, list[str]]:
    """joblib and Optuna sweeps stopped by signals and continued: every job ends identical to an uninterrupted
    run of the same configuration."""
    results = {}
    axis = ["trainer.seed=0,1,2,3"]
    ref = root / "joblib_ref"
    subprocess.run(
        [vae_train(), "-m", *CONFIG, *JOBLIB, *axis, f"hydra.sweep.dir={ref}"], cwd=root, capture_output=True
    )
    sweep, problems = stopped_and_rerun(root, "joblib", [*JOBLIB, *axis], kills, rng)
    for job in sorted(ref.glob("[0-9]*")):
        if not (sweep / job.name / "metrics.json").is_file():
            problems.append(f"job {job.name} never finished")
        elif not same_weights(job, sweep / job.name):
            problems.append(f"job {job.name}'s final weights differ from the uninterrupted sweep's")
    results[f"a 4-job joblib sweep stopped {kills} times, continued"] = problems
    sweep, problems = stopped_and_rerun(root, "optuna", OPTUNA, kills, rng)
    import optuna

    study = optuna.load_study(study_name="vae-train", storage=f"sqlite:///{sweep / 'optuna.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) != 4:
        problems.append(f"{len(complete)} trials complete, 4 expected")
    for trial in complete:
        # The trial's job folder (job numbers follow trial numbers), against one uninterrupted run of its lr.
        job = sweep / str(trial.number)
        single = root / f"optuna_single_{trial.number}"
        lr = trial.params["optim.lr"]
        subprocess.run(
            [vae_train(), *CONFIG, f"optim.lr={lr}", f"hydra.run.dir={single}"], cwd=root, capture_output=True
        )
        if not (job / "checkpoints" / "last.pt").is_file() or not same_weights(job, single):
            problems.append(f"trial {trial.number} (optim.lr={lr}) differs from an uninterrupted run of its lr")
    results[f"a 4-trial Optuna study stopped {kills} times, continued"] = problems
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=12, help="runs in all (half sequential, half concurrent)")
    parser.add_argument("--concurrency", type=int, default=3, help="runs at a time in the concurrent half")
    parser.add_argument("--kill-fraction", type=float, default=0.5, help="share of runs killed and resumed")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=["runs", "writers", "resume-while-running", "sweep-kills", "sweep-signals"],
        choices=["runs", "writers", "resume-while-running", "sweep-kills", "sweep-signals"],
    )
    parser.add_argument(
        "--signal-kills", type=int, default=4, help="signals sent to each of the joblib and Optuna sweeps"
    )
    parser.add_argument("--writers", type=int, default=4, help="processes started at once into one run directory")
    parser.add_argument("--sweep-kills", type=int, default=4, help="SIGKILLs of the sweep before its last restart")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="vae-soak-"))
    t_start = time.perf_counter()
    reference = one_run(root, "reference", "reference", False, rng)
    ref_weights = weights_of(root / "reference")
    ownership: dict[str, list[str]] = {}
    if "writers" in args.scenarios:
        ownership[f"{args.writers} writers into one run directory"] = writers(root, ref_weights, args.writers)
    if "resume-while-running" in args.scenarios:
        ownership["trainer.resume of a run while it trains"] = resume_while_running(root, ref_weights, 5)
    if "sweep-kills" in args.scenarios:
        ownership[f"a 4-job sweep SIGKILLed {args.sweep_kills} times, restarted"] = sweep_kills(
            root, args.sweep_kills, rng
        )
    if "sweep-signals" in args.scenarios:
        ownership.update(sweep_signals(root, args.signal_kills, rng))
    for scenario, problems in ownership.items():
        print(f"{scenario:<55} {'; '.join(problems) or 'ok'}")
    if "runs" not in args.scenarios:
        failed = [p for p in ownership.values() if p]
        print(
            f"\n{len(ownership)} ownership scenarios: {len(ownership) - len(failed)} ok; {time.perf_counter() - t_start:.0f} s"
        )
        if not failed and not args.keep:
            shutil.rmtree(root)
        return 1 if failed else 0
    n_seq = args.runs // 2
    plans = [
        (f"run{i:02d}", "sequential" if i < n_seq else "concurrent", rng.random() < args.kill_fraction)
        for i in range(args.runs)
    ]
    seeds = {name: random.Random(rng.random()) for name, _, _ in plans}
    reports = [one_run(root, name, mode, kill, seeds[name]) for name, mode, kill in plans if mode == "sequential"]
    with ThreadPoolExecutor(args.concurrency) as pool:
        futures = [
            pool.submit(one_run, root, name, mode, kill, seeds[name])
            for name, mode, kill in plans
            if mode == "concurrent"
        ]
        reports += [f.result() for f in futures]
    for report in [reference, *reports]:
        report.problems += check_run_dir(root / report.name, ref_weights)
    total = time.perf_counter() - t_start

    print(f"{'run':<10} {'mode':<11} {'kills':<28} {'seconds':>8}  result")
    for r in [reference, *reports]:
        print(
            f"{r.name:<10} {r.mode:<11} {','.join(r.kills) or '-':<28} {r.seconds:8.1f}  {'; '.join(r.problems) or 'ok'}"
        )
    killed = [r for r in reports if r.kills]
    failed = [r for r in [reference, *reports] if r.problems]
    verdict = (
        "every run directory complete, every checkpoint loading, all final weights identical to the reference"
        if not failed
        else f"{len(failed)} run(s) FAILED the checks above"
    )
    print(
        f"\n{len(reports)} runs ({n_seq} sequential, {len(reports) - n_seq} concurrent x{args.concurrency}), "
        f"{len(killed)} killed {sum(len(r.kills) for r in killed)} times and resumed: {verdict}; {total:.0f} s in all."
    )
    failed = failed or [p for p in ownership.values() if p]
    if not args.keep and not failed:
        shutil.rmtree(root)
    else:
        print(f"run directories kept in {root}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

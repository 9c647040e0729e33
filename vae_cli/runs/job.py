"""One ``vae-train`` job, from the config Hydra composed to a finished (or truthfully failed) run directory.

Order matters here, because nothing may be written into a directory before it is known to be ours:

1. the config is resolved (a bad ``${...}`` interpolation is a message, not a traceback);
2. the run directory is claimed (``vae_cli.runs.ownership``): locked, and checked for a run already there;
3. only then the Hydra record (``.hydra/``, which ``train.yaml`` tells Hydra not to write itself), ``run.json`` and
   the log are written, and training runs (``vae_cli.training.session``);
4. ``run.json`` ends as finished, interrupted or failed, with the reason. A run that stopped before its first
   training step leaves nothing behind (the directory it made is removed again); one that trained leaves a
   directory that says why it stopped.

In a sweep (``-m``), a job's error is reported and recorded, and the sweep goes on with the next job; a stop signal
stops the whole sweep. Rerunning a sweep into the same sweep directory skips the jobs that finished and resumes
the ones that were interrupted.
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vae_cli.process.atomic import write_text
from vae_cli.process.errors import ConfigError, VaeCliError
from vae_cli.process.locks import DirLock
from vae_cli.process.signals import STOP, STOP_EXIT_CODES, TRAINING, StopRequested
from vae_cli.process.workers import in_sweep_worker, running_job, sweep_parent, watch_parent
from vae_cli.runs.ownership import Claim, Intent, claim, command_line
from vae_cli.runs.resolvers import CREATED_BY_RESOLVER
from vae_cli.runs.status import read_status, write_status
from vae_cli.runs.sweeps.refusals import record_refusal

log = logging.getLogger("vae_cli")


def resolve_or_explain(cfg: DictConfig) -> None:
    """Resolve every interpolation now, so a bad one is reported by name before anything runs."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "a value"
        first = str(exc).splitlines()[0]
        raise ConfigError(
            f"Could not resolve {key}: {first}. An override like 'key=${{group.key}}' must name a key that exists "
            f"(e.g. trainer.eval_batch_size='${{trainer.batch_size}}'); quote it in the shell so ${{...}} reaches "
            f"vae-train unexpanded."
        ) from None


def scratch_for_other_ranks(run_dir: Path) -> Path:
    """In a data-parallel job started by a launcher (SLURM tasks), only rank 0 writes the run directory: the other
    ranks get a scratch folder (removed at exit) for their own checkpoints, and stop writing the job's log file.
    (torchrun's ranks get theirs from vae-train's argv handling already: commands/train_argv.py.)"""
    import atexit
    import os
    import tempfile

    rank = int(os.environ.get("RANK", "0") or 0)
    if rank == 0 or Path(run_dir).name.startswith("vae-train-rank"):
        return run_dir
    scratch = Path(tempfile.mkdtemp(prefix=f"vae-train-rank{rank}-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
    return scratch


def intent_of(cfg: DictConfig, run_dir: Path, multirun: bool) -> Intent:
    resume = cfg.trainer.resume
    if resume:
        p = Path(str(resume)).expanduser()
        target = p.parent.parent if p.is_file() and p.parent.name == "checkpoints" else p
        if target.resolve() == run_dir.resolve():
            return Intent.resume
    return Intent.sweep_job if multirun else Intent.new


def write_hydra_record(run_dir: Path, cfg: DictConfig, hydra_cfg: Any, resumed: bool) -> Path:
    """What Hydra would have written into ``.hydra/`` (config, hydra config, overrides); a resume adds its own
    record under ``.hydra/resume-<time>/`` and keeps the original."""
    folder = run_dir / ".hydra"
    if resumed:
        folder = folder / f"resume-{datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}"
    write_text(folder / "config.yaml", OmegaConf.to_yaml(cfg), durable=False)
    write_text(folder / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})), durable=False)
    write_text(folder / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.overrides.task), durable=False)
    return folder


def detach_log_files(run_dir: Path) -> None:
    """Stop the job's log file (Hydra's, opened at its first line) from receiving anything: what a launcher logs
    after a refused or skipped job must not land in another run's vae-train.log."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir.absolute():
            root.removeHandler(handler)
            handler.close()


def has_results(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file() or any((run_dir / "checkpoints").glob("*.pt"))


def undo_start(held: Claim) -> None:
    """A run that stopped before training: remove what this process wrote, and put back a run it moved aside."""
    run_dir = held.path
    if has_results(run_dir):
        return
    for entry in list(run_dir.iterdir()) if run_dir.is_dir() else []:
        if entry.name != ".lock":
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink(missing_ok=True)
    if held.moved_to is not None and held.moved_to.is_dir():
        for entry in held.moved_to.iterdir():
            entry.rename(run_dir / entry.name)
        held.moved_to.rmdir()
        return
    if held.previous.kind.value == "absent" or {str(run_dir), str(run_dir.absolute())} & CREATED_BY_RESOLVER:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        (run_dir / ".lock").unlink(missing_ok=True)


def _remove_unclaimed(exc: BaseException) -> None:
    """A job that failed before it claimed its directory: the empty directory made for it goes again."""
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    made = {str(run_dir), str(run_dir.absolute())} & CREATED_BY_RESOLVER
    if not (made and run_dir.is_dir()):
        return
    # Only an empty directory nobody holds: another process that asked for the same new folder may own it now.
    lock = DirLock(run_dir)
    if lock.acquire():
        try:
            if not any(run_dir.iterdir()):
                run_dir.rmdir()
                exc.cleaned = True  # type: ignore[attr-defined]
        finally:
            lock.release()


def sweep_stopped(exc: BaseException, job: int, held: Claim | None) -> VaeCliError:
    """What a stop signal during a job of an in-process sweep ends the sweep with: the sweep's own advice (its
    command continues it), not the job's (``trainer.resume`` of one job)."""
    signum = exc.signum if isinstance(exc, StopRequested) else getattr(exc, "exit_code", 143) - 128
    where = (
        f"its state is checkpointed in {held.path}"
        if held is not None and (held.path / "checkpoints" / "last.pt").is_file()
        else "it had not checkpointed yet"
    )
    stopped = VaeCliError(
        f"The sweep was stopped by {signal.Signals(signum).name} during job {job} ({where}; it is recorded as "
        f"interrupted). The same command continues the sweep: finished jobs are kept, interrupted ones resume."
    )
    stopped.exit_code = 128 + signum  # type: ignore[attr-defined]
    return stopped


def sweep_value(metrics: dict[str, Any], metric: str) -> float:
    """What a sweeper optimizes (``trainer.sweep_metric``); NaN when the run does not have it (a failed trial)."""
    value = metrics.get(metric)
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def recorded_metric(run_dir: Path, metric: str = "val/loss") -> float | None:
    import json

    try:
        return sweep_value(json.loads((run_dir / "metrics.json").read_text()), metric)
    except (OSError, ValueError, TypeError):
        return None


def run_job(cfg: DictConfig) -> float | None:
    """Hydra's task function body: one job (see the module docstring); returns the final validation loss, which
    sweepers (Optuna) minimize, or NaN for a failed sweep job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    if not (multirun and in_sweep_worker()):
        return _run_job(cfg, hc, multirun, worker=False)
    # A launcher's worker process (joblib's loky workers): the stop handlers for its whole life (so a signal
    # stops every job it is given afterwards too), and a watch on the sweep's parent (orphans stop).
    if not STOP.installed:
        STOP.install()
    watch_parent(sweep_parent())  # type: ignore[arg-type]
    with running_job():
        return _run_job(cfg, hc, multirun, worker=True)


def _run_job(cfg: DictConfig, hc: Any, multirun: bool, worker: bool) -> float | None:
    run_dir = scratch_for_other_ranks(Path(hc.runtime.output_dir))
    overrides = [str(o) for o in OmegaConf.to_container(hc.overrides.task, resolve=False)]  # type: ignore[union-attr]
    STOP.new_job()
    held: Claim | None = None
    try:
        STOP.check()
        resolve_or_explain(cfg)
        held = claim(run_dir, intent_of(cfg, run_dir, multirun), overrides, bool(cfg.trainer.overwrite))
        if held.action == "skip":
            print(f"vae-train: {run_dir} finished in an earlier run of this sweep; kept as it is.", file=sys.stderr)
            detach_log_files(run_dir)
            return recorded_metric(run_dir, str(cfg.trainer.sweep_metric))
        return _train_in(held, cfg, hc, overrides)
    except (VaeCliError, StopRequested) as exc:
        _record_failure(held, exc)
        stopped = isinstance(exc, StopRequested) or getattr(exc, "exit_code", 2) in STOP_EXIT_CODES
        if not multirun:
            raise  # a single run: the stop ends the process, with its message
        if stopped and not worker:
            raise sweep_stopped(exc, hc.job.num, held) from None  # an in-process sweep: the stop ends it
        if stopped:
            # A worker: the job is recorded as interrupted; the parent, which was signalled, ends the sweep with
            # the message and the exit status (raising here would make the launcher kill the other workers).
            print(f"vae-train: job {hc.job.num} ({' '.join(overrides)}) stopped: {exc}", file=sys.stderr)
            return math.nan
        print(f"vae-train: job {hc.job.num} ({' '.join(overrides)}) failed: {exc}", file=sys.stderr)
        if held is None:  # nothing of it is in its folder: the sweep folder says it failed
            record_refusal(run_dir.parent, int(hc.job.num), str(exc))
        return math.nan
    except Exception as exc:  # a bug: the run says so; a sweep goes on, a single run keeps the traceback
        _record_failure(held, exc)
        if not multirun:
            raise
        log.exception("job %s failed", hc.job.num)
        return math.nan
    finally:
        if held is None or (held.record is None and not held.created):
            detach_log_files(run_dir)  # nothing of this process's goes into a directory it was refused
        if held is not None:
            held.release()


def _train_in(held: Claim, cfg: DictConfig, hc: Any, overrides: list[str]) -> float | None:
    run_dir = held.path
    if held.action == "resume" and not cfg.trainer.resume:
        cfg.trainer.resume = str(run_dir)  # a sweep job interrupted earlier continues where it stopped
    from vae_cli.process.cpu_threads import apply_thread_count, apply_wait_policy, thread_count

    # Before torch is imported: the OpenMP runtime reads its wait policy (and thread count) once.
    wait_policy = apply_wait_policy(cfg.trainer.cpu_wait)
    threads = apply_thread_count(thread_count(cfg.trainer.cpu_threads, hc.get("launcher")))
    from vae_cli.process.allocator import keep_freed_memory_for_reuse
    from vae_cli.training.session import prepare, train  # torch loads only when a run really starts (fast --help)

    # Everything that could refuse the run (the checkpoint, the merged config, the epochs) before any write.
    prepared = prepare(cfg, run_dir, overrides)
    STOP.check()
    held.lock.write_holder(command_line())
    held.record = write_hydra_record(run_dir, prepared.cfg, hc, resumed=held.action == "resume")
    # A run's identity is the overrides it was started with: a direct resume of a sweep's job (trainer.resume=
    # SWEEP/3 trainer.epochs=20) keeps the job's, so the sweep's next run still knows its job.
    recorded = read_status(run_dir).get("overrides") if held.action == "resume" else None
    write_status(
        run_dir,
        "running",
        overrides=recorded if isinstance(recorded, list) else overrides,
        command=command_line(),
        config_epochs=int(prepared.cfg.trainer.epochs),
    )
    if held.moved_to is not None:
        log.info("the run that was in %s was moved to %s (trainer.overwrite=true)", run_dir, held.moved_to)
    log.debug("CPU thread waits: %s; threads: %s", wait_policy, threads)
    log.debug("CPU memory: %s", keep_freed_memory_for_reuse())
    metrics = train(prepared.cfg, run_dir, overrides=overrides, prepared=prepared)
    if not metrics:
        return None  # a torchrun / SLURM rank > 0: rank 0 reports the job
    write_status(run_dir, "finished", epoch=metrics.get("epochs"), reason=None)
    return sweep_value(metrics, str(prepared.cfg.trainer.sweep_metric))


def _record_failure(held: Claim | None, exc: BaseException) -> None:
    """Say in the run directory why the run stopped; leave nothing if it stopped before its first training step
    in a directory it made, and leave an existing run exactly as it was if this process had not started on it."""
    if held is None:
        _remove_unclaimed(exc)
        return
    if held.action == "skip":
        return
    run_dir = held.path
    exc.run_dir = run_dir  # type: ignore[attr-defined]  # for the message the command line prints
    interrupted = isinstance(exc, StopRequested) or getattr(exc, "exit_code", 2) in STOP_EXIT_CODES
    reason = str(exc) if str(exc) else type(exc).__name__
    if TRAINING not in STOP.entered:
        fresh = held.created and not has_results(run_dir)
        if fresh and (held.intent != Intent.sweep_job or interrupted):
            undo_start(held)  # a single run leaves nothing; a sweep job's folder stays to say why it failed
            exc.cleaned = True  # type: ignore[attr-defined]
            return
        if not fresh and held.record is None:
            exc.cleaned = False  # type: ignore[attr-defined]
            return  # refused before anything was written: the run there is untouched
    exc.cleaned = False  # type: ignore[attr-defined]
    log.error("%s", reason)
    write_status(run_dir, "interrupted" if interrupted else "failed", reason=reason, overrides=held.overrides)

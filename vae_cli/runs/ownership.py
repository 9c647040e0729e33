"""Who may write a run directory: one process at a time, and never into another run.

- **The lock**: a ``flock`` on the directory itself (no file is created to take it), held while the process lives
  and released by the kernel when it dies, whatever kills it. The holder writes who it is into ``.lock`` (pid,
  host, start time, command) so a refused second writer can be told whom it waits for.
- **What is there**: ``inspect`` classifies a directory: absent, empty, a finished run (``metrics.json``), an
  interrupted one (a checkpoint, no metrics), one that failed before its first checkpoint (vae-train's files
  only), or foreign files.
- **The decision**: ``claim`` takes the lock and decides what this process may do there: start fresh, resume the
  run, skip it (a sweep job that already finished), or refuse with the choices (resume it, another directory, or
  ``trainer.overwrite=true``, which moves the old run aside to ``<dir>.replaced-<time>`` instead of deleting it).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from vae_cli.process.errors import ConfigError
from vae_cli.process.locks import LOCK_FILE, DirLock, holder_of
from vae_cli.runs.status import STATUS_FILE, read_status

# Files vae-train itself makes in a run directory (anything else there means the folder is someone else's).
OWN_NAMES = {
    ".hydra",
    STATUS_FILE,
    LOCK_FILE,
    "vae-train.log",
    "checkpoints",
    "images",
    "metrics.json",
    "eval.json",
    "projector_config.pbtxt",
}


class Kind(str, Enum):
    absent = "absent"
    empty = "empty"
    finished = "finished"
    interrupted = "interrupted"  # a checkpoint to resume from, no final metrics
    failed = "failed"  # vae-train's files, but no checkpoint: it stopped before its first one
    foreign = "foreign"  # files vae-train did not make
    not_a_folder = "not a folder"


class Intent(str, Enum):
    new = "new"  # a fresh run (vae-train, or vae-train hydra.run.dir=D)
    resume = "resume"  # trainer.resume of the run in this very directory
    sweep_job = "sweep job"  # one job of vae-train -m (a rerun of the sweep keeps what finished)


@dataclass
class RunState:
    path: Path
    kind: Kind
    status: dict[str, Any] = field(default_factory=dict)  # run.json, if any
    epoch: int | None = None
    epochs: int | None = None

    def describe(self) -> str:
        where = f" (epoch {self.epoch} of {self.epochs})" if self.epoch is not None else ""
        return {
            Kind.finished: f"a finished vae-train run{where}",
            Kind.interrupted: f"an interrupted vae-train run{where}",
            Kind.failed: "a vae-train run that stopped before its first checkpoint",
            Kind.foreign: "files that are not a vae-train run",
        }.get(self.kind, self.kind.value)


def is_own_entry(name: str) -> bool:
    return (
        name in OWN_NAMES
        or name.startswith(("events.out.tfevents.", ".metrics.json.", ".eval.json."))
        or (
            name.isdigit()  # the embedding projector's <step>/ folders
        )
    )


def inspect(path: Path) -> RunState:
    """What ``path`` holds (see ``Kind``)."""
    if not path.exists():
        return RunState(path, Kind.absent)
    if not path.is_dir():
        return RunState(path, Kind.not_a_folder)
    names = [n for n in os.listdir(path) if n != LOCK_FILE]
    if not names:
        return RunState(path, Kind.empty)
    status = read_status(path)
    if not all(is_own_entry(n) for n in names) and not status:
        return RunState(path, Kind.foreign)
    epoch, epochs = None, None
    config = status.get("config_epochs")
    if isinstance(status.get("epoch"), int):
        epoch = status["epoch"]
    if isinstance(config, int):
        epochs = config
    if (path / "metrics.json").is_file():
        return RunState(path, Kind.finished, status, epoch, epochs)
    if any((path / "checkpoints" / n).is_file() for n in ("last.pt", "best.pt")):
        return RunState(path, Kind.interrupted, status, epoch, epochs)
    return RunState(path, Kind.failed, status, epoch, epochs)


@dataclass
class Claim:
    """What this process may do in a run directory it now holds."""

    path: Path
    lock: DirLock
    action: str  # "fresh" | "resume" | "skip"
    previous: RunState
    created: bool  # this process made the directory (or found it empty): it may remove what it alone wrote
    moved_to: Path | None = None
    record: Path | None = None  # where this process wrote its Hydra record (None: nothing written yet)
    intent: Intent = Intent.new
    overrides: list[str] = field(default_factory=list)

    def release(self) -> None:
        self.lock.release()


def _aside(path: Path, label: str) -> Path:
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    candidate, n = path.with_name(f"{path.name}.{label}-{stamp}"), 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{label}-{stamp}_{n}")
    return candidate


def move_aside(path: Path, label: str) -> Path:
    """Move everything in ``path`` (but the lock) into a new sibling ``<path>.<label>-<time>``: the old run stays
    whole, just under another name, and ``path`` is empty. Renames only: nothing is copied or deleted."""
    dest = _aside(path, label)
    dest.mkdir()
    for name in os.listdir(path):
        if name != LOCK_FILE:
            os.rename(path / name, dest / name)
    return dest


def refusal(state: RunState, intent: Intent) -> ConfigError:
    path = state.path
    resume = f"vae-train trainer.resume={path}" + (" trainer.epochs=<more>" if state.kind == Kind.finished else "")
    lines = [
        f"{path} already holds {state.describe()}; nothing was written there. Choose one:",
        f"  - continue it: {resume}" if state.kind in (Kind.finished, Kind.interrupted) else None,
        "  - start the new run elsewhere: another hydra.run.dir (or none, for a fresh outputs/<date>/<time>)",
        f"  - replace it: add trainer.overwrite=true; the old run is moved to {path.name}.replaced-<time>/ beside "
        f"it, not deleted",
    ]
    if state.kind == Kind.foreign:
        lines = [
            f"{path} is not empty and holds files that are not a vae-train run; vae-train writes a run only into a "
            f"new or empty folder (or into its own run, with trainer.resume). Choose an empty folder as "
            f"hydra.run.dir, or leave it out for a fresh outputs/<date>/<time>.",
        ]
    return ConfigError("\n".join(line for line in lines if line))


def claim(path: Path, intent: Intent, overrides: list[str] | None = None, overwrite: bool = False) -> Claim:
    """Lock ``path`` (created if missing) and decide what this process does there; raises ``ConfigError`` with
    the choices when it may not write there. Nothing is written into a directory that holds a run: the holder's
    name goes into ``.lock`` once the job has checked everything (``DirLock.write_holder``)."""
    state = inspect(path)
    if state.kind == Kind.not_a_folder:
        raise ConfigError(
            f"The run directory {path} is a file, not a folder. Choose a folder as hydra.run.dir (or "
            f"hydra.sweep.dir for -m), or move the file away."
        )
    created = state.kind in (Kind.absent, Kind.empty)
    path.mkdir(parents=True, exist_ok=True)
    lock = DirLock(path)
    if not lock.acquire():
        raise ConfigError(
            f"{path} is in use by {holder_of(path)}. Two processes writing one run directory would mix their "
            f"checkpoints and TensorBoard curves, so this one stops without writing anything. Wait for it to "
            f"finish, stop it (Ctrl-C, or kill -INT <pid>: it checkpoints and says how to resume), or choose "
            f"another hydra.run.dir."
        )
    try:
        state = inspect(path)  # again, now that nobody else can change it
        action, moved = _decide(state, intent, overrides, overwrite)
        if action == "fresh" and state.kind not in (Kind.absent, Kind.empty):
            moved = move_aside(path, "replaced" if overwrite else "failed")
            created = True
    except BaseException:
        lock.release()
        raise
    return Claim(path, lock, action, state, created, moved, intent=intent, overrides=list(overrides or []))


def _decide(state: RunState, intent: Intent, overrides: list[str] | None, overwrite: bool) -> tuple[str, Path | None]:
    kind = state.kind
    if kind in (Kind.absent, Kind.empty):
        if intent == Intent.resume:
            raise ConfigError(f"{state.path} holds no run to resume (it is empty).")
        return "fresh", None
    if kind == Kind.foreign:
        raise refusal(state, intent)
    if intent == Intent.resume:
        if kind == Kind.failed:
            raise ConfigError(
                f"{state.path} holds a run that stopped before its first checkpoint, so there is nothing to resume "
                f"(its log says why: {state.path / 'vae-train.log'}). Start it again with trainer.overwrite=true "
                f"(the old files are moved aside), or as a new run."
            )
        return "resume", None
    if overwrite:
        return "fresh", None
    if intent == Intent.sweep_job:
        recorded = state.status.get("overrides")
        if recorded is not None and sorted(recorded) == sorted(overrides or []):
            if kind == Kind.finished:
                return "skip", None
            if kind == Kind.interrupted:
                return "resume", None
            return "fresh", None  # stopped before its first checkpoint: its files are moved aside, it runs again
        raise ConfigError(
            f"{state.path} holds a job of another sweep (overrides: {' '.join(recorded or []) or 'unknown'}), not "
            f"this job ({' '.join(overrides or [])}). Nothing was written there. Run this sweep in another "
            f"hydra.sweep.dir, or rerun the sweep that made it."
        )
    raise refusal(state, intent)


def wait_for_release(path: Path, timeout: float) -> bool:
    """Wait until nobody holds ``path``'s lock (tests and the soak benchmark use it)."""
    deadline = time.monotonic() + timeout
    lock = DirLock(path)
    while time.monotonic() < deadline:
        if lock.acquire():
            lock.release()
            return True
        time.sleep(0.05)
    return False


def command_line() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]]

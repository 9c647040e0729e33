"""A sweep's parent and the worker processes its launcher starts itself (joblib's loky workers).

A stop signal sent to the parent alone (``kill``, ``timeout``, systemd) would never reach the workers: the parent
forwards it (``forward_stop``), as SIGTERM, so a worker that also got the terminal's Ctrl-C does not take it for a
second, impatient one. A worker stops like a single run (checkpoint, "interrupted" in its run.json) and, once
signalled, stays stopped for every job it is given afterwards. A worker whose parent dies (SIGKILL, a lost session)
notices within a second (``watch_parent``) and stops the same way, instead of training on, orphaned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

PARENT_ENV = "VAE_CLI_SWEEP_PARENT"
# Children that are not workers: the resource trackers of multiprocessing and loky end with the parent by themselves.
NOT_WORKERS = ("resource_tracker",)
_watching = False
_jobs_running = 0  # jobs this worker process is in the middle of (0 or 1)


@contextlib.contextmanager
def running_job():
    """A job runs in this worker for the block: an orphaned worker waits for it to checkpoint before it exits."""
    global _jobs_running
    _jobs_running += 1
    try:
        yield
    finally:
        _jobs_running -= 1


def mark_sweep_parent() -> None:
    """This process runs a sweep: its children learn its pid (the environment they inherit)."""
    os.environ[PARENT_ENV] = str(os.getpid())


def sweep_parent() -> int | None:
    try:
        return int(os.environ[PARENT_ENV])
    except (KeyError, ValueError):
        return None


def in_sweep_worker() -> bool:
    """Whether this process is a worker its sweep's parent started itself (joblib's loky workers): a direct child.
    A job that inherited the variable further down (submitit's local controller starts its jobs, SLURM's
    srun on another node) is a single run for its own process tree, stopped by whoever started it."""
    parent = sweep_parent()
    return parent is not None and parent != os.getpid() and os.getppid() == parent


def child_processes(parent: int | None = None) -> list[int]:
    """The worker processes among ``parent``'s (default: this process's) children, from /proc."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after its ")".
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not any(word in cmdline for word in NOT_WORKERS):
                found.append(int(entry.name))
    return found


def catches_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has a SIGTERM handler installed (``SigCgt`` in /proc/<pid>/status): a worker still
    importing has none yet, and SIGTERM would kill it instead of stopping its job."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


_forwarding = False


def forward_stop(signum: int) -> list[int]:
    """Ask every worker of this process to stop (SIGTERM); returns the pids asked now. A worker still starting
    (no handler yet) and any worker started later are asked as soon as their handler is in place, by a thread
    that keeps watching while this process lives: a job never starts after the sweep was told to stop."""
    global _forwarding
    asked: set[int] = set()

    def ask_ready() -> list[int]:
        now = []
        for pid in child_processes():
            if pid in asked or not catches_sigterm(pid):
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
                now.append(pid)
            asked.add(pid)
        return now

    first = ask_ready()
    if not _forwarding:
        _forwarding = True

        def keep_asking() -> None:
            while True:
                time.sleep(0.1)
                ask_ready()

        threading.Thread(target=keep_asking, name="vae-cli-stop-forward", daemon=True).start()
    return first


def watch_parent(parent: int, every: float = 1.0, grace: float = 300.0) -> None:
    """In a worker: when ``parent`` is gone (this process was handed to another parent), stop the running job with
    SIGTERM (its handler checkpoints it and records it as interrupted), then end this process once the job has
    ended (at the latest ``grace`` seconds later): nothing is left running for a sweep that no longer exists.
    Started once per process."""
    global _watching
    if _watching:
        return
    _watching = True

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _jobs_running and time.monotonic() < deadline:
            time.sleep(0.1)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="vae-cli-parent-watch", daemon=True).start()

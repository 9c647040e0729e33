"""How torch's CPU threads wait between parallel regions: spin or sleep. Decided before torch is imported.

GNU OpenMP, torch's CPU thread pool, spins at every barrier (by default for ~300k iterations, then sleeps). On an
idle machine spinning is the fastest choice. When more threads are runnable than there are cores (parallel sweep
jobs, a machine shared with other work), a spinning thread burns the time slice the thread it waits for needs.
Measured on this project's 2-core machine (``benchmarks/speed.py --suite waits``; README "CPU thread waits"), one
epoch of the classic MLP configuration, alone and as two runs at once:

=====================================  ==========  =====================
wait policy                            alone       two runs at once
=====================================  ==========  =====================
OpenMP default (300k spins)            1.9 s       11-191 s (collapse)
``GOMP_SPINCOUNT=1000`` (bounded)      2.0 s       5.0 s
``OMP_WAIT_POLICY=PASSIVE`` (sleep)    3.2 s       3.7 s
=====================================  ==========  =====================

So ``trainer.cpu_wait=auto`` sleeps when the machine is already busy when the run starts, and otherwise spins
briefly: almost all of the idle speed, and no collapse if other jobs start later (the jobs of a parallel sweep all
start on an idle machine). Results never depend on it, only speed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

# trainer.cpu_wait's values (config/enums.py: CpuWait, a str Enum whose members equal these strings).
AUTO, SPIN, SLEEP = "auto", "spin", "sleep"
# The user's own settings always win.
USER_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# Spins before a waiting thread sleeps under trainer.cpu_wait=auto on an idle machine (see the table above).
BOUNDED_SPINS = 1000


@dataclass(frozen=True)
class MachineLoad:
    load_1min: float
    runnable_others: int | None  # runnable tasks right now besides this one; None where /proc is missing
    cpus: int


def read_machine_load() -> MachineLoad:
    cpus = os.cpu_count() or 1
    try:
        # "0.61 0.95 1.29 3/145 2109": field 4 = running/total scheduling entities (this process included).
        fields = Path("/proc/loadavg").read_text().split()
        return MachineLoad(float(fields[0]), max(int(fields[3].split("/")[0]) - 1, 0), cpus)
    except (OSError, IndexError, ValueError):
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        return MachineLoad(load, None, cpus)


def machine_is_busy(load: MachineLoad) -> bool:
    """Busy = other work keeps about half the cores runnable. The 1-minute average lags (a job that ended seconds
    ago still shows), so where the kernel says how many tasks are runnable right now, that must agree."""
    threshold = 0.5 * load.cpus
    if load.load_1min < threshold:
        return False
    return load.runnable_others is None or load.runnable_others >= threshold


def wait_setting(setting: str) -> str:
    """``trainer.cpu_wait`` as one of auto | spin | sleep (an Enum member or its string); ValueError otherwise."""
    value = str(getattr(setting, "value", setting))
    if value not in (AUTO, SPIN, SLEEP):
        raise ValueError(f"trainer.cpu_wait must be auto, spin or sleep (got {value!r})")
    return value


def choose_wait_env(setting: str, load: MachineLoad) -> dict[str, str]:
    """The OpenMP environment variables to set for ``setting`` (auto | spin | sleep) on a machine under ``load``."""
    setting = wait_setting(setting)
    if setting == SLEEP or (setting == AUTO and machine_is_busy(load)):
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    if setting == SPIN:
        return {"OMP_WAIT_POLICY": "ACTIVE"}
    return {"GOMP_SPINCOUNT": str(BOUNDED_SPINS)}


def describe(env: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in env.items())


def apply_wait_policy(setting: str) -> str:
    """Set the OpenMP wait variables for this process as ``setting`` says; returns what is in effect, in words.

    A no-op once torch is imported (the OpenMP runtime has read the environment by then: later jobs of an
    in-process sweep keep the first job's choice) or when the user set the variables.
    """
    global _DECIDED
    if _DECIDED is not None:
        return _DECIDED  # decided earlier in this process (vae-train decides before it preloads torch)
    if any(k in os.environ for k in USER_KEYS):
        return "set by the environment (" + describe({k: os.environ[k] for k in USER_KEYS if k in os.environ}) + ")"
    if "torch" in sys.modules:
        return "OpenMP already started in this process"
    load = read_machine_load()
    env = choose_wait_env(setting, load)
    os.environ.update(env)
    now = "" if load.runnable_others is None else f", {load.runnable_others} other tasks runnable"
    _DECIDED = f"{describe(env)} (trainer.cpu_wait={wait_setting(setting)}, load {load.load_1min:.1f}{now})"
    return _DECIDED


_DECIDED: str | None = None


def parallel_jobs_of(launcher: object) -> int:
    """How many sweep jobs share this machine's cores: the joblib launcher's ``n_jobs`` (joblib's convention:
    -1 is every core, -2 all but one), 1 otherwise."""
    target = str(getattr(launcher, "_target_", "") or "")
    if "joblib" not in target.lower():
        return 1
    cores = os.cpu_count() or 1
    n = int(getattr(launcher, "n_jobs", -1) or -1)
    return max(1, n if n > 0 else cores + 1 + n)


def thread_count(requested: int | None, launcher: object | None = None) -> int | None:
    """torch's intra-op threads for this job: ``trainer.cpu_threads`` if given; else a SLURM task's CPUs; else the
    cores divided among parallel sweep jobs (so jobs x threads <= cores); None = torch's own default."""
    if requested is not None:
        return requested
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return int(slurm)
    jobs = parallel_jobs_of(launcher) if launcher is not None else 1
    if jobs > 1:
        return max(1, (os.cpu_count() or 1) // jobs)
    return None


def apply_thread_count(threads: int | None) -> str:
    """Set the thread count before torch starts its pool (OMP_NUM_THREADS), or on the live pool; says what."""
    if threads is None:
        return "torch's default"
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    return f"{threads} (of {os.cpu_count()} cores)"

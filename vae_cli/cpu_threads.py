"""How torch's CPU threads wait: spin (GNU OpenMP's default) or sleep. Decided before torch is imported.

GNU OpenMP, torch's CPU thread pool, spins at every barrier. On an idle machine that is the fastest choice. When
more threads are runnable than there are cores (parallel sweep jobs, a machine shared with other work), a spinning
thread burns the time slice the thread it waits for needs: on this project's busy 2-core machine a training step
went from ~10 ms to 100-500 ms. Sleeping waits (``OMP_WAIT_POLICY=PASSIVE``) avoid that collapse but cost a
wake-up per parallel region, which is measurable on an idle machine. ``trainer.cpu_wait=auto`` picks by the load
already on the machine when the run starts. Results do not depend on it, only speed.
"""

from __future__ import annotations

import os
import sys

from vae_cli.config import CpuWait

# The user's own settings always win.
USER_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def machine_is_busy(load_1min: float, cpus: int) -> bool:
    """Busy = other work already keeps about half the cores runnable: spinning then risks the collapse."""
    return load_1min >= 0.5 * cpus


def choose_wait_policy(setting: CpuWait, load_1min: float, cpus: int) -> str | None:
    """The ``OMP_WAIT_POLICY`` to set, or None to leave OpenMP's default (spin)."""
    setting = CpuWait(setting)
    if setting == CpuWait.sleep or (setting == CpuWait.auto and machine_is_busy(load_1min, cpus)):
        return "PASSIVE"
    if setting == CpuWait.spin:
        return "ACTIVE"
    return None


def apply_wait_policy(setting: CpuWait) -> str:
    """Set ``OMP_WAIT_POLICY`` for this process as ``setting`` says; returns what is in effect, in words.

    A no-op once torch is imported (the OpenMP runtime has read the environment by then: later jobs of an
    in-process sweep keep the first job's choice) or when the user set the variables.
    """
    if any(k in os.environ for k in USER_KEYS):
        return (
            "set by the environment (" + ", ".join(f"{k}={os.environ[k]}" for k in USER_KEYS if k in os.environ) + ")"
        )
    if "torch" in sys.modules:
        return "OpenMP already started in this process"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    policy = choose_wait_policy(setting, load, os.cpu_count() or 1)
    if policy is not None:
        os.environ["OMP_WAIT_POLICY"] = policy
    return f"OMP_WAIT_POLICY={policy or 'default (spin)'} (trainer.cpu_wait={CpuWait(setting).value}, load {load:.1f})"

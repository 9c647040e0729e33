"""``hydra/launcher=joblib`` for ``vae-train -m``: the plugin's launcher, stopped truthfully.

A stop signal sent to the sweep reaches workers that are still starting (importing torch, before their handlers are
installed: ``vae_cli.process.workers``), and a Ctrl-C in the terminal reaches every worker at once: such a worker
dies, and joblib then raises ``TerminatedWorkerError`` out of the launch, which Hydra would print as a traceback with
exit status 1. Here, when the parent itself was signalled, that failure is the stop it is: ``StopRequested``, which
vae-train reports as a stopped sweep (the same command continues it), exit 128 + the signal.

Its workers start with SIGINT blocked until their handlers are in place (``workers_start_with_sigint_blocked``).

vae-train points ``hydra/launcher=joblib`` at this class (``vae_cli.commands.train_argv.launcher_argv``).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator, Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

from vae_cli.process.signals import STOP, StopRequested


@contextlib.contextmanager
def workers_start_with_sigint_blocked() -> Iterator[None]:
    """Workers are started with SIGINT blocked (a signal mask survives fork and exec): a terminal's Ctrl-C that
    reaches a worker while its interpreter is still starting waits, pending, until the worker's own handler is in
    place and unblocks it (``vae_cli.runs.job``), instead of killing the interpreter mid-start with its own
    traceback. Only the spawning call is masked: a Ctrl-C to the parent in that instant is delivered right after."""
    from joblib.externals.loky.backend import popen_loky_posix

    original = popen_loky_posix.Popen._launch

    def launch(self: Any, process_obj: Any) -> Any:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return original(self, process_obj)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    popen_loky_posix.Popen._launch = launch
    try:
        yield
    finally:
        popen_loky_posix.Popen._launch = original


class StoppableJoblibLauncher(JoblibLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        try:
            with workers_start_with_sigint_blocked():
                return super().launch(job_overrides, initial_job_idx)
        except Exception:
            if STOP.received is None:
                raise  # not a stop: a real failure keeps its traceback
            stop = StopRequested(STOP.received, "the sweep")
            stop.sweep = True  # type: ignore[attr-defined]
            raise stop from None

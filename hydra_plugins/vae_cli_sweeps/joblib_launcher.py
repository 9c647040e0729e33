"""``hydra/launcher=joblib`` for ``vae-train -m``: the plugin's launcher, stopped truthfully.

A stop signal sent to the sweep reaches workers that are still starting (importing torch, before their handlers are
installed: ``vae_cli.process.workers``), and a Ctrl-C in the terminal reaches every worker at once: such a worker
dies, and joblib then raises ``TerminatedWorkerError`` out of the launch, which Hydra would print as a traceback with
exit status 1. Here, when the parent itself was signalled, that failure is the stop it is: ``StopRequested``, which
vae-train reports as a stopped sweep (the same command continues it), exit 128 + the signal.

Its workers run in a session of their own, so a terminal's Ctrl-C reaches them through the parent only
(``workers_in_their_own_session``).

vae-train points ``hydra/launcher=joblib`` at this class (``vae_cli.commands.train_argv.launcher_argv``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

from vae_cli.process.signals import STOP, StopRequested


@contextlib.contextmanager
def workers_in_their_own_session() -> Iterator[None]:
    """Workers are started in a session (and process group) of their own: a terminal's Ctrl-C, which goes to the
    foreground process group, reaches the parent only, and the parent asks each worker to stop once the worker's
    handler is in place (``vae_cli.process.workers.forward_stop``). Without this, a Ctrl-C that lands while a
    worker's interpreter is still starting kills it with Python's own traceback, before any code of ours runs."""
    import _posixsubprocess

    from joblib.externals.loky.backend import fork_exec as loky_fork_exec

    original = loky_fork_exec.fork_exec

    def fork_exec(cmd: Any, keep_fds: Any, env: Any = None) -> Any:
        real = _posixsubprocess.fork_exec

        def with_setsid(*args: Any) -> Any:
            args_list = list(args)
            args_list[15] = True  # call_setsid (after restore_signals), the same place in Python 3.8 to 3.14
            return real(*args_list)

        _posixsubprocess.fork_exec = with_setsid
        try:
            return original(cmd, keep_fds, env)
        finally:
            _posixsubprocess.fork_exec = real

    loky_fork_exec.fork_exec = fork_exec
    try:
        yield
    finally:
        loky_fork_exec.fork_exec = original


class StoppableJoblibLauncher(JoblibLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        try:
            with workers_in_their_own_session():
                return super().launch(job_overrides, initial_job_idx)
        except Exception:
            if STOP.received is None:
                raise  # not a stop: a real failure keeps its traceback
            stop = StopRequested(STOP.received, "the sweep")
            stop.sweep = True  # type: ignore[attr-defined]
            raise stop from None

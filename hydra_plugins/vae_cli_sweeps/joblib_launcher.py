"""``hydra/launcher=joblib`` for ``vae-train -m``: the plugin's launcher, stopped truthfully.

A stop signal sent to the sweep reaches workers that are still starting (importing torch, before their handlers are
installed: ``vae_cli.process.workers``), and a Ctrl-C in the terminal reaches every worker at once: such a worker
dies, and joblib then raises ``TerminatedWorkerError`` out of the launch, which Hydra would print as a traceback with
exit status 1. Here, when the parent itself was signalled, that failure is the stop it is: ``StopRequested``, which
vae-train reports as a stopped sweep (the same command continues it), exit 128 + the signal.

vae-train points ``hydra/launcher=joblib`` at this class (``vae_cli.commands.train_argv.launcher_argv``).
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

from vae_cli.process.signals import STOP, StopRequested


class StoppableJoblibLauncher(JoblibLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        try:
            return super().launch(job_overrides, initial_job_idx)
        except Exception:
            if STOP.received is None:
                raise  # not a stop: a real failure keeps its traceback
            stop = StopRequested(STOP.received, "the sweep")
            stop.sweep = True  # type: ignore[attr-defined]
            raise stop from None

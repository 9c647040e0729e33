"""``hydra/sweeper=optuna`` that resumes: hydra-optuna-sweeper's sweeper, with the study continued instead of
restarted when the same sweep command runs again into the same sweep directory.

vae-train points ``hydra/sweeper=optuna`` here (``hydra.sweeper._target_``) and stores the study in SQLite in the
sweep directory (``hydra.sweeper.storage``, ``study_name=vae-train``), unless the command line sets them. Then:

- ``n_trials`` counts the whole study: a rerun asks only for the trials still missing;
- job numbers continue after the study's trials, so a resumed study never writes into an earlier trial's folder
  (the plugin restarts them at 0);
- trials left RUNNING by a killed sweep are marked failed and their parameters asked again;
- a failed or NaN trial (vae-train returns NaN for a job that failed) is a failed trial; when no trial completed,
  the sweep says so instead of crashing on Optuna's "no trials are completed yet".

Hydra imports this module when it scans for plugins at every start: Optuna is imported only when a sweep runs.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)
_IMPL: type | None = None


@contextlib.contextmanager
def non_finite_values_fail_trials() -> Iterator[None]:
    """While the plugin's loop runs: a trial told a NaN or infinite value (a failed job: vae-train returns NaN) is
    told FAIL instead, without values; Optuna 2 would raise on the value, and the plugin's fallback again
    ("values cannot be specified when state is FAIL"), ending the whole sweep."""
    import optuna

    original = optuna.study.Study.tell

    def tell(self, trial, values=None, state=optuna.trial.TrialState.COMPLETE):  # type: ignore[no-untyped-def]
        numbers = [values] if isinstance(values, (int, float)) else list(values or [])
        if values is not None and not all(math.isfinite(float(v)) for v in numbers):
            state, values = optuna.trial.TrialState.FAIL, None
        if state in (optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED):
            values = None
        return original(self, trial, values=values, state=state)

    optuna.study.Study.tell = tell  # type: ignore[method-assign]
    try:
        yield
    finally:
        optuna.study.Study.tell = original  # type: ignore[method-assign]


def resumable_impl() -> type:
    """The plugin's ``OptunaSweeperImpl`` with the resume behaviour (built on first use: it imports Optuna)."""
    global _IMPL
    if _IMPL is not None:
        return _IMPL
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

    class ResumableImpl(OptunaSweeperImpl):
        def sweep(self, arguments: list[str]) -> None:
            if isinstance(self.storage, str) and self.storage.startswith("sqlite:///"):
                Path(self.storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            existing = self._existing_trials()
            total = self.n_trials
            if existing:
                finished = [t for t in existing if t.state.is_finished()]
                stale = [t for t in existing if t.state == optuna.trial.TrialState.RUNNING]
                study = optuna.load_study(study_name=self.study_name, storage=self.storage)
                for trial in stale:  # a killed sweep's trials: failed, and asked again
                    study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
                    study.enqueue_trial(trial.params)
                self.job_idx = len(existing)
                self.n_trials = max(0, total - len(finished))
                log.info(
                    "Continuing study %s: %d trials finished, %d to go (of n_trials=%d)%s",
                    self.study_name,
                    len(finished),
                    self.n_trials,
                    total,
                    f"; {len(stale)} interrupted trial(s) asked again" if stale else "",
                )
                if self.n_trials == 0:
                    return
            try:
                with non_finite_values_fail_trials():
                    super().sweep(arguments)
            except ValueError:
                completed = [t for t in self._existing_trials() if t.state == optuna.trial.TrialState.COMPLETE]
                if completed:
                    raise
                log.error(
                    "No trial of study %s completed: every job failed (their run.json files say why; the sweep "
                    "summary lists them).",
                    self.study_name,
                )

        def _existing_trials(self) -> list[Any]:
            if self.storage is None or self.study_name is None:
                return []
            try:
                return optuna.load_study(study_name=self.study_name, storage=self.storage).get_trials(deepcopy=False)
            except KeyError:  # no such study yet
                return []

    _IMPL = ResumableImpl
    return _IMPL


class ResumableOptunaSweeper(OptunaSweeper):
    def __init__(self, **params: Any) -> None:
        self.sweeper = resumable_impl()(**params)

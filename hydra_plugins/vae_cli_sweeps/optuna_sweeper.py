"""``hydra/sweeper=optuna`` that resumes: hydra-optuna-sweeper's sweeper, with the study continued instead of
restarted when the same sweep command runs again into the same sweep directory.

vae-train points ``hydra/sweeper=optuna`` here (``hydra.sweeper._target_``) and stores the study in SQLite in the
sweep directory (``hydra.sweeper.storage``, ``study_name=vae-train``), unless the command line sets them. Then:

- ``n_trials`` counts the whole study: a rerun asks only for the trials still missing;
- job numbers continue after the study's trials, so a resumed study never writes into an earlier trial's folder
  (the plugin restarts them at 0);
- trials a stopped or killed run left: one whose job finished is told its value; one stopped before its end (or
  asked and never started) is marked failed and its parameters asked again; the study runs until ``n_trials``
  trials are done (complete, or failed by their own job);
- a failed or NaN trial (vae-train returns NaN for a job that failed) is a failed trial; when no trial completed,
  the sweep says so instead of crashing on Optuna's "no trials are completed yet";
- what would make the study mean nothing is refused before any trial, in one message (exit 2): ``n_trials`` or
  ``n_jobs`` below 1, an interval whose low end is above its high end, a study database that is empty or damaged
  while the sweep folder holds jobs of the study, one another process holds locked, or one that cannot be created
  (a full disk).

Hydra imports this module when it scans for plugins at every start: Optuna is imported only when a sweep runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sqlite3
import sys
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
    from omegaconf import OmegaConf
    from optuna.trial import TrialState

    from vae_cli.runs.status import read_status

    class ResumableImpl(OptunaSweeperImpl):
        def sweep(self, arguments: list[str]) -> None:
            params = self._parse_sweeper_params_config() if self.params is not None else []
            check_search(self.n_trials, self.n_jobs, [*params, *arguments])
            if isinstance(self.storage, str) and self.storage.startswith("sqlite:///"):
                database = Path(self.storage[len("sqlite:///") :])
                database.parent.mkdir(parents=True, exist_ok=True)
                check_database(database, Path(str(self.config.hydra.sweep.dir)))
            try:
                self._continue_and_sweep(arguments)
            except sqlalchemy_errors() as exc:
                refuse(
                    f"the study's database ({self.storage}) failed: {str(exc).splitlines()[0]}. Trials that ran are "
                    f"kept in their folders. If the disk is full, free space and run the same command again: the "
                    f"study continues."
                )

        def _continue_and_sweep(self, arguments: list[str]) -> None:
            existing = self._existing_trials()
            total = self.n_trials
            if existing:
                self.n_trials = self._continue(existing, total)
                if self.n_trials == 0:
                    return
            try:
                with non_finite_values_fail_trials():
                    super().sweep(arguments)
            except ValueError as exc:
                completed = [t for t in self._existing_trials() if t.state == optuna.trial.TrialState.COMPLETE]
                # Optuna's best-trial lookup when none completed: "No trials are completed yet" in memory,
                # "Record does not exist." from an RDB storage.
                no_best = ("no trials are completed", "record does not exist")
                if completed or not any(m in str(exc).lower() for m in no_best):
                    raise
                log.error(
                    "No trial of study %s completed: every job failed (their run.json files say why; the sweep "
                    "summary lists them).",
                    self.study_name,
                )

        def _continue(self, existing: list[Any], total: int) -> int:
            """Settle the trials a stopped or killed run of this study left, and return how many trials are still
            to run: a trial whose job finished is told its value (not retrained); one stopped before its end, or
            asked but never started, is marked failed and its parameters asked again (its job folder says
            ``replaced``); a trial is done when complete, or failed by its own job (a real failure is not retried).
            Job folders keep following trial numbers."""
            study = optuna.load_study(study_name=self.study_name, storage=self.storage)
            storage = study._storage  # Optuna 2.10's API (set_trial_state, set_trial_values)
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            metric = str(OmegaConf.select(self.config, "trainer.sweep_metric", default="val/loss"))
            again, told, done = [], 0, 0
            for trial in existing:
                job = sweep_dir / str(trial.number)
                state = read_status(job).get("state") if job.is_dir() else None
                if trial.state == TrialState.RUNNING and state == "finished":
                    value = finished_value(job, metric)
                    if value is not None:
                        storage.set_trial_values(trial._trial_id, [value])
                        storage.set_trial_state(trial._trial_id, TrialState.COMPLETE)
                        told, done = told + 1, done + 1
                        continue
                if trial.state in (TrialState.RUNNING, TrialState.WAITING):
                    storage.set_trial_state(trial._trial_id, TrialState.FAIL)
                    again.append(trial)
                elif trial.state == TrialState.FAIL and state in ("interrupted", "running"):
                    again.append(trial)  # stopped in a worker, which reported it as failed
                elif trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or state == "failed":
                    done += 1
            for i, trial in enumerate(again):
                study.enqueue_trial(trial.params)
                # Its job folder (job numbers follow trial numbers) says where the trial went on.
                mark_replaced(self.config, trial.number, len(existing) + i)
            self.job_idx = len(existing)  # the asked-again trials come first, numbered from here
            remaining = max(0, total - done)
            log.info(
                "Continuing study %s: %d trials done, %d to go (of n_trials=%d)%s%s",
                self.study_name,
                done,
                remaining,
                total,
                f"; {len(again)} stopped trial(s) asked again" if again else "",
                f"; {told} finished trial(s) told their value" if told else "",
            )
            return remaining

        def _existing_trials(self) -> list[Any]:
            if self.storage is None or self.study_name is None:
                return []
            try:
                return optuna.load_study(study_name=self.study_name, storage=self.storage).get_trials(deepcopy=False)
            except KeyError:  # no such study yet
                return []

    _IMPL = ResumableImpl
    return _IMPL


def refuse(message: str) -> None:
    """End the sweep before (or instead of) its trials with one message and exit status 2 (SystemExit: Hydra would
    print a traceback for any other exception)."""
    print(f"vae-train: error: hydra/sweeper=optuna: {message}", file=sys.stderr)
    sys.exit(2)


def sqlalchemy_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import DatabaseError, OperationalError

    return (OperationalError, DatabaseError)


def check_search(n_trials: int, n_jobs: int, params: list[str]) -> None:
    """Trials to run, trials at a time, and every interval of the search space the right way round."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    problems = []
    if n_trials < 1:
        problems.append(f"hydra.sweeper.n_trials={n_trials}: the study must run at least one trial")
    if n_jobs < 1:
        problems.append(f"hydra.sweeper.n_jobs={n_jobs}: at least one trial runs at a time")
    for override in OverridesParser.create().parse_overrides(params):
        value = override.value() if override.is_sweep_override() else None
        if isinstance(value, IntervalSweep) and value.start is not None and value.start > value.end:
            problems.append(
                f"{override.get_key_element()}: interval({value.start}, {value.end}) has its low end above its high "
                f"end; write interval({value.end}, {value.start})"
            )
    if problems:
        refuse("; ".join(problems) + ". Nothing was run.")


def check_database(database: Path, sweep_dir: Path) -> None:
    """The study's SQLite file: readable (not damaged), not locked by another process, and not empty (or missing)
    while the sweep folder already holds trials' jobs: a new study there would run its trials into their folders."""
    jobs = [p for p in sweep_dir.glob("[0-9]*") if p.is_dir() and p.name.isdigit()] if sweep_dir.is_dir() else []
    if not database.exists() or database.stat().st_size == 0:
        if jobs:
            refuse(
                f"{database} {'is empty' if database.exists() else 'is missing'}, but {sweep_dir} holds {len(jobs)} "
                f"job(s) of a study: it cannot be continued without its database. Nothing was written. Restore "
                f"optuna.db, or run the sweep in another hydra.sweep.dir."
            )
        return
    try:
        connection = sqlite3.connect(f"file:{database}?mode=rw", uri=True, timeout=5)
        try:
            connection.execute("SELECT name FROM sqlite_master").fetchall()
            connection.execute("BEGIN IMMEDIATE")  # the write lock a sweep needs: held by another process?
            connection.rollback()
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            refuse(
                f"{database} is locked by another process (another sweep continuing this study?). Nothing was run. "
                f"Wait for it to finish, or run this sweep in another hydra.sweep.dir."
            )
        refuse(f"{database} cannot be opened ({exc}). Nothing was run. Check the folder's permissions and free space.")
    except sqlite3.DatabaseError as exc:
        refuse(
            f"{database} is damaged ({exc}): it is not a study database. Nothing was written. Move it aside (the "
            f"jobs' folders keep their results) and run the sweep in another hydra.sweep.dir, or restore it."
        )


def finished_value(job: Path, metric: str) -> float | None:
    """The value a finished job's trial would have been told (its metrics.json's ``metric``), if finite."""
    try:
        value = float(json.loads((job / "metrics.json").read_text())[metric])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if math.isfinite(value) else None


def mark_replaced(config: Any, job: int, by: int) -> None:
    """The folder of an interrupted trial's job: replaced by job ``by``, which runs the same parameters again (so the
    summary counts it as neither finished nor failed)."""
    from vae_cli.runs.status import read_status, write_status

    folder = Path(str(config.hydra.sweep.dir)) / str(job)
    if folder.is_dir() and read_status(folder).get("state") != "finished":
        with contextlib.suppress(OSError):
            write_status(folder, "replaced", reason=f"its trial was stopped and asked again as job {by}")


class ResumableOptunaSweeper(OptunaSweeper):
    def __init__(self, **params: Any) -> None:
        self.sweeper = resumable_impl()(**params)

"""Ctrl-C, SIGTERM and SIGHUP, from the first instant of ``vae-train`` to its last write.

One ``StopSignal`` per process (``STOP``) owns the three handlers (a hang-up, a dropped ssh session or a closed
terminal, stops a run as SIGTERM does: checkpointed, resumable) while vae-train runs. What a signal does depends on
the phase the run is in (``STOP.phase(...)``), so the message it ends with is true for that moment:

- deferred phases (start-up, training, writing results): the signal is recorded and acted on at the next safe
  point: the trainer checkpoints after the current step and stops; start-up stops at its next checkpoint of
  progress (``check``), never inside an import; results being written are finished first, then the run stops;
- immediate phases (loading data, the final test evaluation): nothing there is worth finishing, so the signal
  raises ``StopRequested`` at once, with the phase in it;
- a second Ctrl-C always stops at once.

``StopRequested`` derives from ``BaseException`` (as ``KeyboardInterrupt`` does), so library code that catches
``Exception`` cannot swallow it. The exit status is 128 + the signal (130 for SIGINT, 143 for SIGTERM, 129 for
SIGHUP).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

STARTUP = "start-up"
LOADING = "loading the data"
TRAINING = "training"
EVALUATING = "the final test evaluation"
WRITING = "writing the results"
IMMEDIATE = {LOADING, EVALUATING}
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The exit statuses of a run those signals stopped (128 + the signal).
STOP_EXIT_CODES = tuple(128 + int(s) for s in SIGNALS)


class StopRequested(BaseException):
    """A stop signal acted on at once: ``signum``, the ``phase`` it arrived in, and whether it was a second one."""

    def __init__(self, signum: int, phase: str, second: bool = False) -> None:
        super().__init__(f"{signal.Signals(signum).name} during {phase}")
        self.signum, self.phase, self.second = signum, phase, second

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class StopSignal:
    """The process's SIGINT/SIGTERM/SIGHUP handler and the phase it acts by (see the module docstring)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.current = STARTUP
        self.entered: set[str] = {STARTUP}  # the phases this job has reached
        self._previous: dict[int, object] = {}
        self._depth = 0
        self._polled = 0  # inside polled(): record only, never raise
        # Called with the first signal received (a sweep's parent forwards it to its workers: process/workers.py).
        self.on_signal: list = []

    def __bool__(self) -> bool:
        return self.received is not None

    # ----- handlers --------------------------------------------------------------------------------------
    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT and not self._polled:
            raise StopRequested(signum, self.current, second=True)  # the user really wants out now
        if self.received is None:
            self.received = signum
            for hook in self.on_signal:
                hook(signum)
        if self.current in IMMEDIATE and not self._polled:
            raise StopRequested(signum, self.current)

    @property
    def installed(self) -> bool:
        return self._depth > 0

    def install(self) -> None:
        """Take over SIGINT, SIGTERM and SIGHUP (nested calls count; ``uninstall`` gives them back at depth 0)."""
        self._depth += 1
        if self._depth > 1:
            return
        self.reset()
        for sig in SIGNALS:
            # Not the main thread (some launchers): no graceful stop then, but nothing breaks either.
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth:
            return
        for sig, handler in self._previous.items():
            with contextlib.suppress(ValueError):
                signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def reset(self) -> None:
        """Forget a recorded signal and the phases reached (a fresh installation)."""
        self.received = None
        self.new_job()

    def new_job(self) -> None:
        """A sweep's next job starts at start-up again; a signal already received is kept (it stops the sweep)."""
        self.current = STARTUP
        self.entered = {STARTUP}

    # ----- phases ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Run the block in phase ``name``; a signal recorded before an immediate phase stops at its start."""
        previous, self.current = self.current, name
        self.entered.add(name)
        try:
            if name in IMMEDIATE:
                self.check()
            yield
        finally:
            self.current = previous

    @contextlib.contextmanager
    def polled(self) -> Iterator[None]:
        """A block that must not be interrupted by an exception at an arbitrary point: code that holds locks of
        threads (a thread pool's queue and semaphores: an exception between a lock's acquire and its release
        leaves it held, and the pool's shutdown then waits forever). Inside, a signal is only recorded; the block
        polls ``received`` and returns early; on leaving it, an immediate phase stops at once."""
        self._polled += 1
        try:
            yield
        finally:
            self._polled -= 1
        if self.current in IMMEDIATE:
            self.check()

    def check(self) -> None:
        """Stop here if a signal was recorded (a safe point of a deferred phase)."""
        if self.received is not None:
            raise StopRequested(self.received, self.current)

    # ----- as a context manager: the handlers for one block (tests, library use) --------------------------
    def __enter__(self) -> StopSignal:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


STOP = StopSignal()


def describe_stop(exc: StopRequested, run_dir: Path | None, cleaned: bool) -> str:
    """The message a stop acted on at once ends with: true for the phase it arrived in."""
    how = "at once (second Ctrl-C)" if exc.second else f"by {exc.name}"
    if run_dir is None or cleaned:
        where = f" The run directory {run_dir} was removed again." if run_dir is not None else ""
        return f"stopped {how} during {exc.phase}, before training began: nothing was trained or kept.{where}"
    last = run_dir / "checkpoints" / "last.pt"
    if exc.phase == EVALUATING:
        return (
            f"stopped {how} during {exc.phase}: training is complete ({last}) but the test numbers and "
            f"metrics.json were not written. Finish the evaluation (no more training) with: "
            f"vae-train trainer.resume={run_dir}"
        )
    if last.is_file():
        stamp = time.strftime("%H:%M:%S", time.localtime(last.stat().st_mtime))
        return (
            f"stopped {how} during {exc.phase}. The last checkpoint, {last} (written at {stamp}), is intact; "
            f"resume with: vae-train trainer.resume={run_dir}"
        )
    return f"stopped {how} during {exc.phase}, before the first checkpoint: there is nothing to resume in {run_dir}."


def reset_in_worker(worker_id: int = 0) -> None:
    """DataLoader workers: the default handlers (a forked worker must not raise StopRequested of its own; it is
    stopped with its parent)."""
    for sig in SIGNALS:
        with contextlib.suppress(ValueError):
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)

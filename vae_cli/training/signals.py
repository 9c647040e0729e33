"""Graceful stop on Ctrl-C / SIGTERM: the first signal asks the trainer to stop after the current step (it then
checkpoints mid-epoch and exits with the resume command); a second Ctrl-C stops at once."""

from __future__ import annotations

import contextlib
import signal
from types import FrameType, TracebackType


class StopSignal:
    """Context manager that turns SIGINT/SIGTERM into a flag the training loop polls between steps."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __bool__(self) -> bool:
        return self.received is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: the user really wants out now
        self.received = signum

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Not the main thread (some launchers): no graceful stop then, but nothing breaks either.
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

"""What a long phase shows while it runs, so no command is ever silent for long.

On a terminal: a progress bar (tqdm) on stderr with the phase, the count, the rate, the time left and a status
(e.g. the running loss); log lines printed meanwhile go above the bar, never onto its line. Elsewhere (a log
file, a pipe, a batch job): a log line every ``LINE_EVERY_S`` seconds saying where the phase stands, so a log
file is never silent for more than about that long.

A phase costs nothing per step beyond a clock read: the status (which may read a device tensor back to the host)
is asked for only when a line is written or, on a terminal, at most every ``BAR_STATUS_EVERY_S`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

log = logging.getLogger("vae_cli")

# A log file hears from a running phase at least this often (vae-train: trainer.progress_every_s; the other
# tools: the environment variable VAE_CLI_PROGRESS_EVERY_S).
LINE_EVERY_S = 30.0


def _line_every_s() -> float:
    try:
        value = float(os.environ.get("VAE_CLI_PROGRESS_EVERY_S", LINE_EVERY_S))
    except ValueError:
        return LINE_EVERY_S
    return value if value > 0 else LINE_EVERY_S


# A bar's status (the running loss) is refreshed at most this often: refreshing may cost a host sync.
BAR_STATUS_EVERY_S = 1.0
# A phase's forecast (how long it will take in all) is measured over at least this long.
FORECAST_AFTER_S = 1.0

T = TypeVar("T")


def wants_bar(mode: str = "auto") -> bool:
    """A bar for ``mode``: ``bar`` always, ``none`` never, ``auto`` when stderr is a terminal."""
    return mode == "bar" or (mode == "auto" and sys.stderr.isatty())


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 10 min``: a time a person reads at a glance."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("ch", "s", "sh", "x")) else "s")


class Phase:
    """One phase's progress (see the module docstring); made by ``phase``."""

    def __init__(
        self,
        desc: str,
        total: int | None,
        unit: str,
        bar: bool,
        status: Callable[[], str] | None,
        every_s: float | None = None,
        forecast: Callable[[float], str | None] | None = None,
        initial: int = 0,
    ) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.initial = initial  # units done before this process took the phase up (a resumed epoch): not in rates
        self.every_s = _line_every_s() if every_s is None else every_s
        # Called once with the whole phase's expected seconds, measured on its first units: a line to log (e.g. how
        # to shorten it), or None.
        self.forecast = forecast
        self._first_done: float | None = None
        self.done = initial
        self.status = status
        self.started = self._last_line = time.monotonic()
        self._last_status = self.started - BAR_STATUS_EVERY_S  # the first unit shows the status at once
        self._bar: Any = None
        if bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr
            )

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.forecast is not None:
            self._forecast(now)
        if self._bar is not None:
            if self.status is not None and now - self._last_status >= BAR_STATUS_EVERY_S:
                self._last_status = now
                self._bar.set_postfix_str(self.status(), refresh=False)
            self._bar.update(n)
        elif now - self._last_line >= self.every_s:
            self._last_line = now
            log.info("%s", self.line(now))

    def _forecast(self, now: float) -> None:
        # The first unit pays the warm-up (allocations, kernel choice): the rate is measured from the second on,
        # over at least FORECAST_AFTER_S seconds or three units.
        if self._first_done is None:
            self._first_done = now
            return
        measured, counted = now - self._first_done, self.done - self.initial
        if self.total is None or (measured < FORECAST_AFTER_S and counted < 4):
            return
        expected = (now - self.started) + (self.total - self.done) * measured / (counted - 1)
        said = self.forecast(expected) if self.forecast is not None else None
        self.forecast = None
        if said:
            log.info("%s", said)

    def line(self, now: float | None = None) -> str:
        """``epoch 2/10: 340/469 batches (72%), loss 123.4, 1.2 batches/s, about 1 min 40 s left``."""
        elapsed = (now or time.monotonic()) - self.started
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        units = plural(self.unit)
        parts = [f"{self.desc}: {self.done:,}" + (f"/{self.total:,}" if self.total else "") + f" {units}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        if self.status is not None:
            parts.append(self.status())
        if rate > 0:
            parts.append(f"{rate:.3g} {units}/s")
            if self.total:
                parts.append(f"about {duration((self.total - self.done) / rate)} left")
        return ", ".join(parts)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def phase(
    desc: str,
    total: int | None = None,
    unit: str = "batch",
    mode: str = "auto",
    status: Callable[[], str] | None = None,
    enabled: bool = True,
    every_s: float | None = None,
    forecast: Callable[[float], str | None] | None = None,
    initial: int = 0,
) -> Iterator[Phase]:
    """A phase's progress for the block: ``advance()`` after each unit of work. With a bar, log lines printed
    meanwhile are written above it; without, a line every ``every_s`` seconds (default ``LINE_EVERY_S``)."""
    p = Phase(desc, total, unit, enabled and wants_bar(mode), status, every_s, forecast, initial)
    if not enabled:
        p.advance = lambda n=1: None  # type: ignore[method-assign]
    try:
        with _log_lines_above_bar() if p._bar is not None else contextlib.nullcontext():
            yield p
    finally:
        p.close()


class _AboveBar:
    """A console stream whose writes go above the progress bars (tqdm clears them, writes, draws them again)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=self.stream, end="")

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def _log_lines_above_bar() -> Iterator[None]:
    # The console handlers keep their level and format (tqdm's own logging redirect drops the level).
    swapped = []
    for handler in [*logging.getLogger().handlers, *logging.getLogger("vae_cli").handlers]:
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stdout, sys.stderr):
            swapped.append((handler, handler.stream))
            handler.stream = _AboveBar(handler.stream)
    try:
        yield
    finally:
        for handler, stream in swapped:
            handler.stream = stream


def tracked(
    items: Iterable[T],
    desc: str,
    total: int | None = None,
    unit: str = "batch",
    mode: str = "auto",
    every_s: float | None = None,
    forecast: Callable[[float], str | None] | None = None,
) -> Iterator[T]:
    """``items``, with a phase's progress advanced by one for each."""
    with phase(desc, total, unit, mode, every_s=every_s, forecast=forecast) as p:
        for item in items:
            yield item
            p.advance()

"""The one exception family that reaches the user as a message, not a traceback.

Each message is a short paragraph that names the problem and the fix. The commands (``vae_cli.commands``) print it and exit
with status 2; anything else is a bug and keeps its traceback.
"""

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class VaeCliError(Exception):
    """A problem the user can fix (bad config, missing data, unusable checkpoint)."""


class ConfigError(VaeCliError):
    pass


class DataError(VaeCliError):
    pass


class CheckpointError(VaeCliError):
    pass


class TrainingError(VaeCliError):
    pass


class NothingToDo(VaeCliError):
    """The request is already fulfilled (exit status 0, reported as information)."""

    exit_code = 0


class Terminated(BaseException):
    """SIGTERM (what ``timeout``, ``kill`` and systemd send) or SIGHUP (a closed terminal, a dropped ssh session) to
    a tool that has no stop of its own: it stops as Ctrl-C does. A BaseException, as KeyboardInterrupt is, so no
    ``except Exception`` swallows it."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# The signals a tool stops on as on Ctrl-C (SIGINT itself is Python's KeyboardInterrupt).
TERMINATING = (signal.SIGTERM, signal.SIGHUP)
_first_signal: list[int] = []


_deferred: list[int] = []  # depth of deferred_stop blocks
_pending_interrupt: list[bool] = []


def _raise_terminated(signum: int, frame: object) -> None:
    # Raised again every 50 ms until reported_errors takes it: a library that swallows every exception around an
    # import (a bare ``except:``) would otherwise lose the stop, and the tool would run to its end.
    if signum != signal.SIGALRM:
        _first_signal[:] = _first_signal[:1] or [signum]
    if _deferred:
        return  # inside deferred_stop: raised when the block ends
    signal.signal(signal.SIGALRM, _raise_terminated)
    signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
    raise Terminated(_first_signal[0] if _first_signal else signal.SIGTERM)


def _record_interrupt(signum: int, frame: object) -> None:
    _pending_interrupt.append(True)


@contextmanager
def deferred_stop() -> Iterator[None]:
    """A block a stop must not interrupt midway, such as importing torch: an exception raised by a signal handler
    inside a Python function that C++ code called during an import (pybind11) cannot unwind, and aborts the
    process with a C++ message instead of the tool's. Ctrl-C, SIGTERM and SIGHUP arriving inside are acted on as
    soon as the block ends."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _record_interrupt) if main else None
    _deferred.append(1)
    try:
        yield
    finally:
        _deferred.pop()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)  # type: ignore[arg-type]
    if _pending_interrupt:
        _pending_interrupt.clear()
        raise KeyboardInterrupt
    if _first_signal and signal.getsignal(_first_signal[0]) is _raise_terminated:
        _raise_terminated(_first_signal[0], None)


def _take_sigterm() -> dict[int, object]:
    """SIGTERM and SIGHUP raise Terminated while the block runs, unless someone already handles them (vae-train's
    STOP); returns the handlers replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    taken = {}
    for sig in TERMINATING:
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            taken[sig] = signal.signal(sig, _raise_terminated)
    _first_signal.clear()
    return taken


@contextmanager
def reported_errors(prog: str, on_interrupt: str, take_sigterm: bool = True) -> Iterator[None]:
    """For the command-line tools: a VaeCliError becomes ``prog: error: message`` and exit status 2 (or the
    error's own ``exit_code``); Ctrl-C becomes ``on_interrupt`` and status 130, SIGTERM (SIGHUP) the same and status
    143 (129), with no traceback either way."""
    # vae-train's jobs have their own SIGTERM handling (process/signals.py: STOP), installed inside this block.
    previous = _take_sigterm() if take_sigterm else {}
    try:
        yield
    except VaeCliError as exc:
        code = getattr(exc, "exit_code", 2)
        if code == 0:  # not an error: e.g. a resume of a run that has nothing left to do
            print(f"{prog}: {exc}")
        else:
            print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(code)
    except KeyboardInterrupt:
        print(f"{prog}: {on_interrupt}", file=sys.stderr)
        sys.exit(130)
    except Terminated as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        with contextlib.suppress(OSError):  # after a hang-up the terminal may be gone
            print(f"{prog}: {signal.Signals(exc.signum).name}: {on_interrupt}", file=sys.stderr)
        sys.exit(128 + exc.signum)
    finally:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is _raise_terminated:
                signal.signal(sig, handler)  # type: ignore[arg-type]

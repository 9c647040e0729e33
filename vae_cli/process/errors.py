"""The one exception family that reaches the user as a message, not a traceback.

Each message is a short paragraph that names the problem and the fix. The commands (``vae_cli.commands``) print it and exit
with status 2; anything else is a bug and keeps its traceback.
"""

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
    """SIGTERM (what ``timeout``, ``kill`` and systemd send) to a tool that has no stop of its own: it stops as
    Ctrl-C does. A BaseException, as KeyboardInterrupt is, so no ``except Exception`` swallows it."""


def _raise_terminated(signum: int, frame: object) -> None:
    # Raised again every 50 ms until reported_errors takes it: a library that swallows every exception around an
    # import (a bare ``except:``) would otherwise lose the stop, and the tool would run to its end.
    signal.signal(signal.SIGALRM, _raise_terminated)
    signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
    raise Terminated


def _take_sigterm() -> object | None:
    """SIGTERM raises Terminated while the block runs, unless someone already handles it (vae-train's STOP)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


@contextmanager
def reported_errors(prog: str, on_interrupt: str, take_sigterm: bool = True) -> Iterator[None]:
    """For the command-line tools: a VaeCliError becomes ``prog: error: message`` and exit status 2 (or the
    error's own ``exit_code``); Ctrl-C becomes ``on_interrupt`` and status 130, SIGTERM the same and status 143,
    with no traceback either way."""
    # vae-train's jobs have their own SIGTERM handling (process/signals.py: STOP), installed inside this block.
    previous = _take_sigterm() if take_sigterm else None
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
    except Terminated:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        print(f"{prog}: SIGTERM: {on_interrupt}", file=sys.stderr)
        sys.exit(143)
    finally:
        if previous is not None and signal.getsignal(signal.SIGTERM) is _raise_terminated:
            signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]

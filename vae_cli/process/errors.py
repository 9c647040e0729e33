"""The one exception family that reaches the user as a message, not a traceback.

Each message is a short paragraph that names the problem and the fix. The commands (``vae_cli.commands``) print it and exit
with status 2; anything else is a bug and keeps its traceback.
"""

import sys
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


@contextmanager
def reported_errors(prog: str, on_interrupt: str) -> Iterator[None]:
    """For the command-line tools: a VaeCliError becomes ``prog: error: message`` and exit status 2 (or the
    error's own ``exit_code``); Ctrl-C becomes ``on_interrupt`` and status 130, with no traceback either way."""
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

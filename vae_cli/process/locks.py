"""A directory held by one process at a time: an exclusive ``flock`` on the directory itself (no file is created to
take it), released by the kernel when the process dies, whatever kills it. The holder writes who it is into
``.lock`` (pid, host, start time, command), so a refused second process can be told whom it waits for.

Run directories (``runs/ownership.py``), results files (``runs/results.py``) and a VQ-VAE run used by a second
stage (``training/code_prior.py``) use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from datetime import datetime
from pathlib import Path

from vae_cli.process.atomic import write_json

LOCK_FILE = ".lock"


class DirLock:
    """An exclusive ``flock`` on a directory: held until ``release`` or the process's death."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def write_holder(self, command: list[str]) -> None:
        """Say who holds the lock (read by a refused second writer)."""
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now().isoformat(timespec="seconds"),
            "command": command,
        }
        with contextlib.suppress(OSError):
            write_json(self.path / LOCK_FILE, holder, durable=False)

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
            self.fd = None


def holder_of(path: Path) -> str:
    """Who holds ``path``'s lock, in words (from ``.lock``)."""
    unknown = "another process (it has not said who it is yet)"
    try:
        info = json.loads((path / LOCK_FILE).read_text())
        command = " ".join(info.get("command", [])) or "vae-train"
        pid, host = int(info["pid"]), str(info["host"])
        if host == socket.gethostname():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return unknown  # the note is from an earlier holder, which has exited
            except PermissionError:
                pass  # alive, another user's
        return f"pid {pid} on {host}, running since {info['since']}: {command}"
    except (OSError, ValueError, KeyError, TypeError):
        return unknown


def is_held(path: Path) -> bool:
    """Whether another process holds ``path`` now (False for a missing folder)."""
    lock = DirLock(path)
    try:
        if lock.acquire():
            lock.release()
            return False
    except OSError:
        return False
    return True

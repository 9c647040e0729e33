"""Files written whole or not at all, readable as the user's umask says.

Every result vae-cli writes (checkpoints, metrics.json, eval.json, summaries, PNGs) goes through ``atomic_write``:
a temporary file in the same folder, flushed (and fsynced where losing the file would lose work), then renamed
over the target, so a crash, a kill or a full disk at any moment leaves either the old file or the new one, never
half of one, and no temporary file behind. ``tempfile.mkstemp`` creates files 0600; they are given the mode a
plain ``open()`` would (0666 minus the umask), so colleagues can read the results as they read other files.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def user_umask() -> int:
    """The process's umask (read by setting it and putting it back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~user_umask()


def dir_mode() -> int:
    return 0o777 & ~user_umask()


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: Path, mode: str = "wb", durable: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path``, on any error it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": "", "encoding": "utf-8"})) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_text(path: Path, text: str, durable: bool = True) -> None:
    with atomic_write(path, "w", durable=durable) as f:
        f.write(text)


def write_json(path: Path, payload: dict[str, Any], durable: bool = True) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n", durable=durable)

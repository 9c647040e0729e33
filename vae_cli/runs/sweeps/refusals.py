"""Jobs of a sweep that were refused before they could write into their own folder (it held another sweep's job,
its config failed to resolve): recorded in the sweep folder, since their own folder is not theirs to write.

The sweep's parent clears them when a run of the sweep starts; a job refused during that run records itself; the
summary (and so the exit status) counts it as not finished, with the reason. A job folder that looks finished
does not make a refused job "ok".
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from vae_cli.process.atomic import write_json

REFUSED_DIR = ".refused"


def record_refusal(sweep_dir: Path, job: int, reason: str) -> None:
    with contextlib.suppress(OSError):  # a sweep folder that cannot be written: the job's own message still says why
        (sweep_dir / REFUSED_DIR).mkdir(parents=True, exist_ok=True)
        write_json(sweep_dir / REFUSED_DIR / f"{job}.json", {"job": job, "reason": reason})


def clear_refusals(sweep_dir: Path) -> None:
    shutil.rmtree(sweep_dir / REFUSED_DIR, ignore_errors=True)


def read_refusals(sweep_dir: Path) -> dict[int, str]:
    """Job number -> why it was refused, for the jobs refused in the sweep's latest run."""
    found: dict[int, str] = {}
    folder = sweep_dir / REFUSED_DIR
    if not folder.is_dir():
        return found
    for path in folder.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(path.read_text())
            found[int(data["job"])] = str(data["reason"])
    return found

"""``run.json``: what a run directory's run is doing or did, in one small file written atomically.

``{"state": "running" | "finished" | "interrupted" | "failed", "reason": ..., "overrides": [...], "command": [...],
"started": ..., "updated": ..., "pid": ..., "host": ..., "epoch": ..., "config_epochs": ...}``

The state is what the run's own process last said; a process killed with SIGKILL says nothing, so "running"
without a live lock holder (``vae_cli.runs.ownership``) means it was killed. Sweep summaries read the state and the
reason of every job from these files, so they work for every launcher (in-process, joblib, SLURM).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from vae_cli.process.atomic import write_json
from vae_cli.process.version import __version__

STATUS_FILE = "run.json"


def read_status(run_dir: Path) -> dict[str, Any]:
    try:
        value = json.loads((run_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_status(run_dir: Path, state: str, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` and the new ``state`` into ``run.json`` (the first write also records who started it)."""
    status = read_status(run_dir)
    now = datetime.now().isoformat(timespec="seconds")
    if state == "running" and status.get("state") != "running":
        status.update(
            {"started": now, "pid": os.getpid(), "host": socket.gethostname(), "vae_cli_version": __version__}
        )
        status.pop("reason", None)
    status.update(fields)
    status.update({"state": state, "updated": now})
    with contextlib.suppress(OSError):  # a full disk must not turn a finished run into a crash
        write_json(run_dir / STATUS_FILE, status, durable=state != "running")
    return status

"""What every external tracker provides, how it is opened for a run, and the guard around it.

Opening contacts the tracker (a server, a login): if that fails, the run is refused before training with one
message naming the fix (``TrackerError``, exit 2). Later failures (a server that went down) drop that tracker
with one warning; TensorBoard and the run go on, and the run's log says what the tracker is missing.

A run directory remembers its tracker runs in ``trackers.json``, so a resumed run continues the same MLflow run
and the same W&B run instead of starting new ones.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from vae_cli.process.errors import VaeCliError

log = logging.getLogger(__name__)

STATE_FILE = "trackers.json"


class TrackerError(VaeCliError):
    """A tracker that cannot be opened: the run is refused before training."""


@dataclass(frozen=True)
class RunIdentity:
    """What a tracker run is called and grouped by: the run directory, and the sweep it belongs to (if any)."""

    run_dir: Path
    name: str  # e.g. "2026-12-06/20-31-36", or "multirun/2026-12-06/20-31-36/3" for a sweep's job
    sweep: str | None  # the sweep's folder name, e.g. "multirun/2026-12-06/20-31-36"; None for a single run
    job: str | None  # the job's number within the sweep

    @classmethod
    def of(cls, run_dir: Path) -> RunIdentity:
        run_dir = run_dir.resolve()
        # Hydra writes multirun.yaml into a sweep's folder when it starts; a job is a numbered folder inside.
        if (run_dir.parent / "multirun.yaml").is_file():
            sweep = "/".join(run_dir.parent.parts[-3:])
            return cls(run_dir, f"{sweep}/{run_dir.name}", sweep, run_dir.name)
        return cls(run_dir, "/".join(run_dir.parts[-2:]), None, None)


class ExternalTracker(Protocol):
    name: str

    def scalars(self, values: dict[str, float], step: int) -> None: ...

    def image(self, tag: str, picture: Image.Image, step: int) -> None: ...

    def finish(self, status: str, files: list[Path]) -> None:
        """``status``: finished | failed | interrupted; ``files``: result files to keep with the run."""
        ...

    def state(self) -> dict[str, Any]:
        """What resuming this tracker run needs (kept in trackers.json)."""
        ...


class Guarded:
    """A tracker whose failures after opening drop it (one warning), so the run and TensorBoard go on."""

    def __init__(self, tracker: ExternalTracker) -> None:
        self.tracker = tracker
        self.name = tracker.name
        self.failed: str | None = None

    def _call(self, what: str, *args: Any) -> None:
        if self.failed is not None:
            return
        try:
            getattr(self.tracker, what)(*args)
        except Exception as exc:  # a library's error of any kind: the tracker is dropped, never the run
            self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.warning(
                "%s stopped working (%s); the run goes on with TensorBoard and the run directory's files, and "
                "%s gets nothing more from this run",
                self.name,
                self.failed,
                self.name,
            )

    def scalars(self, values: dict[str, float], step: int) -> None:
        self._call("scalars", values, step)

    def image(self, tag: str, picture: Image.Image, step: int) -> None:
        self._call("image", tag, picture, step)

    def finish(self, status: str, files: list[Path]) -> None:
        self._call("finish", status, files)


def saved_state(run_dir: Path) -> dict[str, Any]:
    """The tracker runs this run directory was logged to before (a resume continues them)."""
    try:
        state = json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model.latent_dim": 20, ...}``: the config as one level of dotted keys (trackers' params)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out

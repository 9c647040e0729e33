"""Checkpoints: a plain dict saved atomically and loaded with ``torch.load(weights_only=True)``.

Layout (``FORMAT_VERSION`` 1)::

    {format_version, package_version, model, optimizer, scheduler, epoch, batch_in_epoch, step,
     rng: {torch, cuda}, config (plain dict), metrics, best_val}

Nothing in it needs unpickling of arbitrary classes: the config is a plain dict and RNG states are uint8 tensors,
so a checkpoint cannot run code when it is loaded.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from vae_cli import __version__
from vae_cli.errors import CheckpointError

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model", "optimizer", "epoch", "step", "config")


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically: temp file in the same folder, fsync, then rename.

    A crash or kill at any moment leaves either the old file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format_version": FORMAT_VERSION, "package_version": __version__, **state}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except RuntimeError as exc:
        # torch's zip writer reports a failed write (disk full, file size limit) as RuntimeError.
        Path(tmp).unlink(missing_ok=True)
        raise OSError(f"write failed: {str(exc).splitlines()[0]}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temp_files(folder: Path) -> None:
    """Delete temporary files left by a writer that was killed mid-write (SIGKILL gives it no chance to)."""
    for stale in folder.glob(".*.pt.*.tmp"):
        stale.unlink(missing_ok=True)


def resolve_checkpoint_path(path_or_run_dir: str | Path) -> Path:
    """A checkpoint file, or a run directory (``<dir>/checkpoints/last.pt``), as a checkpoint path."""
    p = Path(path_or_run_dir).expanduser()
    if p.is_dir():
        candidate = p / "checkpoints" / "last.pt"
        if candidate.is_file():
            return candidate
        raise CheckpointError(
            f"No checkpoint in run directory {p}: expected {candidate}. The run may have stopped before its "
            f"first epoch ended; pass a checkpoint file (…/checkpoints/last.pt or best.pt) or another run "
            f"directory."
        )
    if p.is_file():
        return p
    raise CheckpointError(
        f"Checkpoint path {p} does not exist. Pass a run directory (e.g. outputs/2024-01-31/12-00-00) or a "
        f"checkpoint file inside one (…/checkpoints/last.pt)."
    )


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; any unusable file becomes one clear CheckpointError."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Refused to load {path}: it contains objects other than tensors and plain data (torch.load with "
            f"weights_only=True rejected it), so it is not a vae-cli checkpoint or it was tampered with. Nothing "
            f"from it was executed. Use a checkpoint written by vae-train. (detail: {str(exc).splitlines()[0]})"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(
            f"Could not read checkpoint {path}: the file is truncated or corrupt ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}). Use the other checkpoint of the run "
            f"(checkpoints/best.pt or last.pt) or restart the run."
        ) from exc
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise CheckpointError(
            f"{path} is not a vae-cli checkpoint: it lacks the keys {', '.join(REQUIRED_KEYS)}. Pass a file "
            f"written by vae-train (…/checkpoints/last.pt)."
        )
    version = state["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}, newer than this vae-cli ({__version__}) reads "
            f"(up to {FORMAT_VERSION}). Upgrade vae-cli (pip install -U vae-cli) to load it."
        )
    return state


def rng_state() -> dict[str, Any]:
    """Global RNG states as tensors (NumPy/Python RNGs are not used by the training step)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

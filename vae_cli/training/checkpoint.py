"""Checkpoints: a plain dict saved atomically and loaded with ``torch.load(weights_only=True)``.

Layout (``FORMAT_VERSION`` 2)::

    {format_version, package_version, model, objective, optimizer, scheduler, epoch, batch_in_epoch, step,
     train_state, rng: {torch, cuda}, config (plain dict), terms, model_info, metrics, integrity}

Nothing in it needs unpickling of arbitrary classes: the config is a plain dict and RNG states are uint8 tensors,
so a checkpoint cannot run code when it is loaded.

``integrity`` is a SHA-256 of the content (every tensor's dtype, shape and bytes, every key and value, in key
order), checked on load: a file whose bytes changed on disk (a flipped bit, a partial copy that still unzips) is
named as corrupt instead of loading weights that silently train to NaN. Version-1 checkpoints (before the digest)
still load, unchecked.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from vae_cli.process.atomic import atomic_write
from vae_cli.process.errors import CheckpointError
from vae_cli.process.version import __version__
from vae_cli.training.run_layout import no_checkpoint_message

FORMAT_VERSION = 2
REQUIRED_KEYS = ("format_version", "model", "optimizer", "epoch", "step", "config")
DIGEST = "sha256"


def _feed(h: Any, value: Any) -> None:
    """Hash ``value`` canonically: type tags, dict keys in sorted order, tensors as dtype + shape + raw bytes."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            _feed(h, key)
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}".encode())
        for item in value:
            _feed(h, item)
    else:  # None, bool, int, float, str: repr is exact (floats round-trip)
        h.update(f"S{type(value).__name__}:{value!r};".encode())


def content_digest(state: dict[str, Any]) -> str:
    h = hashlib.new(DIGEST)
    _feed(h, {k: v for k, v in state.items() if k != "integrity"})
    return h.hexdigest()


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` (with its content digest) to ``path`` atomically: temp file in the same folder, fsync, then
    rename. A crash or kill at any moment leaves either the old file or the new one, never half of one."""
    state = {"format_version": FORMAT_VERSION, "package_version": __version__, **state}
    state["integrity"] = {"algorithm": DIGEST, "digest": content_digest(state)}
    try:
        with atomic_write(path) as f:
            torch.save(state, f)
    except RuntimeError as exc:
        # torch's zip writer reports a failed write (disk full, file size limit) as RuntimeError.
        raise OSError(f"write failed: {str(exc).splitlines()[0]}") from exc


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
        raise CheckpointError(no_checkpoint_message(p))
    if p.is_file():
        return p
    raise CheckpointError(
        f"Checkpoint path {p} does not exist. Pass a run directory (e.g. outputs/2024-01-31/12-00-00) or a "
        f"checkpoint file inside one (…/checkpoints/last.pt)."
    )


def _unpickler_detail(exc: Exception) -> str:
    """The one line of torch's weights-only refusal that says what was found (its first lines advise loading the
    file with weights_only=False, which is the advice a user must not follow for a file of unknown origin)."""
    lines = [line.strip() for line in str(exc).splitlines()]
    found = [line for line in lines if line.startswith(("Unsupported", "Trying to", "Can only"))]
    return f" (detail: {found[0]})" if found else ""


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; any unusable file becomes one clear CheckpointError."""
    try:
        with warnings.catch_warnings():
            # A foreign pickle (protocol 4) makes torch warn before it refuses the file; the refusal says enough.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Refused to load {path}: it is not a file of tensors and plain data (torch.load with weights_only=True "
            f"rejected it), so it is not a vae-cli checkpoint, or it was tampered with. Nothing from it was "
            f"executed. Use a checkpoint written by vae-train.{_unpickler_detail(exc)}"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, LookupError, TypeError) as exc:
        # A file that is no checkpoint at all (a text file, a few bytes) makes torch's unpickler fail in its own
        # ways (KeyError, IndexError): the same message.
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
    if version >= 2:
        recorded = state.get("integrity", {})
        if not isinstance(recorded, dict) or recorded.get("digest") != content_digest(state):
            raise CheckpointError(
                f"{path} is corrupt: its content does not match the checksum it was saved with (the file changed on "
                f"disk after it was written: a damaged disk or copy). Its weights are not used. Use the run's other "
                f"checkpoint (checkpoints/best.pt or last.pt): given the run directory instead of the file (trainer.resume=RUN, "
                f"vae-eval RUN, prior.vqvae=RUN), vae-cli falls back to it by itself."
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


def load_with_fallback(
    path_or_run_dir: str | Path, preferred: str = "last", map_location: str | torch.device = "cpu"
) -> tuple[Path, dict[str, Any], str | None]:
    """``(path, state, warning)`` of the checkpoint to use. A checkpoint file is loaded as given; for a run
    directory, ``checkpoints/<preferred>.pt`` and, if that one is missing, truncated or corrupt, the run's other
    checkpoint (``warning`` then says so). A corrupt file is never deleted: it stays where it is for inspection."""
    p = Path(path_or_run_dir).expanduser()
    if not p.is_dir():
        path = resolve_checkpoint_path(p)
        return path, load_checkpoint(path, map_location), None
    folder = p / "checkpoints"
    names = [preferred, "best" if preferred == "last" else "last"]
    candidates = [folder / f"{n}.pt" for n in names if (folder / f"{n}.pt").is_file()]
    if not candidates:
        resolve_checkpoint_path(p)  # raises the "no checkpoint in run directory" message
    first_error: CheckpointError | None = None
    for path in candidates:
        try:
            state = load_checkpoint(path, map_location)
        except CheckpointError as exc:
            first_error = first_error or exc
            continue
        warning = None
        if first_error is not None:
            warning = f"{first_error} Using {path} instead (epoch {state['epoch']}, step {state['step']})."
        return path, state, warning
    assert first_error is not None
    if len(candidates) > 1:
        raise CheckpointError(f"{first_error} The run's other checkpoint ({candidates[1]}) is unusable too.")
    raise first_error


def identity(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What names a checkpoint's content: its digest, epoch and step (results computed from it record these)."""
    return {"digest": (ckpt.get("integrity") or {}).get("digest"), "epoch": ckpt["epoch"], "step": ckpt["step"]}


def evaluation_weights(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The model weights to evaluate and sample with: the weight average where the run kept one
    (``trainer.ema_decay``), else the trained weights."""
    return ckpt.get("ema_model") or ckpt["model"]

"""A run's results files (``eval.json``, ``metrics.json``): read tolerantly, written under the run's lock, merged
and never silently replaced, and every entry saying what it was computed from.

- **Owned**: a writer of eval.json holds the run directory's lock (``runs/ownership.py``) from before it reads the
  checkpoint until the file is written, as training does: an evaluation and a training (or a
  ``trainer.overwrite=true``) of one run never interleave, so no run gets another model's numbers.
- **Never dropped**: an eval.json that cannot be read (damaged, truncated, not an object) is moved aside to
  ``eval.json.unreadable-<time>`` and named in a warning before a new one is written.
- **Merged**: a new entry replaces only itself; a partial disentanglement scoring (``--set metrics=[mig]``) merges
  into the entry's other scores, each with its own provenance.
- **Provenance**: each entry records the checkpoint (path, content digest, epoch, step) and, for likelihood
  entries, K, N and the seed, so that ``stale`` (the run has trained on since) and incomparable entries (another K
  or N) are told apart from the rest.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from vae_cli.process.atomic import write_json
from vae_cli.process.errors import ConfigError
from vae_cli.process.locks import DirLock, holder_of

EVAL_FILE = "eval.json"
METRICS_FILE = "metrics.json"


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when the file is missing, unreadable, not JSON, too deeply nested or not
    an object (a list, a number)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def read_eval(run_dir: Path) -> dict[str, Any]:
    """eval.json's entries (``{}`` for a missing or damaged file: readers never fail on it)."""
    return read_json_object(run_dir / EVAL_FILE) or {}


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json (``{}`` for a missing or damaged file)."""
    return read_json_object(run_dir / METRICS_FILE) or {}


@contextlib.contextmanager
def owned(run_dir: Path, what: str, busy: str | None = None) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block, or refuse (ConfigError) naming who holds it (``busy``: what that
    means and what to do, for a folder that is not a run)."""
    lock = DirLock(run_dir)
    try:
        acquired = lock.acquire()
    except OSError as exc:
        raise ConfigError(f"Cannot open {run_dir} to write {what}: {exc.strerror or exc}.") from None
    if not acquired:
        raise ConfigError(
            f"{run_dir} is in use by {holder_of(run_dir)}: "
            + (
                busy
                or "it is training (or being replaced), and results written now could describe another model than "
                "the one it ends with. Nothing was written. Run this again when it has finished, or print the "
                "numbers only with --no-write."
            )
        )
    try:
        yield
    finally:
        lock.release()


def record_entry(run_dir: Path, name: str, record: dict[str, Any], merge_scores: bool = False) -> str | None:
    """Write ``record`` as entry ``name`` of ``run_dir``'s eval.json (the caller holds the run's lock), keeping the
    other entries. ``merge_scores``: merge the record's ``scores``, ``details`` and ``provenance`` into the entry's
    (a partial scoring keeps the other scores). Returns a warning when a damaged eval.json was moved aside."""
    path = run_dir / EVAL_FILE
    existing: dict[str, Any] = {}
    warning = None
    if path.exists():
        loaded = read_json_object(path)
        if loaded is None:
            aside = path.with_name(f"{EVAL_FILE}.unreadable-{datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}")
            os.replace(path, aside)
            warning = (
                f"{path} could not be read (damaged, or not a JSON object); it was moved to {aside.name}, not "
                f"deleted, and a new eval.json was started."
            )
        else:
            existing = loaded
    old = existing.get(name)
    if merge_scores and isinstance(old, dict):
        merged = dict(old)
        for key in ("scores", "details", "provenance"):
            merged[key] = {**(old.get(key) or {}), **(record.get(key) or {})}
        merged.update({k: v for k, v in record.items() if k not in ("scores", "details", "provenance")})
        record = merged
    existing[name] = record
    write_json(path, existing)
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr)
    return warning


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def stale(entry: dict[str, Any], metrics: dict[str, Any]) -> bool:
    """Whether an eval.json entry was computed from a checkpoint the run has since replaced (it trained on): its
    recorded digest differs from the run's checkpoint of the same name in metrics.json. Unknown (an entry or a run
    from before digests were recorded) counts as not stale."""
    digest = entry.get("checkpoint_digest")
    which = Path(str(entry.get("checkpoint", ""))).stem  # best | last
    current = ((metrics.get("checkpoints") or {}).get(which) or {}).get("digest")
    return bool(digest and current and digest != current)


# vae-eval --samples: eval.json's samples_<sampler> entries, flattened to <prefix>/<key> (sample_metric_prefix).
SAMPLE_KEYS = ("fid", "kid", "precision", "recall", "num_samples", "num_real", "feature_network")
SAMPLE_SHOWN = ("fid", "kid", "precision", "recall")


def sample_metric_prefix(sampler: str) -> str:
    """The names a sampler's sample-quality numbers go by in TensorBoard and sweep summaries: ``sample/fid`` for
    the model's own prior, ``sample_<key>/fid`` for a fitted sampler."""
    return "sample" if sampler == "prior" else f"sample_{sampler}"


def sample_prefix_of(metric: str) -> str | None:
    """``sample/fid`` -> ``sample``, ``sample_gmm/fid`` -> ``sample_gmm``; None for other metrics."""
    head, _, tail = metric.partition("/")
    return head if (head == "sample" or head.startswith("sample_")) and tail and "/" not in tail else None

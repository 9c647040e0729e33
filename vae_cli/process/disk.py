"""How much disk a run directory uses, by kind of file, for the run's own log."""

from __future__ import annotations

import os
from pathlib import Path


def usage(run_dir: Path) -> dict[str, int]:
    """Bytes under ``run_dir``: ``total`` and per part (checkpoints, TensorBoard events, images, other)."""
    parts = {"checkpoints": 0, "tensorboard": 0, "images": 0, "other": 0}
    for folder, _, names in os.walk(run_dir):
        rel = Path(folder).relative_to(run_dir).parts
        for name in names:
            try:
                size = os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
            if rel[:1] == ("checkpoints",):
                parts["checkpoints"] += size
            elif name.startswith("events.out.tfevents.") or (rel and rel[0].isdigit()):
                parts["tensorboard"] += size  # events and the embedding projector's files
            elif rel[:1] == ("images",):
                parts["images"] += size
            else:
                parts["other"] += size
    parts["total"] = sum(parts.values())
    return parts


def describe(run_dir: Path) -> str:
    u = usage(run_dir)
    mb = {k: v / 2**20 for k, v in u.items()}
    return (
        f"{mb['total']:.1f} MB on disk (checkpoints {mb['checkpoints']:.1f}, TensorBoard {mb['tensorboard']:.1f}, "
        f"images {mb['images']:.1f}, other {mb['other']:.1f})"
    )

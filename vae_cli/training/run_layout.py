"""What a run directory and a sweep folder look like on disk, without torch: the start-up path of vae-train
(a resume's folder, the sweep summary's callback) reads it before torch is imported."""

from __future__ import annotations

from pathlib import Path

RUN_MARKERS = ("run.json", "checkpoints", ".hydra", "vae-train.log", "metrics.json")


def sweep_jobs(path: Path) -> list[Path]:
    """The job folders of a sweep folder (numbered folders holding a vae-train run), in job order; [] otherwise."""
    try:
        jobs = [
            p for p in path.iterdir() if p.is_dir() and p.name.isdigit() and any((p / m).exists() for m in RUN_MARKERS)
        ]
    except OSError:
        return []
    return sorted(jobs, key=lambda p: int(p.name))


def no_checkpoint_message(p: Path) -> str:
    """Why a folder given as a run has no checkpoint: a sweep folder, a folder that is no run, or a run that
    stopped before its first checkpoint; each with what to pass instead."""
    jobs = sweep_jobs(p)
    if jobs and not (p / "checkpoints").exists():
        return (
            f"{p} is a sweep folder (vae-train -m), not a run: its {len(jobs)} runs are its numbered folders "
            f"({', '.join(j.name for j in jobs[:3])}{', ...' if len(jobs) > 3 else ''}). Pass one of them (e.g. {jobs[0]}), "
            f"or rank them all with vae-compare {p}."
        )
    if not any((p / m).exists() for m in RUN_MARKERS):
        return (
            f"{p} is not a vae-train run directory (it has no checkpoints/, run.json or .hydra/). Pass a run "
            f"directory (e.g. outputs/2026-01-31/12-00-00) or a checkpoint file inside one (…/checkpoints/last.pt)."
        )
    return (
        f"No checkpoint in run directory {p}: expected {p / 'checkpoints' / 'last.pt'}. The run stopped before its "
        f"first checkpoint (its run.json and vae-train.log say why); pass a checkpoint file (…/checkpoints/last.pt "
        f"or best.pt) or another run directory."
    )

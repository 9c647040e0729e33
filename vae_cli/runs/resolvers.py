"""OmegaConf resolvers vae-cli's configs use, registered in every process that composes or re-loads a config: the
command line, and the workers of parallel launchers (loky, submitit) that re-load each job's config.

- ``unique_dir``: a run or sweep directory of its own (``…_1`` if taken in the same second). Cached in the config
  (``use_cache``): Hydra copies the parent's cache into every job's config, so a worker resolves the same folder
  instead of making another one.
- ``vae_signal_delay``: submitit's warning signal before a SLURM time limit, in seconds: 120 (its default) but at
  most a quarter of ``timeout_min``, so a short job is not told at its very start that its time is up.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

# Run directories made for this process (by unique_dir, or an explicit hydra.run.dir that did not exist): a run
# that stops before training removes them again (runs/job.py).
CREATED_BY_RESOLVER: set[str] = set()
_reserved: dict[str, str] = {}


def unique_dir(path: str) -> str:
    """OmegaConf resolver: ``path``, or ``path_1``, ``path_2``… if a run already took it (same second).

    The directory is created here (``mkdir`` fails if it exists, so two processes cannot both get it); the
    answer is remembered, because Hydra resolves ``hydra.run.dir`` more than once.
    """
    if path in _reserved:
        return _reserved[path]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    candidate, n = path, 0
    while True:
        try:
            Path(candidate).mkdir()
            break
        except FileExistsError:
            n += 1
            candidate = f"{path}_{n}"
    _reserved[path] = candidate
    CREATED_BY_RESOLVER.add(str(Path(candidate).absolute()))
    CREATED_BY_RESOLVER.add(candidate)
    return candidate


def signal_delay(timeout_min: int) -> int:
    return int(max(10, min(120, 60 * int(timeout_min) // 4)))


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("unique_dir"):
        OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True)
    if not OmegaConf.has_resolver("vae_signal_delay"):
        OmegaConf.register_new_resolver("vae_signal_delay", signal_delay, use_cache=True)

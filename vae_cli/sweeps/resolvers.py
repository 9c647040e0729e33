"""OmegaConf resolvers vae-cli's configs use, registered in every process that composes or re-loads a config: the
command line, and the workers of parallel launchers (loky, submitit) that re-load each job's config.

- ``unique_dir``: a run or sweep directory of its own (``…_1`` if taken in the same second). Cached in the config
  (``use_cache``): Hydra copies the parent's cache into every job's config, so a worker resolves the same folder
  instead of making another one.
- ``vae_signal_delay``: submitit's warning signal before a SLURM time limit, in seconds: 120 (its default) but at
  most a quarter of ``timeout_min``, so a short job is not told at its very start that its time is up.
"""

from __future__ import annotations

from omegaconf import OmegaConf


def signal_delay(timeout_min: int) -> int:
    return int(max(10, min(120, 60 * int(timeout_min) // 4)))


def register_resolvers() -> None:
    from vae_cli.cli import unique_dir

    if not OmegaConf.has_resolver("unique_dir"):
        OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True)
    if not OmegaConf.has_resolver("vae_signal_delay"):
        OmegaConf.register_new_resolver("vae_signal_delay", signal_delay, use_cache=True)

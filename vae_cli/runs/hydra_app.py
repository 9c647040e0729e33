"""The Hydra application: ``@hydra.main`` around ``vae_cli.runs.job.run_job``.

Kept apart from the command (``vae_cli.commands.train``) so the command line is checked (and Ctrl-C handled) before
Hydra is even imported.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from vae_cli.config.tree import config_dir
from vae_cli.process.errors import reported_errors
from vae_cli.runs.resolvers import register_resolvers

# Also in the workers of parallel launchers, which import this module to run a job and re-load its config.
register_resolvers()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    from vae_cli.runs.job import run_job  # not for --help: Hydra calls this only to run a job

    with reported_errors("vae-train", "interrupted.", take_sigterm=False):
        # The returned value lets Hydra sweepers (e.g. Optuna) optimize the final validation loss.
        return run_job(cfg)

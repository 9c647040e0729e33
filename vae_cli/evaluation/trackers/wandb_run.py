"""``logger=wandb``: the run as a Weights & Biases run: the config, the scalars per step, the pictures, and at the
end metrics.json and history.csv as files of the run. Offline by default (``logger.wandb.mode``): everything goes
into ``<run dir>/wandb/`` and ``wandb sync`` uploads it later; a sweep's jobs form one W&B group.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from PIL import Image

from vae_cli.config.training import WandbConfig
from vae_cli.evaluation.trackers.base import RunIdentity, TrackerError

EXIT_CODE = {"finished": 0, "failed": 1, "interrupted": 130}


class WandbRun:
    name = "Weights & Biases"

    def __init__(self, cfg: WandbConfig, who: RunIdentity, config: dict[str, Any], saved: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError:
            raise TrackerError(
                "logger.wandb.enabled=true (logger=wandb) needs the wandb package, which is not installed: "
                "pip install 'vae-cli[trackers]' (or pip install wandb), or drop logger=wandb."
            ) from None
        self.wandb = wandb
        try:
            self.run = wandb.init(
                mode=cfg.mode,
                project=cfg.project,
                entity=cfg.entity,
                dir=str(who.run_dir),
                name=who.name,
                group=who.sweep,
                job_type="sweep-job" if who.sweep else "run",
                id=saved.get("id"),  # a resume continues the same W&B run
                resume="allow" if saved.get("id") else None,
                config=config,
                reinit="create_new",  # a sweep's worker runs one job after another
                settings=wandb.Settings(console="off", silent=True, disable_git=True, x_disable_stats=True),
            )
        except Exception as exc:
            hint = "run `wandb login` first, or use logger.wandb.mode=offline" if cfg.mode == "online" else "see above"
            raise TrackerError(
                f"Weights & Biases could not start a run ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
                f"{hint}, or drop logger=wandb; nothing was trained."
            ) from None

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(dict(values), step=step)

    def image(self, tag: str, picture: Image.Image, step: int) -> None:
        self.run.log({tag: self.wandb.Image(picture)}, step=step)

    def finish(self, status: str, files: list[Path]) -> None:
        for path in files:
            if path.is_file() and path.suffix != ".pt":  # checkpoints stay in the run directory
                # Copied into the W&B run's files (uploaded with it; wandb.save would symlink and warn each time).
                shutil.copy2(path, Path(self.run.dir) / path.name)
        self.run.finish(exit_code=EXIT_CODE[status])

    def state(self) -> dict[str, Any]:
        return {"id": self.run.id, "mode": self.run.settings.mode}

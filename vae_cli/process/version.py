"""The version of vae-cli, recorded in checkpoints, run.json and metrics.json (and printed by ``vae-train --version``)."""

__version__ = "0.1.0"

"""What vae-train prints instead of training: ``--version``, and ``--cfg job`` of a resume (the config the resume
will really use)."""

from __future__ import annotations

import sys

from vae_cli.commands.train_argv import split_argv
from vae_cli.config.tree import config_dir


def print_version() -> None:
    from importlib.metadata import PackageNotFoundError, version

    from vae_cli.process.version import __version__

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    print(
        f"vae-train (vae-cli) {__version__}; torch {of('torch')}, torchvision {of('torchvision')}, hydra-core "
        f"{of('hydra-core')}, Python {sys.version.split()[0]}"
    )


def print_resumed_config(argv: list[str]) -> None:
    """``vae-train --cfg job trainer.resume=RUN ...``: the config the resume will really use (the checkpoint's,
    with this command line's keys on top), not the defaults."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from vae_cli.process.errors import reported_errors
    from vae_cli.training.checkpoint import load_with_fallback
    from vae_cli.training.resume import merge_resume_config

    _, overrides = split_argv(argv)
    task = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    with reported_errors("vae-train", "interrupted."):
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            composed = compose(config_name="train", overrides=task)
        _, ckpt, warning = load_with_fallback(str(composed.trainer.resume))
        if warning:
            print(f"vae-train: warning: {warning}", file=sys.stderr)
        merged = merge_resume_config(composed, ckpt["config"], task, ckpt.get("batch_in_epoch", 0))
    print(OmegaConf.to_yaml(merged), end="")

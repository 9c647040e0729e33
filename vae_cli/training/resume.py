"""The config of a resumed run: the checkpoint's own config, with the keys given on this command line on top.

So ``vae-train trainer.resume=RUN trainer.epochs=20`` needs no repeat of the original overrides. Keys that would
make the checkpoint mean something else (the data, the model, the objective's parameters, the seed) cannot change:
the override is refused, naming it, with what to do instead. Overrides are read with Hydra's own parser, so a
quoted value (``trainer.resume="/runs/a b"``) is one value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vae_cli.config.catalog import FAMILIES
from vae_cli.config.overrides import parse_overrides
from vae_cli.config.schema import structured
from vae_cli.process.errors import ConfigError, NothingToDo

# Groups chosen by name on the command line; ``experiment`` only sets keys, which are checked one by one.
GROUPS = ("dataset", "model", "likelihood", "prior", "posterior", "loss", "optim", "trainer", "logger")
# Keys a resume may change: how the run continues, not what it is.
CHANGEABLE_PREFIXES = ("trainer.", "optim.", "logger.", "loss.")
FIXED_KEYS = {"trainer.seed", "loss.name", "loss.disc_hidden"}
CHANGEABLE_DATASET_KEYS = {
    "dataset.root",
    "dataset.download",
    "dataset.num_workers",
    "dataset.memory_budget_mb",
    "dataset.cache",
    "dataset.cache_dir",
    "dataset.skip_bad_files",
    "dataset.max_image_pixels",
}


def why_fixed(key: str) -> str | None:
    """Why ``key`` cannot take a new value on resume, or None if it can."""
    if key == "trainer.batch_size":
        return None  # checked against the checkpoint's position by the caller
    if key in FIXED_KEYS:
        return "it decides what the checkpoint is (its data split and noise, its objective's parameters)"
    if key.startswith(CHANGEABLE_PREFIXES) or key in CHANGEABLE_DATASET_KEYS:
        return None
    group = key.split(".", 1)[0]
    if group in ("model", "prior", "likelihood", "posterior"):
        return "the checkpoint's weights were trained for its architecture, prior, posterior and likelihood"
    if group == "dataset":
        return "it changes the images the run trains and is evaluated on"
    return None


def option_name(group: str, node: Any) -> str:
    """The option of ``group`` a config node is (``loss`` -> "iwae", ``model`` -> "conv")."""
    if group in FAMILIES:
        return FAMILIES[group].option_of(node)
    name = node.get("name") if hasattr(node, "get") else None
    return str(getattr(name, "value", name)) if name is not None else ""


def saved_choices(resume: str) -> dict[str, str]:
    """The group options the checkpoint ``trainer.resume`` names was trained with (the one a resume would load)."""
    from vae_cli.training.checkpoint import load_with_fallback

    _, ckpt, _ = load_with_fallback(resume, preferred="last")
    saved = structured(ckpt["config"])
    return {group: option_name(group, saved[group]) for group in GROUPS if group in saved}


def merge_resume_config(
    composed: DictConfig, saved: dict[str, Any] | DictConfig, overrides: list[str], batch_in_epoch: int = 0
) -> DictConfig:
    """The checkpoint's config (``saved``: the plain dict, or already ``structured``) with this command line's
    keys (as composed) on top."""
    merged = structured(saved) if isinstance(saved, dict) else OmegaConf.merge(saved, {})
    for override in parse_overrides(overrides):
        key = override.key_or_group
        if key.startswith("hydra") or override.is_delete():
            continue
        text = override.input_line or key
        if key in GROUPS or key == "experiment":
            if key == "experiment":
                continue  # its keys are compared below through the composed config
            # The group's option: naming the run's own one changes nothing (its keys, given one by one, are
            # compared below); another option is another model or objective.
            was, now = option_name(key, merged[key]), option_name(key, composed[key])
            if was != now:
                raise ConfigError(
                    f"Cannot change the config group '{key}' when resuming: the checkpoint was trained with "
                    f"{key}={was}, not {key}={now}. Drop '{text}' to continue that run, or start a new run "
                    f"without trainer.resume."
                )
            continue
        new = OmegaConf.select(composed, key)
        old = OmegaConf.select(merged, key)
        if new == old:
            continue
        reason = why_fixed(key)
        if reason is not None:
            raise ConfigError(
                f"Cannot change {key} when resuming ('{text}'; the run was trained with {key}={old}): {reason}. "
                f"Drop it to continue the run, or start a new run with it (without trainer.resume)."
            )
        if key == "trainer.batch_size" and batch_in_epoch > 0:
            raise ConfigError(
                f"Cannot change trainer.batch_size in the middle of an epoch ('{text}'; the checkpoint stopped at "
                f"batch {batch_in_epoch} of an epoch with trainer.batch_size={old}): the rest of the epoch would be "
                f"different images. Resume without it, and change it once a later run starts at an epoch boundary."
            )
        OmegaConf.update(merged, key, new, merge=False)
    return merged


def check_resume_epochs(cfg: DictConfig, ckpt: dict[str, Any], run_dir: Path) -> None:
    """A resume that would train nothing is said out loud: an error if it asks for fewer epochs than the run has,
    'nothing to do' if the run has finished exactly these."""
    done, wanted = int(ckpt["epoch"]), int(cfg.trainer.epochs)
    if wanted < done:
        raise ConfigError(
            f"trainer.epochs={wanted} is below the {done} epochs the run has already trained, so the resume would "
            f"train nothing. Pass trainer.epochs={done + 10} (or any number above {done}) to train further."
        )
    stopped_at = int(ckpt.get("train_state", {}).get("stopped_early_at") or 0)
    patience = int(cfg.trainer.early_stop_patience)
    saved_patience = int(ckpt.get("config", {}).get("trainer", {}).get("early_stop_patience") or 0)
    if stopped_at and patience and patience <= saved_patience and (run_dir / "metrics.json").is_file():
        raise NothingToDo(
            f"{run_dir} stopped early at epoch {stopped_at} ({cfg.trainer.sweep_metric} had not improved for "
            f"trainer.early_stop_patience={saved_patience} evaluations) and its results are written; nothing to do. "
            f"To train further: trainer.early_stop_patience=0 (off) or a larger patience, with trainer.epochs."
        )
    if wanted == done and ckpt.get("batch_in_epoch", 0) == 0 and (run_dir / "metrics.json").is_file():
        raise NothingToDo(
            f"{run_dir} has finished its {done} epochs and its results are written (metrics.json); nothing to do. "
            f"Pass trainer.epochs={done + 10} (or any number above {done}) to train further."
        )

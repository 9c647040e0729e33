"""Checks of a composed config that its types cannot express: ranges, finiteness and combinations.

``validate`` reports every problem at once, in one ``ConfigError``, before any data is read. Each group's schema
checks its own values (and what it needs of other groups: ``check`` in config/architectures.py, objectives.py, ...);
this module runs them and holds the checks that span groups without belonging to one option: an objective that
needs one latent vector on a hierarchical model, a CVAE on a dataset without labels, a batch larger than the
training set. Every message names the key, the value it got and what to do instead.
"""

from __future__ import annotations

import math

from omegaconf import DictConfig

from vae_cli.config.catalog import ARCHITECTURES, FAMILIES, OBJECTIVES
from vae_cli.config.checks import Need, leaves, run_checks
from vae_cli.config.datasets import DATASETS, known_train_size
from vae_cli.config.objectives import least_batch
from vae_cli.config.schema import TrainConfig
from vae_cli.process.errors import ConfigError

# The groups every config has, each checked by its schema (families: by their option's schema).
GROUPS = (
    "trainer",
    "optim",
    "logger",
    "model",
    "likelihood",
    "prior",
    "posterior",
    "loss",
    "dataset",
    "disentanglement",
)


def validate(cfg: DictConfig) -> None:
    """Check ranges and combinations the types cannot express; raise one ConfigError listing all problems."""
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    for key, value in leaves(cfg, float):
        need(math.isfinite(value), f"{key} must be a finite number (got {value}).")
    for group in GROUPS:
        node = cfg.get(group)
        if node is None:
            continue
        catalog = FAMILIES.get(group)
        if catalog is not None and catalog.option_of(node) not in catalog:
            need(
                False,
                f"{group}.{catalog.key}={catalog.option_of(node)} is not a {group} of this vae-cli; choose "
                f"{group}={', '.join(catalog.names())}.",
            )
            continue
        if group == "loss" and not objective_applies(cfg, need):
            continue
        run_checks(schema_of(group, node), node, cfg, need)
        if group == "loss":
            check_objective_batch(cfg, need)
    check_labels(cfg, need)
    check_batch_fits(cfg, need)
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))


def schema_of(group: str, node: DictConfig) -> type:
    """The schema a group's node is checked by: a family member's own, else the root schema's field type."""
    catalog = FAMILIES.get(group)
    if catalog is not None:
        return catalog[catalog.option_of(node)].schema
    return TrainConfig.__dataclass_fields__[group].default_factory  # type: ignore[misc, return-value]


def objective_applies(cfg: DictConfig, need: Need) -> bool:
    """Whether the objective's own checks apply: not when the model refuses it (said once, here or by the model)."""
    arch, name = ARCHITECTURES.option_of(cfg.model), str(cfg.loss.name)
    if arch not in ARCHITECTURES or name not in OBJECTIVES:
        return name in OBJECTIVES
    latent, objective = ARCHITECTURES[arch].latent, OBJECTIVES[name]
    if latent == "code_grid" and not objective.code_grid:
        return False  # model=vqvae names the objectives it trains with
    if latent == "layers" and objective.flat_only:
        usable = [o.name for o in OBJECTIVES if not o.flat_only]
        flat = [a.name for a in ARCHITECTURES if a.latent == "vector"]
        need(
            False,
            f"loss={name} works on the aggregate posterior of one latent vector; model={arch} has "
            f"{cfg.model.get('layers')} conditional layers. Use {_or([f'loss={o}' for o in usable])} with "
            f"model={arch}, or a flat model (model={', '.join(flat)}) with loss={name}.",
        )
        return False
    return True


def check_labels(cfg: DictConfig, need: Need) -> None:
    """A CVAE needs class labels, which the dataset must have."""
    d = cfg.dataset
    if not cfg.model.get("conditional", False) or d.name not in DATASETS:
        return
    labels = DATASETS[d.name].labels
    if labels == "attribute" and d.get("label_attribute") is None:
        need(
            False,
            f"model.conditional=true needs class labels, and dataset={d.name} has none unless "
            "dataset.label_attribute names a column of list_attr_celeba.txt (e.g. dataset.label_attribute=Smiling).",
        )
    elif labels not in ("always", "attribute", "class_folders"):
        need(False, f"model.conditional=true needs class labels, and dataset={d.name} has none.")


def check_objective_batch(cfg: DictConfig, need: Need) -> None:
    """An objective whose terms are statistics of the batch needs batches of several images: the training batch,
    and the evaluation batch too (val/loss picks best.pt and is a sweep's default metric; a statistic of one image
    means nothing). A short last evaluation batch is merged into the one before (datasets.batches)."""
    least, why = least_batch(cfg.loss)
    for key in ("batch_size", "eval_batch_size"):
        b = cfg.trainer[key]
        need(
            b >= least,
            f"loss={cfg.loss.name} {why} and needs trainer.{key} >= {least} (got {b}); its "
            f"{'training' if key == 'batch_size' else 'validation and test'} terms would mean nothing otherwise.",
        )


def check_batch_fits(cfg: DictConfig, need: Need) -> None:
    d, t = cfg.dataset, cfg.trainer
    n_train = known_train_size(d)
    need(
        n_train is None or t.batch_size <= n_train,
        f"trainer.batch_size={t.batch_size} is larger than the training set ({n_train} images of "
        f"'{d.name}' after dataset.val_size/subset); use a smaller trainer.batch_size.",
    )


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]

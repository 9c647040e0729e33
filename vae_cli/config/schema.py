"""The root config schema, its registration in Hydra's ConfigStore, and plain-dict <-> typed-config conversions.

The YAML files under ``configs/`` fill these dataclasses; because the root config is typed, a misspelt key or a
value of the wrong type fails when Hydra composes the config, naming the key. ``vae_cli.config.validate`` then
checks what a type cannot express (ranges, combinations) and reports every problem at once, before any data loads.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vae_cli.config.architectures import ModelConfig
from vae_cli.config.catalog import FAMILIES
from vae_cli.config.datasets import DatasetConfig
from vae_cli.config.disentanglement import DisentanglementConfig
from vae_cli.config.likelihoods import LikelihoodConfig
from vae_cli.config.objectives import LossConfig
from vae_cli.config.posteriors import PosteriorConfig
from vae_cli.config.priors import PriorConfig
from vae_cli.config.training import LoggerConfig, OptimConfig, TrainerConfig
from vae_cli.process.errors import ConfigError


@dataclass
class TrainConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    likelihood: LikelihoodConfig = field(default_factory=LikelihoodConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    posterior: PosteriorConfig = field(default_factory=PosteriorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    disentanglement: DisentanglementConfig = field(default_factory=DisentanglementConfig)


# The groups whose options each have a schema of their own (config/catalog.py): the YAML of option X of group G
# starts from ``/hydra/vae_cli_schemas/G/X`` in Hydra's ConfigStore. Not beside the options (``G/X_schema``: shell
# completion and help would offer them as options) nor in a subgroup of G (completion would then stop offering
# ``G=``): under hydra/, which completion already lists and users never choose from.
SCHEMA_GROUP = "hydra/vae_cli_schemas"


def register_configs() -> None:
    """Register the root schema (``train_schema``) and each family member's (``hydra/vae_cli_schemas/loss/iwae``,
    ...)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for group, catalog in FAMILIES.items():
        for entry in catalog:
            cs.store(group=f"{SCHEMA_GROUP}/{group}", name=entry.name, node=entry.schema)


def to_plain_dict(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """A resolved, plain-Python copy of a config: safe to put in a ``weights_only`` checkpoint or JSON."""
    if isinstance(cfg, dict):
        return cfg
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(plain, dict)
    return plain  # type: ignore[return-value]


def migrate(plain: dict[str, Any]) -> dict[str, Any]:
    """A config saved by an older vae-cli, in today's layout. Before the model zoo the likelihood lived in the loss
    group (``loss.likelihood``, ``loss.gaussian_std``) and there was one objective and one prior; before the second
    zoo every model had every architecture's keys and every likelihood a ``std``."""
    cfg = copy.deepcopy(plain)
    loss = cfg.setdefault("loss", {})
    if "likelihood" not in cfg:
        cfg["likelihood"] = {"name": loss.get("likelihood", "bernoulli"), "std": loss.get("gaussian_std", 0.1)}
    for old in ("likelihood", "gaussian_std"):
        loss.pop(old, None)
    loss.setdefault("name", "elbo")
    cfg.setdefault("prior", {"name": "normal"})
    cfg.setdefault("posterior", {"name": "gaussian"})  # before the third zoo every posterior was Gaussian
    likelihood = cfg["likelihood"]
    if likelihood.get("name") == "gaussian":
        likelihood["std"] = str(likelihood.get("std", "0.1"))
    else:
        likelihood.pop("std", None)
    model = cfg.setdefault("model", {})
    arch = model.get("arch", "mlp")
    for key, owner in (("hidden_dims", "mlp"), ("conv_channels", "conv")):
        if arch != owner:
            model.pop(key, None)
    return cfg


def schema_for(plain: dict[str, Any]) -> DictConfig:
    """The typed, empty schema that fits ``plain``: each family group typed by the option its ``name`` names."""
    schema = OmegaConf.structured(TrainConfig)
    for group, catalog in FAMILIES.items():
        name = catalog.option_of(plain.get(group) or {}) or catalog.option_of(schema[group])
        if name not in catalog:
            raise ConfigError(
                f"{group}.{catalog.key} '{name}' is not a {group} this vae-cli knows (known: "
                f"{', '.join(catalog.names())}); the config comes from another version."
            )
        schema[group] = OmegaConf.structured(catalog[name].schema)
    return schema


def literal(value: Any) -> Any:
    """``value`` (a config read back from a file) as data: every ``${`` in its strings escaped, so OmegaConf keeps it
    as text instead of resolving it (an interpolation in a file could run a resolver: read the environment, make
    directories). A string's backslashes before ``${`` are doubled first, so the text comes back exactly."""
    if isinstance(value, str):
        return _INTERPOLATION_START.sub(lambda m: m.group(1) * 2 + "\\${", value)
    if isinstance(value, dict):
        return {k: literal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [literal(v) for v in value]
    return value


def _plain_value(plain: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(plain, dict) or part not in plain:
            return "?"
        plain = plain[part]
    return plain


_INTERPOLATION_START = re.compile(r"(\\*)\$\{")


def structured(plain: dict[str, Any]) -> DictConfig:
    """A plain-dict config read from a file (a checkpoint's) as a typed config, migrated to today's layout. It is
    data: nothing in it is interpolated or resolved (``literal``)."""
    cfg = literal(migrate(plain))
    typed = OmegaConf.merge(schema_for(cfg), cfg)
    try:
        # Every value read once: an escaped ``${...}`` is text, fine for a text key; for a number, an enum or a
        # flag it is no value at all (the file was edited or made elsewhere), said here rather than at first use.
        OmegaConf.to_container(typed, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "a key"
        raise ConfigError(
            f"The config saved in this file holds {_plain_value(migrate(plain), key)!r} at {key}, which is "
            f"not a value of that key: an interpolation, which vae-cli never resolves in a config read back from a "
            f"file. The file was edited or made outside vae-cli (its checksum only shows it was not damaged); use "
            f"a checkpoint written by vae-train."
        ) from None
    return typed  # type: ignore[return-value]

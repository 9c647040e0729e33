"""Check command-line overrides against the typed schema before Hydra runs, and report every problem at once.

Hydra would stop at the first bad override with a terse message ("Key 'lattent_dim' is not in struct"); here each
problem gets a sentence naming the key, the valid keys or values, and a likely correction. Only the overrides
are checked; the YAML tree itself is covered by the tests. Anything this module does not understand (Hydra's own
keys, sweeps over intervals, ``+``/``~`` overrides) is left to Hydra.
"""

from __future__ import annotations

import difflib
import enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, ValidationError

from vae_cli.config import TrainConfig


def _options(config_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def _suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _describe_node(schema: DictConfig, key: str) -> str:
    """The valid values of a leaf, for messages: enum members, or the Python type."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(schema, parent_key) if parent_key else schema
    node = parent._get_node(leaf)  # type: ignore[union-attr]
    ref = node._metadata.ref_type if node is not None else Any
    if isinstance(ref, type) and issubclass(ref, enum.Enum):
        return "one of " + ", ".join(m.name for m in ref)
    value = OmegaConf.select(schema, key)
    kind = type(value).__name__ if value is not None else getattr(ref, "__name__", str(ref))
    names = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string", "list": "a list"}
    return names.get(kind, kind)


def check_overrides(overrides: list[str], config_dir: Path) -> list[str]:
    """Problems with ``key=value`` / ``group=option`` overrides, as sentences (empty list: all fine)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # a syntax error: Hydra reports those itself, with the position
        return []
    schema = OmegaConf.structured(TrainConfig)
    groups = sorted(p.name for p in config_dir.iterdir() if p.is_dir())
    problems: list[str] = []
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra") or override.is_add() or override.is_delete() or override.package:
            continue
        try:
            values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        except Exception:
            continue  # interval sweeps and the like are for a sweeper plugin to expand
        if key in groups:
            valid = _options(config_dir, key)
            for value in values:
                if value is not None and str(value) not in valid:
                    problems.append(
                        f"Unknown {key} '{value}'. Valid options for {key}: {', '.join(valid)}."
                        + _suggest(str(value), valid)
                    )
            continue
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(schema, parent_key) if parent_key else schema
        if not isinstance(parent, DictConfig):
            top = [*groups, *(k for k in schema if k not in groups)]
            problems.append(
                f"Unknown config key '{key}': '{key.split('.')[0]}' is not a config group. Valid groups: "
                f"{', '.join(sorted(set(top)))}." + _suggest(key.split(".")[0], top)
            )
            continue
        if leaf not in parent:
            valid_keys = [str(k) for k in parent]
            problems.append(
                f"Unknown config key '{key}'. Valid keys under '{parent_key or 'the root'}': "
                f"{', '.join(valid_keys)}." + _suggest(leaf, valid_keys)
            )
            continue
        for value in values:
            trial = OmegaConf.structured(TrainConfig)
            try:
                OmegaConf.update(trial, key, value, merge=False)
            except ValidationError:
                problems.append(f"{key}={value!r} is not valid: {key} must be {_describe_node(schema, key)}.")
    return problems

"""``vae-train --help``: the config groups and their options, then every key of the config this command line
composes (``vae-train model=conv --help`` shows the conv model's keys), each with its type, its value and the
one-line description its schema's comment gives (``vae_cli/config/descriptions.py``). Hydra's own help would
print the composed YAML without a word of description, and offer the schemas as options.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

from vae_cli.config.tree import config_dir, default_options

# The groups in the order a user meets them, then the rest of train.yaml's.
GROUP_ORDER = (
    "dataset",
    "model",
    "likelihood",
    "prior",
    "posterior",
    "loss",
    "optim",
    "trainer",
    "logger",
    "disentanglement",
)


def group_options(configs: Path) -> dict[str, list[str]]:
    """Each group's options: the YAML files of its folder (``experiment`` included; Hydra's own groups not)."""
    return {
        folder.name: sorted(p.stem for p in folder.glob("*.yaml"))
        for folder in sorted(configs.iterdir())
        if folder.is_dir() and folder.name != "hydra"
    }


def _value_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and (value == "" or " " in value):
        return repr(value)
    return str(value)


def _chosen(cfg: Any, overrides: list[str], defaults: dict[str, str]) -> dict[str, str]:
    """The option of each group this command line picks (what the config's own names say where it can)."""
    chosen = dict(defaults)
    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        if "." not in key and value:
            chosen[key] = value
    named = {"dataset": "name", "model": "arch", "likelihood": "name", "prior": "name", "loss": "name", "optim": "name"}
    for group, key in named.items():
        value = cfg.get(group, {}).get(key) if hasattr(cfg.get(group, {}), "get") else None
        if value is not None:
            chosen[group] = str(getattr(value, "value", value))
    return chosen


def help_text(overrides: list[str], width: int | None = None) -> str:
    """The whole help (see the module docstring)."""
    import yaml

    width = width or max(80, min(140, shutil.get_terminal_size((100, 24)).columns))
    configs = Path(config_dir())
    root = yaml.safe_load((configs / "train.yaml").read_text())
    header = str(root["hydra"]["help"]["header"]).rstrip()
    footer = str(root["hydra"]["help"]["footer"]).rstrip()
    cfg, note = _compose(overrides)
    options = group_options(configs)
    chosen = _chosen(cfg, overrides, default_options(configs))
    out = [header, "", "Config groups (pick one option each with group=option; * marks this command line's):"]
    for group in sorted(options, key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else 99, g)):
        names = ", ".join(f"{o}*" if chosen.get(group) == o else o for o in options[group])
        lead = f"  {group:<12} "
        out.append(textwrap.fill(names, width, initial_indent=lead, subsequent_indent=" " * len(lead)))
    out += ["", "experiment=NAME sets several groups and keys at once (a preset: configs/experiment/NAME.yaml)."]
    shown = " ".join(o for o in overrides) or "the defaults"
    out += ["", f"Keys of this config ({shown}): group.key=value sets one; type, value, what it does.{note}"]
    for group in [g for g in GROUP_ORDER if g in cfg]:
        option = chosen.get(group)
        out += ["", f"{group}" + (f" ({group}={option})" if option and group in options else "")]
        out += _keys(cfg[group], width)
    out += ["", footer]
    return "\n".join(out)


def _rows(node: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(key, "type = value", description)`` for every key of ``node``, nested groups of keys flattened
    (``mig.num_bins``)."""
    from omegaconf import DictConfig, OmegaConf

    from vae_cli.config.descriptions import field_description, first_sentence, type_name

    schema = OmegaConf.get_type(node)
    plain = OmegaConf.to_container(node, resolve=False, enum_to_str=True)
    assert isinstance(plain, dict)
    rows: list[tuple[str, str, str]] = []
    for key in plain:
        if isinstance(node[key], DictConfig):
            rows += _rows(node[key], f"{prefix}{key}.")
            continue
        typed = isinstance(schema, type)
        kind = type_name(schema, key) if typed else type(plain[key]).__name__  # type: ignore[arg-type]
        what = first_sentence(field_description(schema, key)) if typed else ""  # type: ignore[arg-type]
        rows.append((prefix + key, f"{kind} = {_value_text(plain[key])}", what))
    return rows


def _keys(node: Any, width: int) -> list[str]:
    rows = _rows(node)
    column = max(len(key) for key, _, _ in rows) + 2
    lines = []
    for key, typed, what in rows:
        lines.append(f"  {key:<{column}}{typed}")
        if what:
            lines.append(textwrap.fill(what, width, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return lines


def _compose(overrides: list[str]) -> tuple[Any, str]:
    """The config this command line composes; the defaults (and a note) when it does not compose."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from vae_cli.config.schema import register_configs
    from vae_cli.runs.resolvers import register_resolvers

    register_configs()
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base=None, job_name="vae-train"):
        keys = [o for o in overrides if not o.startswith(("hydra.", "hydra/", "-"))]
        try:
            return compose(config_name="train", overrides=keys), ""
        except Exception as exc:  # a bad override: the help still shows the defaults, and says why
            reason = str(exc).splitlines()[0]
            return compose(config_name="train"), f"\n(The command line does not compose ({reason}); the defaults:)"

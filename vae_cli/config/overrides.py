"""Check command-line overrides against the typed schema before Hydra runs, and report every problem at once.

Hydra would stop at the first bad override with a terse message ("Key 'lattent_dim' is not in struct"); here each
problem gets a sentence naming the key, the valid keys or values, and a likely correction. Overrides are parsed
with Hydra's own parser, so what is checked is exactly what Hydra will apply.

Families (``model``, ``likelihood``, ``prior``, ``loss``: config/catalog.py): each option has its own schema, so
``loss.k`` is checked against the option(s) the run uses: ``loss=...`` on the command line (all of them, for a
sweep), else the one an ``experiment`` (or, for the model, the dataset) picks, else the default of ``train.yaml``.
"""

from __future__ import annotations

import difflib
import enum
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, ValidationError

from vae_cli.config.catalog import FAMILIES
from vae_cli.config.datasets import DATASETS
from vae_cli.config.schema import TrainConfig
from vae_cli.config.tree import default_options

# Keys that moved: the old spelling gets a "did you mean" with the new one.
MOVED = {
    "loss.likelihood": "likelihood=<bernoulli|gaussian> (the likelihood is its own config group now)",
    "loss.gaussian_std": "likelihood=gaussian likelihood.std=<value>",
}


def parse_overrides(overrides: list[str]) -> list[Any]:
    """Hydra's parsed ``Override`` objects (the same parser Hydra itself uses)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(overrides)


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


def parse_problem(override: str, error: Exception) -> str:
    """A sentence for an override Hydra's parser rejects, with the usual fix (quoting)."""
    detail = " ".join(line.strip() for line in str(error).splitlines() if "hydra.cc" not in line)
    if "=" not in override:
        return (
            f"'{override}' is not an override (key=value). If it is the rest of a value with a space, quote the "
            f"whole value: 'key=\"value with spaces\"' (the shell splits unquoted spaces into separate arguments)."
        )
    key, _, value = override.partition("=")
    if re.search(r"[^\x00-\x7f]|\s", value):
        return (
            f"Could not parse '{override}': Hydra's override grammar takes spaces and non-ASCII characters only in "
            f"quoted values. Quote it (shell quotes around Hydra quotes): '{key}=\"{value}\"'."
        )
    return (
        f"Could not parse '{override}' ({detail}). Values with special characters must be quoted: "
        f"'{key}=\"{value}\"'; lists are written [a,b], interpolations ${{group.key}}."
    )


def _overlay_choices(config_dir: Path, group: str, option: str) -> dict[str, str]:
    """The family options an experiment selects (its ``override /model: X`` lines)."""
    path = config_dir / group / f"{option}.yaml"
    if not path.is_file():
        return {}
    found = re.findall(r"override\s+/(\w+)\s*:\s*([\w-]+)", path.read_text())
    return {group: option for group, option in found if group in FAMILIES}


def _dataset_choices(dataset: str) -> dict[str, str]:
    """The model a dataset picks (cifar10 -> conv: its spec, which its YAML's defaults list repeats)."""
    return {"model": DATASETS[dataset].model} if dataset in DATASETS else {}


def chosen_options(parsed: list[Any], config_dir: Path) -> dict[str, list[str]]:
    """The option(s) of each family this command line runs. Later defaults win, as in train.yaml: the dataset's
    choice of model, then the experiment's, then the command line's own ``group=option``."""
    defaults = default_options(config_dir)
    family_defaults = {group: defaults[group] for group in FAMILIES}
    chosen = {group: [default] for group, default in family_defaults.items()}
    datasets = [defaults["dataset"]]
    for override in parsed:
        if override.key_or_group == "dataset" and not override.package:
            try:
                values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
            except Exception:
                continue
            datasets = [str(v) for v in values if v is not None] or datasets
    overlays = [_dataset_choices(d) for d in datasets]
    for group, default in family_defaults.items():
        chosen[group] = sorted({overlay.get(group, default) for overlay in overlays})
    for override in parsed:
        if override.key_or_group == "experiment" and not override.is_sweep_override():
            value = override.value()
            if isinstance(value, str):
                chosen.update({g: [o] for g, o in _overlay_choices(config_dir, "experiment", value).items()})
    for override in parsed:
        group = override.key_or_group
        if group in FAMILIES and not override.package:
            try:
                values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
            except Exception:
                continue
            chosen[group] = [str(v) for v in values if v is not None]
    return chosen


def sweep_family_choices(overrides: list[str], config_dir: Path) -> list[str]:
    """``group=option`` to add to a sweep's command line so that Hydra's sweep-level config has the family its jobs
    have. Hydra composes the sweep's own config with the swept overrides left out: ``-m dataset=cifar10,svhn
    model.conv_channels=[8,16]`` composes the default dataset's MLP there and fails on a conv key, although every
    job (each dataset picks the conv model) is fine. Where every job runs one option of a family whose keys the
    command line sets, and the sweep-level composition would run another, naming that option fixes it (the jobs
    run it anyway)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:
        return []  # the preflight reports it
    fixed = [o for o in parsed if not o.is_sweep_override()]
    if len(fixed) == len(parsed):
        return []
    keyed = {o.key_or_group.split(".")[0] for o in fixed if "." in o.key_or_group and not o.package}
    jobs, sweep_level = chosen_options(parsed, config_dir), chosen_options(fixed, config_dir)
    return [
        f"{group}={jobs[group][0]}"
        for group in FAMILIES
        if group in keyed and len(jobs[group]) == 1 and jobs[group] != sweep_level[group]
    ]


def schemas_for(chosen: dict[str, list[str]], config_dir: Path) -> list[DictConfig]:
    """One typed root schema per combination of the chosen family options (a sweep may choose several)."""
    defaults = default_options(config_dir)
    combos: list[dict[str, str]] = [{}]
    for group, options in chosen.items():
        known = [o for o in options if o in FAMILIES[group]] or [defaults[group]]
        combos = [{**c, group: o} for c in combos for o in known]
    schemas = []
    for combo in combos:
        schema = OmegaConf.structured(TrainConfig)
        for group, option in combo.items():
            schema[group] = OmegaConf.structured(FAMILIES[group][option].schema)
        schemas.append(schema)
    return schemas


def check_overrides(overrides: list[str], config_dir: Path) -> list[str]:
    """Problems with ``key=value`` / ``group=option`` overrides, as sentences (empty list: all fine)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed, problems = [], []
    for text in overrides:
        try:
            parsed += parser.parse_overrides([text])
        except Exception as exc:  # OverrideParseException, or the lexer's own errors
            problems.append(parse_problem(text, exc))
    groups = sorted(p.name for p in config_dir.iterdir() if p.is_dir())
    chosen = chosen_options(parsed, config_dir)
    schemas = schemas_for(chosen, config_dir)
    # A VQ-VAE's second stage takes its model and likelihood from the VQ-VAE run (training/code_prior.py).
    code_prior = next((o for o in chosen["prior"] if o in FAMILIES["prior"] and FAMILIES["prior"][o].code_prior), None)
    resuming = any(o.key_or_group == "trainer.resume" and o.value() not in (None, "null", "None", "") for o in parsed)
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra") or override.is_delete() or override.package:
            continue
        if code_prior and (key in ("model", "likelihood") or key.startswith(("model.", "likelihood."))):
            problems.append(
                f"'{override.input_line or key}' cannot be given with prior={code_prior}: the model and the likelihood "
                f"are those of the VQ-VAE in prior.vqvae=RUN. Drop it."
            )
            continue
        try:
            values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        except Exception:
            continue  # interval sweeps and the like are for a sweeper plugin to expand
        if key in groups:
            valid = _options(config_dir, key)
            # A list picks several options of one group, merged in order (logger=[mlflow,wandb]).
            values = [v for value in values for v in (value if isinstance(value, list) else [value])]
            for value in values:
                if value is not None and str(value) not in valid:
                    problems.append(
                        f"Unknown {key} '{value}'. Valid options for {key}: {', '.join(valid)}."
                        + _suggest(str(value), valid)
                    )
            continue
        if key in MOVED:
            problems.append(f"{key} has moved: use {MOVED[key]}.")
            continue
        problem = _key_problem(key, override, schemas, groups, resuming)
        if problem is not None:
            problems.append(problem)
            continue
        family = FAMILIES.get(key.partition(".")[0])
        for value in values:
            if isinstance(value, str) and "${" in value:
                continue  # an interpolation: checked once the config is composed and resolved
            if family is not None and key == f"{family.group}.{family.key}" and str(value) not in family:
                problems.append(
                    f"{key}={value!r} is not valid: {key} must be one of {', '.join(family.names())} (choose it with "
                    f"{family.group}=<option>)."
                )
                continue
            for schema in schemas:
                trial = schema.copy()
                try:
                    OmegaConf.update(trial, key, value, merge=False)
                except ValidationError:
                    problems.append(f"{key}={value!r} is not valid: {key} must be {_describe_node(schema, key)}.")
                    break
    return problems


def _key_problem(
    key: str, override: Any, schemas: list[DictConfig], groups: list[str], resuming: bool = False
) -> str | None:
    """Why ``key`` is not a key of the run's config (or why ``+key`` is wrong), or None."""
    missing = [s for s in schemas if OmegaConf.select(s, key, default=_ABSENT) is _ABSENT]
    parent_key, _, leaf = key.rpartition(".")
    schema = missing[0] if missing else schemas[0]
    parent = OmegaConf.select(schema, parent_key) if parent_key else schema
    if override.is_add() and not missing:
        return f"{key} already exists; drop the '+' ('+' adds keys that are not in the config): {key}=..."
    if not missing:
        return None
    if not isinstance(parent, DictConfig):
        top = sorted({*groups, *(str(k) for k in schema)})
        return (
            f"Unknown config key '{key}': '{key.split('.')[0]}' is not a config group. Valid groups: "
            f"{', '.join(top)}." + _suggest(key.split(".")[0], top)
        )
    valid_keys = [str(k) for k in parent]
    family = parent_key if parent_key in FAMILIES else None
    where = f"'{parent_key or 'the root'}'"
    if family is not None:
        owners = [e.name for e in FAMILIES[family] if leaf in OmegaConf.structured(e.schema)]
        where = f"{family}={FAMILIES[family].option_of(parent)}"
        if owners:
            return (
                f"{key} is a key of {' / '.join(f'{family}={o}' for o in owners)}, not of {where} (which this run "
                f"uses). "
                + (
                    f"A resume keeps the run's {family}: drop {key}, or start a new run (without trainer.resume) "
                    f"with {family}={owners[0]}."
                    if resuming
                    else f"Add {family}={owners[0]} to the command line, or drop {key}."
                )
                + f" Keys of {where}: {', '.join(valid_keys)}."
            )
    plus = " ('+' adds a key the config does not have, which vae-train would ignore)" if override.is_add() else ""
    return f"Unknown config key '{key}'{plus}. Valid keys under {where}: {', '.join(valid_keys)}." + _suggest(
        leaf, valid_keys
    )


_ABSENT = object()

"""The docs' tables of the catalogs, made from the catalogs: ``python -m vae_cli.config.docs_tables`` prints the
table of docs/models.md ("The model zoo") and the dataset rows' facts; tests/unit/test_catalogs.py checks that the
docs hold exactly these, so a new option shows up there by its registration alone."""

from __future__ import annotations

from pathlib import Path

from vae_cli.config.catalog import ARCHITECTURES, FAMILIES, LIKELIHOODS, OBJECTIVES, POSTERIORS, PRIORS, Catalog
from vae_cli.config.tree import config_dir, default_options

PARTS = (
    ("objective", OBJECTIVES),
    ("prior p(z)", PRIORS),
    ("posterior q(z\\|x)", POSTERIORS),
    ("likelihood p(x\\|z)", LIKELIHOODS),
    ("networks", ARCHITECTURES),
)


def _where(catalog: Catalog) -> str:
    """Where the options' builders live: their modules, relative to the package."""
    modules = dict.fromkeys(e.build.partition(":")[0] for e in catalog)
    folders = dict.fromkeys(m.rsplit(".", 1)[0] for m in modules)
    if len(folders) == 1 and len(modules) > 2:
        return f"`{next(iter(folders)).replace('.', '/')}/`"
    return ", ".join(f"`{m.replace('.', '/')}.py`" for m in modules)


def model_zoo_table(configs: Path | None = None) -> str:
    """The table of docs/models.md: each family's group, options (the default marked) and modules."""
    defaults = default_options(configs or Path(config_dir()))
    lines = ["| part | group | options | module |", "|---|---|---|---|"]
    for part, catalog in PARTS:
        options = ", ".join(
            f"`{e.name}`" + (" (default)" if defaults.get(catalog.group) == e.name else "") for e in catalog
        )
        lines.append(f"| {part} | `{catalog.group}=` | {options} | {_where(catalog)} |")
    return "\n".join(lines)


def main() -> None:
    print(model_zoo_table())
    print()
    print("families:", ", ".join(f"{group} ({len(c.names())})" for group, c in FAMILIES.items()))


if __name__ == "__main__":
    main()

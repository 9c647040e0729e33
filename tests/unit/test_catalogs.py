"""The catalogs are the only lists of names: the YAML options, the builders, the docs' tables and the dataset
specs agree with them, and a builder lives in its family's package (so the layer contract covers it too)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vae_cli.config.catalog import FAMILIES, SAMPLERS, Catalog, load_attribute
from vae_cli.config.datasets import DATASETS, DatasetCatalog
from vae_cli.config.docs_tables import model_zoo_table
from vae_cli.config.tree import config_dir

# The latent samplers are a family of vae-fit-sampler (no vae-train group, so no YAML): the same builder rules.
BUILT = {**FAMILIES, "sampler": SAMPLERS}
CONFIGS = Path(config_dir())
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("group", list(FAMILIES))
def test_every_option_has_its_yaml_and_every_yaml_is_registered(group):
    catalog: Catalog = FAMILIES[group]
    yamls = sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))
    assert yamls == sorted(catalog.names())
    for entry in catalog:
        text = yaml.safe_load((CONFIGS / group / f"{entry.name}.yaml").read_text())
        # The option's own schema, from the catalog (never offered as an option itself).
        assert text["defaults"][0] == f"/hydra/vae_cli_schemas/{group}/{entry.name}@_here_"
        assert text.get(catalog.key, entry.name) == entry.name


@pytest.mark.parametrize("group", list(BUILT))
def test_every_builder_is_callable_and_lives_in_its_familys_package(group):
    catalog: Catalog = BUILT[group]
    for entry in catalog:
        module = entry.build.partition(":")[0]
        assert module.startswith(catalog.package + "."), entry.build
        assert callable(catalog.load(entry.name))
    with pytest.raises(ValueError, match="outside"):
        load_attribute("vae_cli.training.session:train", catalog.package)


def test_the_facts_an_option_declares_are_the_familys():
    with pytest.raises(TypeError, match="declare only"):
        FAMILIES["loss"].register(build="vae_cli.objectives.elbo:ELBO", no_such_fact=True)


def test_every_dataset_spec_has_its_yaml_its_builder_and_the_model_its_yaml_picks():
    yamls = sorted(p.stem for p in (CONFIGS / "dataset").glob("*.yaml"))
    assert yamls == sorted(DATASETS.names())
    for spec in DATASETS:
        text = (CONFIGS / "dataset" / f"{spec.name}.yaml").read_text()
        picked = re.findall(r"override\s+/model\s*:\s*(\w+)", text)
        assert (picked[0] if picked else "mlp") == spec.model, spec.name
        assert callable(load_attribute(spec.build, DatasetCatalog.packages))
        if spec.ground_truth is not None:
            assert callable(load_attribute(spec.ground_truth, DatasetCatalog.packages))


def test_the_docs_tables_are_the_catalogs():
    assert model_zoo_table() in (DOCS / "models.md").read_text()
    rows = [line for line in (DOCS / "datasets.md").read_text().splitlines() if line.startswith("| `")]
    documented = {
        re.match(r"\| `(\w+)`", row).group(1): row.rsplit("|", 2)[-2].strip() for row in rows[: len(DATASETS.names())]
    }
    assert documented == {spec.name: spec.model for spec in DATASETS}


def test_the_config_layer_imports_no_torch():
    code = (
        "import sys, vae_cli.config.validate, vae_cli.config.overrides; "
        "from vae_cli.config.catalog import FAMILIES; [c.names() for c in FAMILIES.values()]; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_key_of_every_schema_has_a_description_of_its_own():
    """vae-train --help shows each key's one-line description, read from the comment above its field: every
    field of the root schema and of every option's schema has one, and no two neighbours share theirs."""
    import dataclasses

    from vae_cli.config.descriptions import field_description, first_sentence
    from vae_cli.config.schema import TrainConfig

    problems: list[str] = []

    def walk(cls: type) -> None:
        previous = None
        for f in dataclasses.fields(cls):
            value = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            if dataclasses.is_dataclass(value):
                walk(type(value))
                continue
            said = first_sentence(field_description(cls, f.name))
            if not said or said == previous:
                problems.append(f"{cls.__name__}.{f.name}: {'none' if not said else 'the one above it'}")
            previous = said

    for f in dataclasses.fields(TrainConfig):
        walk(type(f.default_factory()))
    for catalog in BUILT.values():
        for entry in catalog:
            walk(entry.schema)
    assert not problems, problems

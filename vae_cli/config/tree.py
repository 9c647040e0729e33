"""Where the Hydra config tree (``configs/``) is, and what its root config picks by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def config_dir() -> str:
    """Where the Hydra config tree is: inside the installed package (wheel), else the source checkout.

    ``@hydra.main`` resolves a relative ``config_path`` against the calling module's file, which breaks for YAML kept
    outside the package, so an absolute path is computed here. The wheel ships ``configs/`` as
    ``vae_cli/configs`` (pyproject: force-include); a source checkout or editable install has it beside
    the package.
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "configs", package.parent / "configs"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise SystemExit(
        f"vae-train: error: the config tree (train.yaml) is neither in {package / 'configs'} nor in "
        f"{package.parent / 'configs'}; the installation is broken. Reinstall vae-cli (pip install --force-reinstall)."
    )


def default_options(config_dir: Path) -> dict[str, str]:
    """The option ``train.yaml``'s defaults list picks for each group (``model: mlp``, ``dataset: fashion_mnist``...)."""
    import yaml

    defaults: list[Any] = yaml.safe_load((config_dir / "train.yaml").read_text()).get("defaults", [])
    return {
        str(group): str(option)
        for item in defaults
        if isinstance(item, dict)
        for group, option in item.items()
        if option is not None and not str(group).startswith("override")
    }

"""What TensorBoard's HPARAMS view compares for a run: the keys its command line set, and the headline keys."""

from __future__ import annotations

from typing import Any

from vae_cli.config.overrides import parse_overrides

# Always in TensorBoard's HPARAMS view: what kind of model a run is (compare runs of different sweeps).
HEADLINE_KEYS = ("dataset.name", "model.arch", "model.latent_dim", "likelihood.name", "prior.name", "loss.name")
# Keys that say where or how a run ran, not what it is.
NOT_HPARAMS = ("hydra", "trainer.resume", "trainer.overwrite", "trainer.progress", "dataset.root", "dataset.cache_dir")


def run_hparams(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The keys a run's command line set (a sweep's axes are among them), plus the headline keys, with the values
    the run used: what TensorBoard's HPARAMS view compares (not the ~60 keys of the whole config)."""
    keys = list(HEADLINE_KEYS)
    try:
        parsed = parse_overrides(overrides)
    except Exception:
        parsed = []
    for override in parsed:
        key = override.key_or_group
        if key.startswith(NOT_HPARAMS) or key == "experiment":
            continue
        if "." not in key and isinstance(cfg.get(key), dict):
            # A group choice: dataset=mnist -> dataset.name, model=hvae -> model.arch.
            key = next((f"{key}.{leaf}" for leaf in ("name", "arch") if leaf in cfg[key]), key)
        keys.append(key)
    out: dict[str, Any] = {}
    for key in dict.fromkeys(keys):
        node: Any = cfg
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and not isinstance(node, dict):
            out[key] = node if isinstance(node, (int, float, str, bool)) else str(node)
    return out

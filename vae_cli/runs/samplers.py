"""Post-hoc samplers of a run: fitted to its training codes (``vae-fit-sampler``), saved in the run directory as
``samplers/<key>.pt``, and loaded back by vae-sample and vae-eval.

The artifact holds the sampler's config (plain data), its tensors, what it was fitted on (the checkpoint and its
digest, the split, how many codes, the seed) and a content digest over all of it; it loads with
``torch.load(weights_only=True)``, its digest is checked, and a sampler fitted to another checkpoint of the run than
the one being sampled is refused (its codes came from another encoder). An existing key is never overwritten:
``--replace`` moves the old file aside first.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vae_cli.config.catalog import SAMPLERS
from vae_cli.config.checks import run_checks
from vae_cli.datasets.batches import labelled_batches
from vae_cli.process import progress
from vae_cli.process.atomic import atomic_write
from vae_cli.process.errors import CheckpointError, ConfigError
from vae_cli.runs.loaded import LoadedRun, load_split
from vae_cli.samplers import build_sampler
from vae_cli.samplers.base import LatentSampler
from vae_cli.training.checkpoint import content_digest

FORMAT_VERSION = 1
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class FittedSampler:
    key: str
    sampler: LatentSampler
    record: dict[str, Any]  # config, fitted_on, fit (what the fit measured), digest
    path: Path | None  # None for the model's own prior, which has no file

    def describe(self) -> str:
        return f"{self.key}: {self.sampler.describe()}"


def sampler_path(run_dir: Path, key: str) -> Path:
    return run_dir / "samplers" / f"{key}.pt"


def check_key(key: str) -> None:
    if not KEY_PATTERN.match(key):
        raise ConfigError(
            f"--key {key!r} is not a usable sampler name: use letters, digits, '_', '-' or '.', at most 64 characters "
            f"(e.g. gmm10). It names the file samplers/<key>.pt in the run directory."
        )


def sampler_config(name: str, overrides: list[str]) -> Any:
    """The typed config of sampler ``name`` with ``KEY=VALUE`` overrides, checked."""
    if name not in SAMPLERS:
        raise ConfigError(f"--sampler {name}: unknown sampler; choose one of {', '.join(SAMPLERS.names())}.")
    node = OmegaConf.structured(SAMPLERS[name].schema)
    bad = [o for o in overrides if "=" not in o or "${" in o]
    if bad:
        raise ConfigError(f"--set takes KEY=VALUE with a plain value (e.g. --set components=20); got {bad[0]!r}.")
    try:
        node = OmegaConf.merge(node, OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as exc:
        keys = ", ".join(k for k in node if k != "name")
        raise ConfigError(
            f"--set {' '.join(overrides)}: {str(exc).splitlines()[0]}. The keys of --sampler {name} are: "
            f"{keys or 'none'}."
        ) from None
    problems: list[str] = []
    run_checks(SAMPLERS[name].schema, node, None, lambda ok, message: ok or problems.append(message))
    if problems:
        raise ConfigError(f"--sampler {name}: " + " ".join(problems))
    return node


@torch.no_grad()
def encode_split(run: LoadedRun, split: str, data_root: str | None, limit: int | None = None) -> torch.Tensor:
    """The codes (location of q(z|x): the mean) of a split's images, ``[N, D]`` on the CPU."""
    data = load_split(run.cfg, split, data_root=data_root)
    images = data.images if limit is None else data.images[:limit]
    device = run.model.device
    codes = []
    batches = labelled_batches(images, data.labels[: images.shape[0]], 1000)
    for x, _ in progress.tracked(batches, f"encoding the {split} split", total=-(-images.shape[0] // 1000)):
        mu, _ = run.model.encode(x.to(device), None)
        codes.append(mu.float().flatten(1).cpu())
    return torch.cat(codes)


def refuse_unsupported(run: LoadedRun) -> None:
    if run.model.conditional:
        raise ConfigError(
            f"{run.run_dir} is a conditional model (CVAE): its codes depend on the label, and the samplers here are "
            f"unconditional. Sample it through its prior per class: vae-sample RUN --label C."
        )
    if run.model.layer_names or not run.model.can_sample or getattr(run.model, "grid", None) is not None:
        raise ConfigError(
            f"{run.run_dir} has no single latent vector (a hierarchy or a VQ-VAE's code grid); the samplers fit a "
            f"density over one latent vector per image. Sample it through its own prior (vae-sample RUN)."
        )


def fit_sampler(
    run: LoadedRun,
    name: str,
    overrides: list[str],
    key: str | None,
    seed: int,
    data_root: str | None = None,
    num_images: int | None = None,
    replace: bool = False,
) -> FittedSampler:
    """Fit sampler ``name`` to the run's training codes and save it as ``samplers/<key>.pt`` (the caller holds the
    run's lock)."""
    refuse_unsupported(run)
    cfg = sampler_config(name, overrides)
    key = key or name
    check_key(key)
    path = sampler_path(run.run_dir, key)
    if path.exists() and not replace:
        raise ConfigError(
            f"{path} exists (a sampler fitted earlier under the key {key!r}); it is kept. Give this one another "
            f"name (--key {key}2) or --replace (the old file is moved aside to samplers/old/, not deleted)."
        )
    started = time.perf_counter()
    codes = encode_split(run, "train", data_root, num_images)
    sampler = build_sampler(cfg, codes.shape[1], run.model.prior)
    try:
        fit_info = sampler.fit(codes, seed)
    except ValueError as exc:
        raise ConfigError(f"--sampler {name}: {exc}.") from None
    test_codes = encode_split(run, "test", data_root, 10_000)
    measured: dict[str, Any] = dict(fit_info)
    for split, c in (("train", codes), ("test", test_codes)):
        log_p = sampler.log_prob(c)
        if log_p is not None:
            measured[f"{split}_log_likelihood"] = float(log_p.double().mean())
    record = {
        "format_version": FORMAT_VERSION,
        "key": key,
        "config": OmegaConf.to_container(cfg, enum_to_str=True),
        "describe": sampler.describe(),
        "fitted_on": {
            **run.provenance,
            "split": "train",
            "num_codes": int(codes.shape[0]),
            "latent_dim": int(codes.shape[1]),
            "seed": int(seed),
            "codes": "mean of q(z|x)",
        },
        "fit": measured,
        "seconds": round(time.perf_counter() - started, 3),
        "state": {k: v.detach().cpu() for k, v in sampler.state_dict().items()},
    }
    record["integrity"] = {"algorithm": "sha256", "digest": content_digest(record)}
    if path.exists():
        aside = path.parent / "old" / f"{key}-{time.strftime('%Y%m%d-%H%M%S')}.pt"
        aside.parent.mkdir(parents=True, exist_ok=True)
        path.replace(aside)
    with atomic_write(path) as f:
        torch.save(record, f)
    return FittedSampler(key, sampler, {k: v for k, v in record.items() if k != "state"}, path)


def load_sampler(run: LoadedRun, key: str) -> FittedSampler:
    """The sampler saved under ``key`` in the run (the model's own prior needs none: callers draw it themselves,
    unless one was saved with vae-fit-sampler --sampler prior)."""
    check_key(key)
    path = sampler_path(run.run_dir, key)
    if not path.exists():
        fitted = sorted(p.stem for p in path.parent.glob("*.pt")) if path.parent.is_dir() else []
        raise ConfigError(
            f"--sampler {key}: {run.run_dir} has no sampler saved under that key"
            + (f" (it has: {', '.join(fitted)})" if fitted else " (none fitted yet)")
            + f". Fit one first: vae-fit-sampler {run.run_dir} --sampler {key if key in SAMPLERS else 'gmm'}"
            + ("" if key in SAMPLERS else f" --key {key}")
            + "."
        )
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file: said as such, never unpickled beyond tensors
        raise CheckpointError(
            f"Could not read the sampler {path} ({type(exc).__name__}): it is damaged or not a vae-cli sampler. Fit "
            f"it again: vae-fit-sampler {run.run_dir} --sampler NAME --key {key} --replace."
        ) from None
    if not isinstance(record, dict) or record.get("integrity", {}).get("digest") != content_digest(record):
        raise CheckpointError(
            f"{path} does not match the checksum it was saved with (changed on disk after it was written). It is not "
            f"used; fit it again: vae-fit-sampler {run.run_dir} --sampler NAME --key {key} --replace."
        )
    fitted_on = record["fitted_on"]
    if fitted_on.get("checkpoint_digest") != run.digest:
        raise ConfigError(
            f"The sampler {key} was fitted to the codes of {fitted_on.get('checkpoint')} (epoch {fitted_on.get('epoch')}), "
            f"not of the checkpoint being used now ({run.checkpoint_path}, epoch {run.epoch}): another encoder's codes. "
            f"Use that checkpoint (--checkpoint best/last), or refit: vae-fit-sampler {run.run_dir} --sampler "
            f"{record['config']['name']} --key {key} --replace."
        )
    cfg = OmegaConf.merge(OmegaConf.structured(SAMPLERS[record["config"]["name"]].schema), record["config"])
    sampler = build_sampler(cfg, int(fitted_on["latent_dim"]), run.model.prior)
    sampler.load_state_dict(record["state"])
    sampler.eval()
    return FittedSampler(key, sampler, {k: v for k, v in record.items() if k != "state"}, path)

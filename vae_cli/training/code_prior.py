"""The second stage of a VQ-VAE: ``vae-train prior=pixelcnn prior.vqvae=RUN`` trains a PixelCNN over RUN's codes.

It is a plain vae-train run with its own run directory: its model is RUN's VQ-VAE (encoder, codebook, decoder,
likelihood: taken from RUN's checkpoint and frozen) with the PixelCNN as its prior, trained on RUN's dataset by the
same ELBO, whose only trainable part is then -log p(codes). Its checkpoints hold the whole pair, so sampling and
evaluation never need RUN again; ``model_info.vqvae`` records which VQ-VAE it belongs to (path, epoch, the
checkpoint's content digest). Everything RUN fixes is refused on the command line, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vae_cli.config.catalog import ARCHITECTURES, PRIORS
from vae_cli.config.overrides import parse_overrides
from vae_cli.config.schema import structured
from vae_cli.process.errors import CheckpointError, ConfigError
from vae_cli.process.locks import holder_of, is_held
from vae_cli.training.checkpoint import evaluation_weights, load_with_fallback
from vae_cli.training.resume import CHANGEABLE_DATASET_KEYS


@dataclass
class FrozenVQVAE:
    path: Path  # the checkpoint read
    weights: dict[str, Any]  # its evaluation weights (the weight average where it kept one)
    info: dict[str, Any]  # what the prior's run records about it (model_info.vqvae)


def attach_vqvae(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, FrozenVQVAE]:
    """``cfg`` with RUN's model, likelihood and dataset (dataset keys that only say where the files are may be
    given), and RUN's weights to freeze."""
    source = cfg.prior.vqvae
    if not source:
        raise ConfigError(
            "prior=pixelcnn learns the codes of a trained VQ-VAE: name its run with prior.vqvae=RUN (a run "
            "directory of vae-train model=vqvae, or one of its checkpoints)."
        )
    given = Path(str(source)).expanduser()
    run_dir = given.parent.parent if given.is_file() and given.parent.name == "checkpoints" else given
    if run_dir.is_dir() and is_held(run_dir):
        raise ConfigError(
            f"prior.vqvae={source} is still training (in use by {holder_of(run_dir)}): its best.pt can still change, "
            f"and a prior learned over one model's codes would be paired with another. Train the prior once that "
            f"run has finished."
        )
    try:
        path, ckpt, warning = load_with_fallback(str(source), preferred="best")
    except CheckpointError as exc:
        raise CheckpointError(f"prior.vqvae={source}: {exc}") from None
    try:
        saved = structured(ckpt["config"])
    except ConfigError as exc:
        raise ConfigError(f"prior.vqvae={source}: {path}: {exc}") from None
    arch = ARCHITECTURES.option_of(saved.model)
    if ARCHITECTURES[arch].latent != "code_grid":
        raise ConfigError(
            f"prior.vqvae={source} is a model={arch} run, not a VQ-VAE: a PixelCNN prior is learned over "
            f"the codes of a vae-train model=vqvae run."
        )
    if not PRIORS[saved.prior.name].own:
        raise ConfigError(
            f"prior.vqvae={source} is itself a prior's run (prior={saved.prior.name}); give the VQ-VAE's own run, "
            f"whose prior is the uniform one."
        )
    given: dict[str, Any] = {}
    for override in parse_overrides(overrides):
        key = override.key_or_group
        if key in ("model", "likelihood", "dataset") or key.startswith(("model.", "likelihood.")):
            raise ConfigError(
                f"'{override.input_line or key}' cannot be given with prior=pixelcnn: the model, the likelihood and "
                f"the data are those of the VQ-VAE in prior.vqvae={source}. Drop it."
            )
        if key.startswith("dataset."):
            if key not in CHANGEABLE_DATASET_KEYS:
                raise ConfigError(
                    f"'{override.input_line or key}' would change the images the VQ-VAE in prior.vqvae={source} "
                    f"was trained on; only where its files are may change ({', '.join(sorted(CHANGEABLE_DATASET_KEYS))})."
                )
            given[key] = OmegaConf.select(cfg, key)
    merged = cfg.copy()
    merged.model = saved.model
    merged.likelihood = saved.likelihood
    merged.dataset = saved.dataset
    for key, value in given.items():
        OmegaConf.update(merged, key, value, merge=False)
    info = {
        "path": str(path),
        "epoch": int(ckpt.get("epoch", 0)),
        "digest": (ckpt.get("integrity") or {}).get("digest"),
        "warning": warning,
    }
    return merged, FrozenVQVAE(path, evaluation_weights(ckpt), info)


def load_frozen(model: Any, frozen: FrozenVQVAE) -> None:
    """Put the VQ-VAE's weights into ``model`` (everything but the new prior) and freeze them."""
    missing, unexpected = model.load_state_dict(frozen.weights, strict=False)
    wrong = [k for k in missing if not k.startswith("prior.")] + list(unexpected)
    if wrong:
        raise ConfigError(
            f"The VQ-VAE in {frozen.path} does not fit the model its config describes ({', '.join(wrong[:5])}); its "
            f"checkpoint was edited or comes from another version."
        )
    model.freeze_autoencoder()

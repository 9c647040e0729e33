"""A trained run, back in memory: checkpoint -> config -> model and loss; plus one split of its dataset.

Shared by ``vae-eval``, ``vae-sample`` and ``vae-compare``. The checkpoint is read with ``weights_only=True``
(``vae_cli.training.checkpoint``) and the model is rebuilt from the checkpoint's own plain-dict config, so a run directory
whose YAML was edited afterwards still loads the weights it was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from vae_cli.config import TrainConfig
from vae_cli.errors import CheckpointError, DataError
from vae_cli.losses.elbo import ELBOLoss
from vae_cli.models.vae import VAE, build_model
from vae_cli.training.checkpoint import load_checkpoint, resolve_checkpoint_path

SPLITS = ("test", "val", "train")


@dataclass
class LoadedRun:
    checkpoint_path: Path
    run_dir: Path  # where eval.json and the TensorBoard events go
    cfg: DictConfig  # the run's config (TrainConfig schema)
    model: VAE  # in eval mode, on the requested device
    loss_fn: ELBOLoss
    epoch: int
    step: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        d = self.cfg.dataset
        return (d.channels, d.image_size, d.image_size)


def checkpoint_for(path: str | Path, which: str = "best") -> Path:
    """The checkpoint a command should use: a file as given; for a run directory ``checkpoints/<which>.pt``,
    falling back to ``last.pt`` (``resolve_checkpoint_path`` reports a directory without any checkpoint)."""
    p = Path(path).expanduser()
    if p.is_dir():
        preferred = p / "checkpoints" / f"{which}.pt"
        if preferred.is_file():
            return preferred
    return resolve_checkpoint_path(p)


def run_dir_of(checkpoint: Path) -> Path:
    """``RUN/checkpoints/x.pt`` -> ``RUN``; a checkpoint elsewhere -> its own folder."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def load_run(path: str | Path, which: str = "best", device: torch.device | str = "cpu") -> LoadedRun:
    ckpt_path = checkpoint_for(path, which)
    ckpt = load_checkpoint(ckpt_path, map_location=device)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), ckpt["config"])
    except Exception as exc:  # omegaconf raises several types for a config that does not fit the schema
        raise CheckpointError(
            f"The config stored in {ckpt_path} does not fit this vae-cli's schema ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}). It was written by another version; evaluate it with that version."
        ) from exc
    shape = (cfg.dataset.channels, cfg.dataset.image_size, cfg.dataset.image_size)
    model = build_model(cfg.model, shape)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"The weights in {ckpt_path} do not fit the model its config describes ({str(exc).splitlines()[0]}). "
            f"The checkpoint is damaged or was edited; use the run's other checkpoint (best.pt / last.pt)."
        ) from exc
    model.to(device).eval()
    return LoadedRun(
        checkpoint_path=ckpt_path,
        run_dir=run_dir_of(ckpt_path),
        cfg=cfg,  # type: ignore[arg-type]
        model=model,
        loss_fn=ELBOLoss(cfg.loss),
        epoch=int(ckpt["epoch"]),
        step=int(ckpt["step"]),
    )


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, C, H, W], preprocessed as the run evaluated them (e.g. binarized)
    labels: torch.Tensor  # int64 [N]; -1 = unlabelled
    class_names: tuple[str, ...]


def load_split(cfg: DictConfig, split: str, data_root: str | None = None, dataset: str | None = None) -> Split:
    """Images and labels of one split, as the run saw them (same seed, same val split, same binarization).

    ``data_root`` replaces ``dataset.root`` (the run may have been trained on another machine); ``dataset``
    evaluates on another dataset of the same image shape (e.g. a Fashion-MNIST model on MNIST).
    """
    from vae_cli.datasets import load_dataset

    data_cfg = OmegaConf.merge(cfg.dataset, {})
    if data_root is not None:
        data_cfg.root = str(Path(data_root).expanduser())
    if dataset is not None:
        data_cfg.name = dataset
    data = load_dataset(data_cfg, seed=cfg.trainer.seed)  # type: ignore[arg-type]
    images, labels = getattr(data, split), getattr(data, f"{split}_labels")
    if images.shape[0] == 0:
        raise DataError(
            f"The {split} split of '{data.name}' is empty for this run (dataset.val_size="
            f"{data_cfg.val_size}); use --split test."
        )
    return Split(images, labels, tuple(getattr(data, "class_names", ())))

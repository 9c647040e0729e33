"""A trained run, back in memory: checkpoint -> config -> model and loss; plus one split of its dataset.

Shared by ``vae-eval``, ``vae-sample``, ``vae-compare`` and ``vae_cli.load_run`` (notebooks). The checkpoint is read with ``weights_only=True``
(``vae_cli.training.checkpoint``) and the model is rebuilt from the checkpoint's own plain-dict config, so a run directory
whose YAML was edited afterwards still loads the weights it was trained with.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from vae_cli.config.schema import structured
from vae_cli.datasets.loader import load_dataset
from vae_cli.datasets.splits import ImageSplits
from vae_cli.models.build import build_model
from vae_cli.models.layout import to_channels_last
from vae_cli.models.protocol import Model
from vae_cli.objectives import build_objective
from vae_cli.objectives.base import Objective, ObjectiveContext
from vae_cli.process.errors import CheckpointError, DataError, VaeCliError
from vae_cli.training.checkpoint import evaluation_weights, load_with_fallback

SPLITS = ("test", "val", "train")


@dataclass
class LoadedRun:
    checkpoint_path: Path
    run_dir: Path  # where eval.json and the TensorBoard events go
    cfg: DictConfig  # the run's config (TrainConfig schema)
    model: Model  # in eval mode, on the requested device
    objective: Objective  # in eval mode, on the requested device (FactorVAE's discriminator restored)
    epoch: int
    step: int
    digest: str | None = None  # the checkpoint's content digest: what its results record they came from

    @property
    def provenance(self) -> dict[str, object]:
        """What a number computed from this run's checkpoint was computed from (eval.json records it)."""
        return {
            "checkpoint": str(self.checkpoint_path),
            "checkpoint_digest": self.digest,
            "epoch": self.epoch,
            "step": self.step,
        }

    @property
    def image_shape(self) -> tuple[int, int, int]:
        d = self.cfg.dataset
        return (d.channels, d.image_size, d.image_size)

    @property
    def config(self) -> DictConfig:
        """The run's config (the checkpoint's own, typed): ``run.config.loss.name``, ``run.config.model``, ..."""
        return self.cfg

    def split(self, name: str = "test", data_root: str | None = None) -> Split:
        """One split's images (uint8) and labels, exactly as the run saw them (its seed, val split, binarization)."""
        return load_split(self.cfg, name, data_root=data_root)

    def splits(self, data_root: str | None = None) -> ImageSplits:
        """All the run's splits at once (an ``ImageSplits``: ``.train``, ``.val``, ``.test`` and their labels)."""
        data_cfg = OmegaConf.merge(self.cfg.dataset, {})
        if data_root is not None:
            data_cfg.root = str(Path(data_root).expanduser())
        return load_dataset(data_cfg, seed=self.cfg.trainer.seed)  # type: ignore[arg-type]


def run_dir_of(checkpoint: Path) -> Path:
    """``RUN/checkpoints/x.pt`` -> ``RUN``; a checkpoint elsewhere -> its own folder."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def load_run(
    path: str | Path, which: str = "best", device: torch.device | str = "cpu", channels_last: bool = False
) -> LoadedRun:
    """The run's model and objective from ``checkpoints/<which>.pt`` (the other checkpoint if that one is missing
    or corrupt, with a warning on stderr), or from the checkpoint file given. ``channels_last``: a convolutional
    model's weights in NHWC, the faster layout for evaluation (vae-cli's own commands; ``models/layout.py``); off for
    the public ``vae_cli.load_run``, whose users get the model's outputs in the usual NCHW."""
    ckpt_path, ckpt, warning = load_with_fallback(path, preferred=which, map_location=device)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        cfg = structured(ckpt["config"])
    except VaeCliError as exc:  # a config that is not data (an interpolation in it): said as it is
        raise CheckpointError(f"{ckpt_path}: {exc}") from None
    except Exception as exc:  # omegaconf raises several types for a config that does not fit the schema
        raise CheckpointError(
            f"The config stored in {ckpt_path} does not fit this vae-cli's schema ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}). It was written by another version; evaluate it with that version."
        ) from exc
    info = ckpt.get("model_info", {})
    shape = (cfg.dataset.channels, cfg.dataset.image_size, cfg.dataset.image_size)
    model = build_model(cfg, shape, num_classes=int(info.get("num_classes", 0)))
    objective = build_objective(cfg.loss, ObjectiveContext.of(model, int(info.get("train_size", 1)), shape), model)
    try:
        model.load_state_dict(evaluation_weights(ckpt))
        objective.load_state_dict(ckpt.get("objective", {}))
    except RuntimeError as exc:
        raise CheckpointError(
            f"The weights in {ckpt_path} do not fit the model its config describes ({str(exc).splitlines()[0]}). "
            f"The checkpoint is damaged or was edited; use the run's other checkpoint (best.pt / last.pt)."
        ) from exc
    model.to(device).eval()
    objective.to(device).eval()
    if channels_last:
        to_channels_last(model)
    return LoadedRun(
        checkpoint_path=ckpt_path,
        run_dir=run_dir_of(ckpt_path),
        cfg=cfg,
        model=model,
        objective=objective,
        epoch=int(ckpt["epoch"]),
        step=int(ckpt["step"]),
        digest=(ckpt.get("integrity") or {}).get("digest"),
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
    data_cfg = OmegaConf.merge(cfg.dataset, {})
    if "eval_subset" in data_cfg:
        data_cfg.eval_subset = None  # the run's quick-check setting; vae-eval's own is --num-images
    if data_root is not None:
        data_cfg.root = str(Path(data_root).expanduser())
    if dataset is not None:
        data_cfg.name = dataset
    # Only the files this split comes from are read (the test split needs no training files).
    data = load_dataset(data_cfg, seed=cfg.trainer.seed, splits=(split,))  # type: ignore[arg-type]
    images, labels = getattr(data, split), getattr(data, f"{split}_labels")
    if images.shape[0] == 0:
        why, other = f"dataset.val_size={data_cfg.val_size}", "test"
        if split == "test":
            why, other = "it trained on the official test split (dataset.train_split=test)", "val"
        raise DataError(f"The {split} split of '{data.name}' is empty for this run ({why}); use --split {other}.")
    return Split(images, labels, tuple(getattr(data, "class_names", ())))

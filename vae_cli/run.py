"""One training run, from a composed config to a finished run directory. Independent of Hydra's runtime.

``train(cfg, run_dir)`` is what ``vae-train`` calls and what tests call with ``hydra.compose()``:
validate -> (resume: load checkpoint, merge configs) -> data -> model -> loss -> trainer -> metrics.json.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from vae_cli import __version__
from vae_cli.checkpoint import load_checkpoint, remove_stale_temp_files, resolve_checkpoint_path
from vae_cli.config import DeviceName, TrainConfig, to_plain_dict, validate
from vae_cli.datasets import BatchPreprocess, eval_batches, load_dataset, make_train_batches, splits_to
from vae_cli.errors import ConfigError
from vae_cli.interrupt import StopSignal
from vae_cli.loss import ELBOLoss
from vae_cli.model import build_model
from vae_cli.optim import build_optimizer, build_scheduler
from vae_cli.tracking import Tracker
from vae_cli.trainer import Trainer, evaluate

log = logging.getLogger(__name__)

CONFIG_GROUPS = ("dataset", "model", "loss", "optim", "trainer", "logger", "experiment")


def pick_device(name: DeviceName | str) -> torch.device:
    name = DeviceName(name)
    if name == DeviceName.auto:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == DeviceName.cuda and not torch.cuda.is_available():
        raise ConfigError(
            "trainer.device=cuda but no CUDA GPU is visible to torch "
            f"(torch {torch.__version__}). Use trainer.device=auto or cpu, or install a CUDA build of torch."
        )
    if name == DeviceName.mps and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ConfigError("trainer.device=mps but the Apple MPS backend is not available; use auto or cpu.")
    return torch.device(name.value)


def merge_resume_config(composed: DictConfig, saved: dict[str, Any], overrides: list[str]) -> DictConfig:
    """The config of a resumed run: the checkpoint's config, with the keys set on this command line on top.

    So ``vae-train trainer.resume=RUN trainer.epochs=20`` needs no repeat of the original overrides. Changing a
    whole group (``dataset=mnist``) would make the checkpoint meaningless, so it is refused.
    """
    merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), saved)
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra.") or key == "hydra":
            continue
        if key in CONFIG_GROUPS:
            if key != "experiment" and OmegaConf.to_container(composed[key]) != OmegaConf.to_container(merged[key]):
                raise ConfigError(
                    f"Cannot change the config group '{key}' when resuming: the checkpoint was trained with "
                    f"{key}={OmegaConf.to_container(merged[key])}. Drop '{override}' to continue that run, or "
                    f"start a new run without trainer.resume."
                )
            continue
        OmegaConf.update(merged, key, OmegaConf.select(composed, key), merge=False)
    return merged  # type: ignore[return-value]


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def flat_hparams(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config keys worth comparing across runs, flattened as ``group.key``."""
    out: dict[str, Any] = {}
    for group in ("dataset", "model", "loss", "optim", "trainer"):
        for k, v in cfg.get(group, {}).items():
            if group == "trainer" and k in ("resume", "progress", "log_every_steps", "image_every_epochs"):
                continue
            out[f"{group}.{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def train(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train one VAE as ``cfg`` says, writing everything into ``run_dir``; returns the final metrics."""
    started = time.perf_counter()
    resume_ckpt = None
    if cfg.trainer.resume:
        ckpt_path = resolve_checkpoint_path(cfg.trainer.resume)
        resume_ckpt = load_checkpoint(ckpt_path)
        cfg = merge_resume_config(cfg, resume_ckpt["config"], overrides or [])
        log.info("resuming from %s (epoch %d, step %d)", ckpt_path, resume_ckpt["epoch"], resume_ckpt["step"])
    validate(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.trainer.deterministic:
        # cuBLAS needs this set before its first use to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    config_dict = to_plain_dict(cfg)

    device = pick_device(cfg.trainer.device)
    torch.manual_seed(cfg.trainer.seed)
    data = load_dataset(cfg.dataset, seed=cfg.trainer.seed)
    if cfg.trainer.batch_size > data.train.shape[0]:
        raise ConfigError(
            f"trainer.batch_size={cfg.trainer.batch_size} is larger than the training set "
            f"({data.train.shape[0]} images of '{data.name}'); use a smaller trainer.batch_size."
        )
    data = splits_to(data, device)
    log.info(
        "data %s: %d train / %d val / %d test images of shape %s on %s%s",
        data.name,
        data.train.shape[0],
        data.val.shape[0],
        data.test.shape[0],
        data.image_shape,
        device,
        " (training split streamed from disk)" if data.streamed else "",
    )

    model = build_model(cfg.model, data.image_shape).to(device)
    loss_fn = ELBOLoss(cfg.loss)
    optimizer = build_optimizer(cfg.optim, model.parameters(), fused=device.type in ("cpu", "cuda"))
    steps_per_epoch = -(-data.train.shape[0] // cfg.trainer.batch_size)
    scheduler = build_scheduler(cfg.optim, optimizer, total_steps=cfg.trainer.epochs * steps_per_epoch)
    purge_step = resume_ckpt["step"] + 1 if resume_ckpt is not None else None
    tracker = Tracker(run_dir, enabled=cfg.logger.tensorboard, save_png=cfg.logger.save_png, purge_step=purge_step)
    # In-memory data: index batches on the device; data over dataset.memory_budget_mb: streamed from disk.
    preprocess = BatchPreprocess.from_config(cfg.dataset, cfg.trainer.seed, streamed=data.streamed)
    train_batches = make_train_batches(
        data, cfg.trainer.batch_size, cfg.trainer.seed, device, preprocess, cfg.dataset.num_workers
    )
    stop = StopSignal()
    trainer = Trainer(
        model,
        loss_fn,
        optimizer,
        scheduler,
        data,
        train_batches,
        cfg.trainer,
        run_dir,
        tracker,
        config_dict,
        stop_requested=lambda: stop.received,
    )
    if resume_ckpt is not None:
        trainer.load_state_dict(resume_ckpt)
        remove_stale_temp_files(run_dir / "checkpoints")
        if cfg.optim.lr != resume_ckpt["config"]["optim"]["lr"]:
            trainer.set_base_lr(cfg.optim.lr)  # the restored optimizer state would otherwise keep the old lr
    try:
        with stop:
            state = trainer.fit()
        final = state.history[-1] if state.history else {}
        # The test split is touched once, at the end, with the model selected on validation loss.
        best_path = run_dir / "checkpoints" / "best.pt"
        if best_path.is_file():
            model.load_state_dict(load_checkpoint(best_path, map_location=device)["model"])
        test = evaluate(model, loss_fn, eval_batches(data.test, cfg.trainer.eval_batch_size))
        metrics: dict[str, Any] = {f"val/{k}": final.get(f"val/{k}") for k in ("loss", "recon", "kl", "elbo")}
        if final.get("val/nll_iw") is not None:  # logged by the latent monitor after the last epoch
            metrics["val/nll_iw"] = final["val/nll_iw"]
        metrics.update({f"train/{k}": final.get(f"train/{k}") for k in ("loss", "recon", "kl", "elbo")})
        metrics.update({f"test/{k}": v for k, v in test.items()})
        metrics.update(
            {
                "epochs": state.epoch,
                "steps": state.step,
                "best_epoch": state.best_epoch,
                "wall_time_s": round(time.perf_counter() - started, 3),
                "images_per_sec": final.get("images_per_sec"),
            }
        )
        tracker.scalars({f"test/{k}": v for k, v in test.items()}, state.step)
        tracker.hparams(
            flat_hparams(config_dict),
            {f"final/{k.replace('/', '_')}": float(v) for k, v in metrics.items() if k.startswith(("val/", "test/"))},
            state.step,
        )
    finally:
        tracker.close()
    write_json_atomic(
        run_dir / "metrics.json",
        {
            **metrics,
            "dataset": data.name,
            "device": str(device),
            "vae_cli_version": __version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
        },
    )
    log.info(
        "done: test elbo %.2f nats (recon %.2f, kl %.2f), test loss %.2f; run directory %s",
        test["elbo"],
        test["recon"],
        test["kl"],
        test["loss"],
        run_dir,
    )
    return metrics

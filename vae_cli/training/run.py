"""One training run, from a composed config to a finished run directory. Independent of Hydra's runtime.

``train(cfg, run_dir)`` is what ``vae-train`` calls and what tests call with ``hydra.compose()``:
validate -> (resume: load checkpoint, merge configs) -> data -> model -> loss -> trainer -> metrics.json.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from vae_cli import __version__
from vae_cli.config import DeviceName, TrainConfig, to_plain_dict, validate
from vae_cli.datasets import BatchPreprocess, eval_batches, load_dataset, make_train_batches, splits_to
from vae_cli.errors import ConfigError, TrainingError
from vae_cli.losses.elbo import ELBOLoss
from vae_cli.models.vae import build_model
from vae_cli.training.checkpoint import load_checkpoint, remove_stale_temp_files, resolve_checkpoint_path
from vae_cli.training.distributed import Distributed, any_rank, from_environment
from vae_cli.training.distributed import start as start_distributed
from vae_cli.training.distributed import stop as stop_distributed
from vae_cli.training.optim import build_optimizer, build_scheduler
from vae_cli.training.signals import StopSignal
from vae_cli.training.tracking import Tracker
from vae_cli.training.trainer import Trainer, evaluate

log = logging.getLogger(__name__)

CONFIG_GROUPS = ("dataset", "model", "loss", "optim", "trainer", "logger", "experiment")
# Under torchrun, rank r draws its noise from seed + r * this (rank 0: the single-process seed).
RANK_SEED_STRIDE = 1_000_003


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


class AgreedStop:
    """Under torchrun: a stop signal any rank received, so all ranks checkpoint and stop at the same step.

    Called once per step by every rank. The agreement is an all-reduce read back to the host: on CPU that costs
    nothing, on GPUs it would stall the pipeline every step, so there it runs every ``every`` steps (the same steps
    on every rank, so they still agree)."""

    def __init__(self, stop: StopSignal, dist: Distributed, device: torch.device, every: int = 1) -> None:
        self.stop, self.dist, self.device, self.every = stop, dist, device, every
        self.calls = 0

    def __call__(self) -> int | None:
        self.calls += 1
        if self.calls % self.every:
            return None
        if any_rank(self.stop.received is not None, self.dist, self.device):
            return self.stop.received or signal.SIGTERM
        return None


# Steps between stop agreements of torchrun ranks on a GPU (AgreedStop).
GPU_STOP_AGREEMENT_STEPS = 20


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


def train(
    cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None, dist: Distributed | None = None
) -> dict[str, Any]:
    """Train one VAE as ``cfg`` says, writing everything into ``run_dir``; returns the final metrics.

    Under torchrun (``dist``, default: from the environment) every rank calls this; only rank 0 evaluates on the
    test split and returns metrics (the others return ``{}``), and ``run_dir`` of the others is scratch."""
    dist = dist or from_environment()
    try:
        return _train(cfg, run_dir, overrides or [], dist)
    except TrainingError as exc:
        if dist.is_main:
            raise
        # Stops and NaN failures are agreed by all ranks; rank 0 reports them, naming the run's own files (the
        # other ranks' checkpoints are scratch).
        quiet = TrainingError(
            f"process {dist.rank} of {dist.world_size} stopped together with rank 0, which reports why above or "
            "below and keeps the run's checkpoints."
        )
        quiet.exit_code = getattr(exc, "exit_code", 2)  # type: ignore[attr-defined]
        raise quiet from None
    finally:
        stop_distributed(dist)


def _train(cfg: DictConfig, run_dir: Path, overrides: list[str], dist: Distributed) -> dict[str, Any]:
    started = time.perf_counter()
    resume_ckpt = None
    if cfg.trainer.resume:
        ckpt_path = resolve_checkpoint_path(cfg.trainer.resume)
        resume_ckpt = load_checkpoint(ckpt_path)
        cfg = merge_resume_config(cfg, resume_ckpt["config"], overrides)
        log.info("resuming from %s (epoch %d, step %d)", ckpt_path, resume_ckpt["epoch"], resume_ckpt["step"])
    validate(cfg)
    if not dist.is_main:
        # Nothing of what these would compute is shown: rank 0 writes the run's TensorBoard views.
        cfg.trainer.nll_iw_every_epochs, cfg.trainer.embedding = 0, False
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.trainer.deterministic:
        # cuBLAS needs this set before its first use to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    config_dict = to_plain_dict(cfg)

    device = start_distributed(dist, pick_device(cfg.trainer.device))
    if dist.enabled:
        log.info("process %d of %d (torchrun), device %s", dist.rank, dist.world_size, device)
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
    if dist.enabled:
        # The same initial weights everywhere (DDP also broadcasts rank 0's), then each rank its own sampling
        # noise and augmentation draws: ranks see different images, their noise should not be the same either.
        torch.manual_seed(cfg.trainer.seed + RANK_SEED_STRIDE * dist.rank)
    # In-memory data: index batches on the device; data over dataset.memory_budget_mb: streamed from disk.
    noise_seed = cfg.trainer.seed + RANK_SEED_STRIDE * dist.rank
    preprocess = BatchPreprocess.from_config(cfg.dataset, noise_seed, streamed=data.streamed)
    # The shuffling seed is the same on every rank: each takes its shard of one global order.
    train_batches = make_train_batches(
        data, cfg.trainer.batch_size, cfg.trainer.seed, device, preprocess, cfg.dataset.num_workers, dist
    )
    scheduler = build_scheduler(cfg.optim, optimizer, total_steps=cfg.trainer.epochs * len(train_batches))
    purge_step = resume_ckpt["step"] + 1 if resume_ckpt is not None else None
    tracker = Tracker(
        run_dir,
        enabled=cfg.logger.tensorboard and dist.is_main,
        save_png=cfg.logger.save_png and dist.is_main,
        purge_step=purge_step,
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
        stop_requested=(
            AgreedStop(stop, dist, device, GPU_STOP_AGREEMENT_STEPS if device.type == "cuda" else 1)
            if dist.enabled
            else (lambda: stop.received)
        ),
        dist=dist,
    )
    if resume_ckpt is not None:
        trainer.load_state_dict(resume_ckpt)
        remove_stale_temp_files(run_dir / "checkpoints")
        if cfg.optim.lr != resume_ckpt["config"]["optim"]["lr"]:
            trainer.set_base_lr(cfg.optim.lr)  # the restored optimizer state would otherwise keep the old lr
    try:
        with stop:
            state = trainer.fit()
        if not dist.is_main:
            return {}  # rank 0 evaluates on the test split and writes metrics.json
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

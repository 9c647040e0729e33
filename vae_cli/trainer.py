"""The training loop: fit, evaluate, checkpoint, resume. Knows no dataset or architecture names.

Hot-loop rules: batches are index slices of a tensor already on the device; metrics accumulate in a device
tensor and are read back (one host sync) only every ``log_every_steps`` steps and at the end of an epoch.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from vae_cli.checkpoint import rng_state, save_checkpoint, set_rng_state
from vae_cli.config import TrainerConfig
from vae_cli.data import ImageSplits, eval_batches, to_unit_float
from vae_cli.errors import TrainingError
from vae_cli.latent_monitor import LatentMonitor
from vae_cli.loss import ELBOLoss
from vae_cli.model import VAE
from vae_cli.tracking import Tracker

log = logging.getLogger(__name__)

TERMS = ("loss", "recon", "kl", "elbo")


@dataclass
class TrainState:
    """Where training stands; everything here goes into the checkpoint."""

    epoch: int = 0  # completed epochs
    batch_in_epoch: int = 0  # completed batches of the current epoch (0 at an epoch boundary)
    step: int = 0  # optimizer steps so far
    best_val: float = float("inf")
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)


class BatchSource(Protocol):
    """What the trainer iterates: float batches in [0, 1] on the training device, reproducible per epoch."""

    def __len__(self) -> int: ...

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[torch.Tensor]: ...


@torch.no_grad()
def evaluate(model: VAE, loss_fn: ELBOLoss, batches: Iterable[torch.Tensor]) -> dict[str, float]:
    """Per-sample means of loss/recon/kl/elbo over float batches (on the model's device)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(len(TERMS), device=next(model.parameters()).device)
    count = 0
    for x in batches:
        t = loss_fn(x, model(x))
        sums += torch.stack([t.loss, t.recon, t.kl, t.elbo]) * x.shape[0]
        count += x.shape[0]
    model.train(was_training)
    values = (sums / max(1, count)).tolist()
    return dict(zip(TERMS, values, strict=True))


class Trainer:
    def __init__(
        self,
        model: VAE,
        loss_fn: ELBOLoss,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        data: ImageSplits,
        train_batches: BatchSource,
        cfg: TrainerConfig,
        run_dir: Path,
        tracker: Tracker,
        config_dict: dict[str, Any],
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.data = data
        self.cfg = cfg
        self.run_dir = run_dir
        self.tracker = tracker
        self.config_dict = config_dict
        self.state = TrainState()
        self.batches = train_batches
        # Fixed inputs for the image grids, so epochs compare: the first val images and one prior draw.
        shown = data.val if data.val.shape[0] > 0 else data.train
        n_shown = max(8, (min(cfg.num_images, shown.shape[0]) // 8) * 8) if shown.shape[0] >= 8 else shown.shape[0]
        self.fixed_images = shown[:n_shown]
        self.fixed_z = torch.randn(
            cfg.num_images, model.latent_dim, generator=torch.Generator().manual_seed(cfg.seed + 1)
        ).to(data.train.device)
        self.latent_monitor = LatentMonitor(model, loss_fn, data, cfg, tracker)

    # ----- checkpoints -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        s = self.state
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": s.epoch,
            "batch_in_epoch": s.batch_in_epoch,
            "step": s.step,
            "best_val": s.best_val,
            "best_epoch": s.best_epoch,
            "history": s.history,
            "rng": rng_state(),
            "config": self.config_dict,
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state = TrainState(
            epoch=ckpt["epoch"],
            batch_in_epoch=ckpt.get("batch_in_epoch", 0),
            step=ckpt["step"],
            best_val=ckpt.get("best_val", float("inf")),
            best_epoch=ckpt.get("best_epoch", -1),
            history=list(ckpt.get("history", [])),
        )
        set_rng_state(ckpt["rng"])

    def save(self, name: str, metrics: dict[str, float] | None = None) -> Path:
        path = self.run_dir / "checkpoints" / name
        save_checkpoint({**self.state_dict(), "metrics": metrics or {}}, path)
        return path

    # ----- the loop --------------------------------------------------------------------------------------
    def _progress(self, iterable, total: int, epoch: int):
        mode = self.cfg.progress
        if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
            from tqdm import tqdm

            return tqdm(iterable, total=total, desc=f"epoch {epoch + 1}/{self.cfg.epochs}", leave=False)
        return iterable

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], float]:
        device = self.data.train.device
        epoch_sums = torch.zeros(len(TERMS), device=device)
        interval_sums = torch.zeros(len(TERMS), device=device)
        interval_count = 0
        n_seen = 0
        start_batch = self.state.batch_in_epoch
        total = len(self.batches) - start_batch
        t0 = time.perf_counter()
        for x in self._progress(self.batches.epoch(epoch, start_batch), total, epoch):
            out = self.model(x)
            terms = self.loss_fn(x, out, self.state.step)
            self.optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            if self.cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.state.step += 1
            self.state.batch_in_epoch += 1
            with torch.no_grad():
                batch_terms = torch.stack([terms.loss, terms.recon, terms.kl, terms.elbo]).detach() * x.shape[0]
                epoch_sums += batch_terms
                interval_sums += batch_terms
            n_seen += x.shape[0]
            interval_count += x.shape[0]
            if self.state.step % self.cfg.log_every_steps == 0:
                means = (interval_sums / interval_count).tolist()
                self._check_finite(means, epoch)
                self.tracker.scalars({f"train/{k}": v for k, v in zip(TERMS, means, strict=True)}, self.state.step)
                self.tracker.scalars({"train/kl_weight": self.loss_fn.kl_weight(self.state.step - 1)}, self.state.step)
                interval_sums.zero_()
                interval_count = 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        means = (epoch_sums / max(1, n_seen)).tolist()
        self._check_finite(means, epoch)
        if interval_count > 0 and self.state.step % self.cfg.log_every_steps != 0:
            tail = (interval_sums / interval_count).tolist()
            self.tracker.scalars({f"train/{k}": v for k, v in zip(TERMS, tail, strict=True)}, self.state.step)
        throughput = n_seen / seconds if seconds > 0 else float("nan")
        return dict(zip(TERMS, means, strict=True)), throughput

    def _check_finite(self, means: list[float], epoch: int) -> None:
        if not all(torch.isfinite(torch.tensor(means)).tolist()):
            raise TrainingError(
                f"The loss became NaN or infinite in epoch {epoch + 1} (by step {self.state.step}). Usual causes: "
                f"a learning rate too high (try optim.lr={self.optimizer.param_groups[0]['lr'] / 10:g}), "
                f"a likelihood that does not fit the data range (bernoulli needs pixels in [0, 1]), or no gradient "
                f"clipping (trainer.grad_clip=1.0). The last good checkpoint is kept in "
                f"{self.run_dir / 'checkpoints'}."
            )

    @torch.no_grad()
    def _log_images(self, epoch: int) -> None:
        was_training = self.model.training
        self.model.eval()
        likelihood = self.loss_fn.likelihood
        x = to_unit_float(self.fixed_images)
        mu, _ = self.model.encode(x)
        recon = likelihood.mean(self.model.decode(mu))
        n = x.shape[0]
        if n % 8 == 0:
            # Rows alternate: 8 originals, then their 8 reconstructions.
            grid = torch.stack([x.view(n // 8, 8, *x.shape[1:]), recon.view(n // 8, 8, *x.shape[1:])], dim=1)
            pairs = grid.reshape(-1, *x.shape[1:])
        else:
            pairs = torch.cat([x, recon])
        self.tracker.images("images/reconstructions", pairs, self.state.step, epoch + 1, nrow=8)
        samples = likelihood.mean(self.model.decode(self.fixed_z))
        self.tracker.images("images/samples", samples, self.state.step, epoch + 1)
        self.model.train(was_training)

    def fit(self) -> TrainState:
        """Train from the current state to ``cfg.epochs``; checkpoint ``last.pt`` every epoch, ``best.pt`` on
        a new best validation loss."""
        self.model.train()
        has_val = self.data.val.shape[0] > 0
        for epoch in range(self.state.epoch, self.cfg.epochs):
            train_means, throughput = self._train_epoch(epoch)
            val = (
                evaluate(self.model, self.loss_fn, eval_batches(self.data.val, self.cfg.eval_batch_size))
                if has_val
                else dict(train_means)
            )
            self.state.epoch = epoch + 1
            self.state.batch_in_epoch = 0
            lr = self.optimizer.param_groups[0]["lr"]
            scalars = {f"val/{k}": v for k, v in val.items()}
            scalars.update({"lr": lr, "train/images_per_sec": throughput, "epoch": float(epoch + 1)})
            self.tracker.scalars(scalars, self.state.step)
            if (epoch + 1) % self.cfg.image_every_epochs == 0 or epoch + 1 == self.cfg.epochs:
                self._log_images(epoch)
            latent_scalars = self.latent_monitor.on_epoch_end(epoch + 1, self.state.step, epoch + 1 == self.cfg.epochs)
            record = {"epoch": epoch + 1, "step": self.state.step, "images_per_sec": throughput, "lr": lr}
            record.update(latent_scalars)
            record.update({f"train/{k}": v for k, v in train_means.items()})
            record.update({f"val/{k}": v for k, v in val.items()})
            self.state.history.append(record)
            improved = val["loss"] < self.state.best_val
            if improved:
                self.state.best_val = val["loss"]
                self.state.best_epoch = epoch + 1
            self.save("last.pt", metrics=record)
            if improved:
                self.save("best.pt", metrics=record)
            self.tracker.flush()
            log.info(
                "epoch %d/%d  train loss %.2f (recon %.2f, kl %.2f)  val elbo %.2f  %.0f img/s%s",
                epoch + 1,
                self.cfg.epochs,
                train_means["loss"],
                train_means["recon"],
                train_means["kl"],
                val["elbo"],
                throughput,
                "  *best" if improved else "",
            )
        self.latent_monitor.on_fit_end(self.state.step)
        return self.state

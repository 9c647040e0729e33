"""The training loop: fit, evaluate, checkpoint, resume. Knows no dataset or architecture names.

Hot-loop rules: batches are index slices of a tensor already on the device; metrics accumulate in a device
tensor and are read back (one host sync) only every ``log_every_steps`` steps and at the end of an epoch.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from vae_cli.config import NanPolicy, TrainerConfig
from vae_cli.datasets import ImageSplits, eval_batches, to_unit_float
from vae_cli.errors import CheckpointError, TrainingError
from vae_cli.losses.elbo import ELBOLoss
from vae_cli.models.vae import VAE
from vae_cli.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from vae_cli.training.distributed import Distributed, any_rank, sum_over_ranks
from vae_cli.training.latent_monitor import LatentMonitor
from vae_cli.training.step import TrainStep, portable_optimizer_state
from vae_cli.training.tracking import Tracker

log = logging.getLogger(__name__)

TERMS = ("loss", "recon", "kl", "elbo")


@dataclass
class TrainState:
    """Where training stands, down to the batch; everything here goes into the checkpoint, so a run stopped
    mid-epoch resumes with nothing lost (the epoch's running sums included)."""

    epoch: int = 0  # completed epochs
    batch_in_epoch: int = 0  # batches of the current epoch already consumed (0 at an epoch boundary)
    step: int = 0  # optimizer steps so far
    best_val: float = float("inf")
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)
    # Running sums of the current epoch and logging interval: [loss, recon, kl, elbo] * batch size.
    epoch_sums: list[float] = field(default_factory=lambda: [0.0] * len(TERMS))
    epoch_count: int = 0
    epoch_seconds: float = 0.0
    interval_sums: list[float] = field(default_factory=lambda: [0.0] * len(TERMS))
    interval_count: int = 0
    skipped_batches: int = 0
    rollbacks: int = 0


class NonFinite(Exception):
    """A NaN/Inf loss or gradient at a known position (internal: the policy decides what the user sees)."""

    def __init__(self, what: str, epoch: int, batch: int, step: int) -> None:
        super().__init__(f"{what} at step {step}")
        self.what, self.epoch, self.batch, self.step = what, epoch, batch, step


class TrainingInterrupted(TrainingError):
    """Ctrl-C / SIGTERM: the state was checkpointed; the message carries the resume command."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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
        stop_requested: Callable[[], int | None] = lambda: None,
        dist: Distributed | None = None,
    ) -> None:
        self.model = model
        # Under torchrun: this process's place; collectives below keep the ranks in step (vae_cli/distributed.py).
        self.dist = dist or Distributed()
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.data = data
        self.cfg = cfg
        self.run_dir = run_dir
        self.tracker = tracker
        self.config_dict = config_dict
        self.stop_requested = stop_requested
        self.state = TrainState()
        self.batches = train_batches
        # The model's device, not data.train's: a streamed training split stays on the host.
        self.device = next(model.parameters()).device
        # A host sync per step costs nothing on CPU; on a GPU only the skip/rollback policies pay for it (they
        # must see a bad step before the optimizer applies it), while "stop" checks at log points and before
        # every checkpoint write, so a bad state is never saved.
        self.check_each_step = self.device.type != "cuda" or cfg.nan_policy != NanPolicy.stop
        # Forward, loss, backward and update of one batch, with the speed options (bf16, compile, CUDA graphs).
        self.train_step = TrainStep(model, loss_fn, optimizer, cfg, self.device, self.dist)
        self.first_step_at: float | None = None  # wall-clock time of the first optimizer step (start-up metric)
        # Fixed inputs for the image grids, so epochs compare: the first val images and one prior draw.
        shown = data.val if data.val.shape[0] > 0 else data.train
        n_shown = max(8, (min(cfg.num_images, shown.shape[0]) // 8) * 8) if shown.shape[0] >= 8 else shown.shape[0]
        self.fixed_images = shown[:n_shown].to(self.device)
        self.fixed_z = torch.randn(
            cfg.num_images, model.latent_dim, generator=torch.Generator().manual_seed(cfg.seed + 1)
        ).to(self.device)
        self.latent_monitor = LatentMonitor(model, loss_fn, data, cfg, tracker)

    # ----- checkpoints -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        s = self.state
        return {
            "model": self.model.state_dict(),
            "optimizer": portable_optimizer_state(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "epoch": s.epoch,
            "batch_in_epoch": s.batch_in_epoch,
            "step": s.step,
            "train_state": {k: v for k, v in vars(s).items() if k not in ("epoch", "batch_in_epoch", "step")},
            "rng": rng_state(),
            "config": self.config_dict,
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"The checkpoint's weights do not fit the model its config describes ({str(exc).splitlines()[0]}). "
                f"The file was edited or comes from another architecture; resume from an unmodified vae-train "
                f"checkpoint, or start a new run."
            ) from exc
        self.scheduler.load_state_dict(ckpt["scheduler"])
        extra = dict(ckpt.get("train_state", {}))
        self.state = TrainState(
            epoch=ckpt["epoch"], batch_in_epoch=ckpt.get("batch_in_epoch", 0), step=ckpt["step"], **extra
        )
        set_rng_state(ckpt["rng"])

    def set_base_lr(self, lr: float) -> None:
        """Change the peak learning rate (the schedule keeps its shape), e.g. an ``optim.lr=`` given on resume."""
        self.scheduler.base_lrs = [lr] * len(self.optimizer.param_groups)
        factor = self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * factor

    def save(self, name: str, metrics: dict[str, float] | None = None) -> Path:
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise NonFinite("non-finite weights", self.state.epoch, self.state.batch_in_epoch, self.state.step)
        path = self.run_dir / "checkpoints" / name
        try:
            save_checkpoint({**self.state_dict(), "metrics": metrics or {}}, path)
        except OSError as exc:
            raise TrainingError(
                f"Could not write checkpoint {path}: {exc.strerror or exc}. The previous checkpoint there is intact "
                f"(writes go to a temporary file that replaces it only when complete). Free disk space or fix the "
                f"folder's permissions, then resume with: vae-train trainer.resume={self.run_dir}"
            ) from exc
        return path

    # ----- the loop --------------------------------------------------------------------------------------
    def _progress(self, iterable, total: int, epoch: int):
        mode = self.cfg.progress
        if not self.dist.is_main:
            return iterable  # one bar per job: rank 0's
        if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
            from tqdm import tqdm

            return tqdm(iterable, total=total, desc=f"epoch {epoch + 1}/{self.cfg.epochs}", leave=False)
        return iterable

    def _step_is_bad(self, loss: torch.Tensor) -> str | None:
        """What is non-finite in this step (loss, gradient), or None. Grad clipping happens here too."""
        # Under torchrun each rank sees only its own loss; they agree, or one would skip/stop while the others wait.
        if self.check_each_step and any_rank(not torch.isfinite(loss).item(), self.dist, self.device):
            return "NaN/Inf loss"
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg.grad_clip is not None:
            norm = nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        elif self.cfg.nan_policy != NanPolicy.stop:
            norm = nn.utils.get_total_norm([p.grad for p in params])
        else:
            return None  # a bad gradient shows up as a bad loss one step later, before anything is saved
        if self.check_each_step and not torch.isfinite(norm).item():
            return "NaN/Inf gradient"
        return None

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], float]:
        s = self.state
        epoch_sums = torch.tensor(s.epoch_sums, device=self.device)
        interval_sums = torch.tensor(s.interval_sums, device=self.device)
        consecutive_skips = 0
        total = len(self.batches) - s.batch_in_epoch
        t0 = time.perf_counter() - s.epoch_seconds
        for x in self._progress(self.batches.epoch(epoch, s.batch_in_epoch), total, epoch):
            if self.train_step.whole_step:
                # CUDA graphs: forward, backward, clipping and update replay as one graph. Only nan_policy=stop
                # is allowed with them; it checks at log points and before every checkpoint, as on any GPU.
                terms = self.train_step(x, s.step)
                s.batch_in_epoch += 1
            else:
                loss, terms = self.train_step.forward_backward(x, s.step)
                bad = self._step_is_bad(loss)
                s.batch_in_epoch += 1
                if bad is not None:
                    if self.cfg.nan_policy != NanPolicy.skip or consecutive_skips + 1 >= self.cfg.max_nan_skips:
                        raise NonFinite(bad, epoch, s.batch_in_epoch, s.step)
                    consecutive_skips += 1
                    s.skipped_batches += 1
                    log.warning("skipped batch %d of epoch %d: %s (step %d)", s.batch_in_epoch, epoch + 1, bad, s.step)
                    continue
                consecutive_skips = 0
                self.optimizer.step()
            self.scheduler.step()
            s.step += 1
            if self.first_step_at is None:
                self.first_step_at = time.time()
                # For start-up benchmarks (launch -> first update); not in metrics.json, which is deterministic.
                log.info("first optimizer step done at unix time %.3f", self.first_step_at)
            batch_terms = terms.mul_(x.shape[0])  # detached [loss, recon, kl, elbo] per-sample means -> sums
            epoch_sums += batch_terms
            interval_sums += batch_terms
            s.epoch_count += x.shape[0]
            s.interval_count += x.shape[0]
            if s.step % self.cfg.log_every_steps == 0:
                self._log_interval(interval_sums, epoch)
            every = self.cfg.checkpoint_every_steps
            signum = self.stop_requested()
            if signum or (every and s.step % every == 0):
                s.epoch_sums, s.interval_sums = epoch_sums.tolist(), interval_sums.tolist()
                s.epoch_seconds = time.perf_counter() - t0
                self.save("last.pt")
                if signum:
                    raise self._interrupted(signum, epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        # Every rank's shard has the same size, so the mean over ranks is the mean over the whole epoch.
        means = (sum_over_ranks(epoch_sums, self.dist) / max(1, s.epoch_count * self.dist.world_size)).tolist()
        if not all(map(math.isfinite, means)):
            raise NonFinite("NaN/Inf loss", epoch, s.batch_in_epoch, s.step)
        if s.interval_count > 0:
            self._log_interval(interval_sums, epoch)
        throughput = s.epoch_count * self.dist.world_size / seconds if seconds > 0 else float("nan")
        return dict(zip(TERMS, means, strict=True)), throughput

    def _log_interval(self, interval_sums: torch.Tensor, epoch: int) -> None:
        s = self.state
        # The one host sync per logging interval (and, under torchrun, a sum over the ranks).
        means = (sum_over_ranks(interval_sums, self.dist) / (s.interval_count * self.dist.world_size)).tolist()
        if not all(map(math.isfinite, means)):
            raise NonFinite("NaN/Inf loss", epoch, s.batch_in_epoch, s.step)
        scalars = {f"train/{k}": v for k, v in zip(TERMS, means, strict=True)}
        scalars["train/kl_weight"] = self.loss_fn.kl_weight(s.step - 1)
        self.tracker.scalars(scalars, s.step)
        interval_sums.zero_()
        s.interval_count = 0

    def _interrupted(self, signum: int, epoch: int) -> TrainingInterrupted:
        import signal

        name = signal.Signals(signum).name
        s = self.state
        self.tracker.flush()
        launcher = f"torchrun --nproc_per_node={self.dist.world_size} $(which vae-train)" if self.dist.enabled else ""
        return TrainingInterrupted(
            f"Stopped by {name} at step {s.step} (epoch {epoch + 1}, batch {s.batch_in_epoch} of "
            f"{len(self.batches)}). The full state, mid-epoch position included, is saved in "
            f"{self.run_dir / 'checkpoints' / 'last.pt'} and TensorBoard is flushed. Resume with: "
            f"{launcher or 'vae-train'} trainer.resume={self.run_dir}",
            exit_code=128 + signum,
        )

    def _nonfinite_error(self, bad: NonFinite) -> TrainingError:
        lr = float(self.optimizer.param_groups[0]["lr"])
        kept = self.run_dir / "checkpoints" / "last.pt"
        return TrainingError(
            f"Training stopped: {bad.what} at step {bad.step} (epoch {bad.epoch + 1}, batch {bad.batch}). Likely "
            f"causes: a learning rate too high (now {lr:g}; try optim.lr={lr / 10:g}), a likelihood that does not fit "
            f"the data (bernoulli needs pixels in [0, 1]; gaussian with a tiny loss.gaussian_std explodes), or "
            f"exploding gradients (try trainer.grad_clip=1.0). "
            + (
                f"The last good checkpoint is kept: {kept} (resume with trainer.resume={self.run_dir}). "
                if kept.is_file()
                else "No checkpoint had been written yet. "
            )
            + "trainer.nan_policy=skip drops bad batches; trainer.nan_policy=rollback reloads the last checkpoint "
            "with a lower learning rate."
        )

    def _rollback(self, bad: NonFinite) -> None:
        path = self.run_dir / "checkpoints" / "last.pt"
        if not path.is_file() or self.state.rollbacks >= self.cfg.max_rollbacks:
            raise self._nonfinite_error(bad)
        rollbacks = self.state.rollbacks + 1
        diverged_lr = self.scheduler.base_lrs[0]  # the checkpoint may hold an older lr (e.g. before a resume)
        self.load_state_dict(load_checkpoint(path, map_location=self.device))
        self.state.rollbacks = rollbacks
        factor = self.cfg.rollback_lr_factor
        self.set_base_lr(diverged_lr * factor)
        log.warning(
            "%s at step %d: rolled back to step %d (epoch %d, batch %d) with the learning rate times %g (%d/%d)",
            bad.what,
            bad.step,
            self.state.step,
            self.state.epoch + 1,
            self.state.batch_in_epoch,
            factor,
            rollbacks,
            self.cfg.max_rollbacks,
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

    def _end_epoch(self, epoch: int, train_means: dict[str, float], throughput: float) -> None:
        s = self.state
        has_val = self.data.val.shape[0] > 0
        val = (
            evaluate(self.model, self.loss_fn, eval_batches(self.data.val, self.cfg.eval_batch_size))
            if has_val
            else dict(train_means)
        )
        s.epoch, s.batch_in_epoch = epoch + 1, 0
        s.epoch_sums, s.epoch_count, s.epoch_seconds = [0.0] * len(TERMS), 0, 0.0
        s.interval_sums, s.interval_count = [0.0] * len(TERMS), 0
        lr = float(self.optimizer.param_groups[0]["lr"])  # a device tensor under CUDA graphs
        scalars = {f"val/{k}": v for k, v in val.items()}
        scalars.update({"lr": lr, "train/images_per_sec": throughput, "epoch": float(epoch + 1)})
        self.tracker.scalars(scalars, s.step)
        if (epoch + 1) % self.cfg.image_every_epochs == 0 or epoch + 1 == self.cfg.epochs:
            self._log_images(epoch)
        latent_scalars = self.latent_monitor.on_epoch_end(epoch + 1, s.step, last=epoch + 1 == self.cfg.epochs)
        record = {"epoch": epoch + 1, "step": s.step, "images_per_sec": throughput, "lr": lr}
        record.update(latent_scalars)
        record.update({f"train/{k}": v for k, v in train_means.items()})
        record.update({f"val/{k}": v for k, v in val.items()})
        s.history.append(record)
        improved = val["loss"] < s.best_val
        if improved:
            s.best_val, s.best_epoch = val["loss"], epoch + 1
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

    def fit(self) -> TrainState:
        """Train from the current state to ``cfg.epochs``; checkpoint ``last.pt`` every epoch (and every
        ``checkpoint_every_steps``), ``best.pt`` on a new best validation loss."""
        self.model.train()
        while self.state.epoch < self.cfg.epochs:
            epoch = self.state.epoch
            try:
                train_means, throughput = self._train_epoch(epoch)
                self._end_epoch(epoch, train_means, throughput)
            except NonFinite as bad:
                if self.cfg.nan_policy == NanPolicy.rollback:
                    self._rollback(bad)
                    continue
                raise self._nonfinite_error(bad) from None
        self.latent_monitor.on_fit_end(self.state.step)
        return self.state

"""The training loop: fit, evaluate, checkpoint, resume. Knows no dataset, architecture or objective by name: it
works on the named terms the objective declares (``objective.terms``).

The path of one step, from the command line to ``optimizer.step()``::

    commands/train.py  main: signals, argv, preflight            -> runs/hydra_app.py  @hydra.main
    runs/job.py        run_job: claim the run directory, run.json -> training/session.py  prepare (every refusal
                       before any write), then train: data, model, objective, optimizer, Trainer
    training/trainer.py  Trainer.fit -> _train_epoch: for each batch, TrainStep(x, y, step), then the NaN policy
    training/step.py     TrainStep: forward + loss + backward, clip (the one place), non-finite checks,
                         apply_update: skip guard -> optimizer.step() -> weight average (training/updates.py)

Bad updates: the step reports what was NaN/Inf (a loss, a gradient) without applying it; this module's NaN policy
(``trainer.nan_policy``) stops, skips the batch, or rolls back to the last checkpoint with a lower learning rate.
The skip guard (``trainer.skip_grad_norm``) and the weight average (``trainer.ema_decay``) are in updates.py.

Hot-loop rules: batches are index slices of a tensor already on the device; metrics accumulate in a device
tensor and are read back (one host sync) only every ``log_every_steps`` steps and at the end of an epoch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from vae_cli.config.enums import NanPolicy
from vae_cli.config.metric_direction import higher_is_better
from vae_cli.config.training import TrainerConfig
from vae_cli.datasets.batches import Batch, batch_count, labelled_batches
from vae_cli.datasets.preprocess import to_unit_float
from vae_cli.datasets.splits import ImageSplits
from vae_cli.evaluation.terms import evaluate
from vae_cli.evaluation.tracking import Tracker
from vae_cli.models.protocol import Model
from vae_cli.objectives.base import Objective
from vae_cli.process import disk, progress
from vae_cli.process.distributed import Distributed, sum_over_ranks
from vae_cli.process.errors import CheckpointError, TrainingError
from vae_cli.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from vae_cli.training.disentanglement_monitor import DisentanglementMonitor
from vae_cli.training.history import write_history
from vae_cli.training.latent_monitor import LatentMonitor
from vae_cli.training.step import TrainStep, portable_optimizer_state

log = logging.getLogger(__name__)

# Epoch records kept in the checkpoint's history (the last ones; every epoch's numbers are in TensorBoard).
HISTORY_KEPT = 100


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
    # Running sums of the current epoch and logging interval: each of the objective's terms * batch size.
    epoch_sums: list[float] = field(default_factory=list)
    epoch_count: int = 0
    epoch_seconds: float = 0.0
    interval_sums: list[float] = field(default_factory=list)
    interval_count: int = 0
    skipped_batches: int = 0
    rollbacks: int = 0
    # Early stopping (trainer.early_stop_patience): the watched metric's best, when, evaluations since, and
    # the epoch training stopped at (0: it did not stop early).
    watched_best: float | None = None
    watched_best_epoch: int = 0
    watched_since_best: int = 0
    stopped_early_at: int = 0


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
    """What the trainer iterates: (images in [0, 1], labels) on the training device, reproducible per epoch."""

    def __len__(self) -> int: ...

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]: ...


def thinned_every(every: int, epochs: int, max_logs: int) -> int:
    """An epoch interval no smaller than ``every`` that logs at most ``max_logs`` times in ``epochs`` epochs."""
    return max(every, -(-epochs // max(1, max_logs)))


class Trainer:
    def __init__(
        self,
        model: Model,
        objective: Objective,
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
        max_image_logs: int = 50,
        model_info: dict[str, Any] | None = None,
        disentanglement: DisentanglementMonitor | None = None,
    ) -> None:
        self.model = model
        self.objective = objective
        self.terms = objective.terms
        # Recorded in every checkpoint beside what rebuilding the model needs (a prior's run: which VQ-VAE).
        self.model_info = dict(model_info or {})
        # Under torchrun: this process's place; collectives below keep the ranks in step (vae_cli/process/distributed.py).
        self.dist = dist or Distributed()
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.data = data
        self.cfg = cfg
        self.run_dir = run_dir
        self.tracker = tracker
        self.config_dict = config_dict
        self.stop_requested = stop_requested
        self.state = self._fresh_state()
        self.batches = train_batches
        # The model's device, not data.train's: a streamed training split stays on the host.
        self.device = model.device
        # Forward, loss, backward, clipping, the bad-update checks and the update of one batch, with the speed options (bf16, compile, CUDA graphs).
        self.train_step = TrainStep(model, objective, optimizer, cfg, self.device, self.dist)
        self.first_step_at: float | None = None  # wall-clock time of the first optimizer step (start-up metric)
        self._epoch_seconds = 0.0
        # Pictures are thinned for runs of many short epochs, so the run directory stays bounded.
        self.image_every = thinned_every(cfg.image_every_epochs, cfg.epochs, max_image_logs)
        # Fixed inputs for the image grids, so epochs compare: the first val images and one prior draw.
        shown = data.val if data.val.shape[0] > 0 else data.train
        shown_labels = data.val_labels if data.val.shape[0] > 0 else data.train_labels
        n_shown = max(8, (min(cfg.num_images, shown.shape[0]) // 8) * 8) if shown.shape[0] >= 8 else shown.shape[0]
        self.fixed_images = shown[:n_shown].to(self.device)
        self.fixed_labels = shown_labels[:n_shown].to(self.device)
        # Samples come from a fixed seed each time: a learned prior moves, so it is sampled anew at every log.
        self.sample_seed = cfg.seed + 1
        # A CVAE's samples: each row of 8 one class, in order.
        classes = max(1, model.num_classes)
        self.sample_labels = (torch.arange(cfg.num_images, device=self.device) // 8) % classes
        self.disentanglement = disentanglement
        self.latent_monitor = LatentMonitor(
            model,
            data,
            cfg,
            tracker,
            every=thinned_every(cfg.latent_every_epochs, cfg.epochs, max_image_logs),
            bound=not objective.no_bound,
        )

    def _fresh_state(self) -> TrainState:
        n = len(self.terms)
        return TrainState(epoch_sums=[0.0] * n, interval_sums=[0.0] * n)

    # ----- checkpoints -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        s = self.state
        return {
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": portable_optimizer_state(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "epoch": s.epoch,
            "batch_in_epoch": s.batch_in_epoch,
            "step": s.step,
            "train_state": {k: v for k, v in vars(s).items() if k not in ("epoch", "batch_in_epoch", "step")},
            "rng": rng_state(),
            "config": self.config_dict,
            "terms": list(self.terms),
            **self._average_and_guard_state(),
            # What rebuilding the model and the objective needs besides the config (vae-eval, vae-sample, load_run).
            "model_info": {
                **self.model_info,
                "num_classes": self.model.num_classes,
                "train_size": int(self.data.train.shape[0]),
                "image_shape": list(self.data.image_shape),
            },
        }

    def _average_and_guard_state(self) -> dict[str, Any]:
        step = self.train_step
        out: dict[str, Any] = {}
        if step.ema is not None:
            # What vae-eval, vae-sample, load_run and the test split use (checkpoint.evaluation_weights).
            out["ema_model"] = step.ema.averaged_state_dict()
            out["ema_updates"] = float(step.ema.updates.item())  # at a checkpoint, not in the step
        if step.guard is not None:
            out["update_guard"] = step.guard.state_dict()
        return out

    def judged(self):
        """The weights the run is judged by (the average with ``trainer.ema_decay``) in the model, for the
        duration: validation, images, latent views, IW-NLL."""
        ema = self.train_step.ema
        return ema.swapped() if ema is not None else contextlib.nullcontext()

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(ckpt["model"])
            self.objective.load_state_dict(ckpt.get("objective", {}))
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.train_step.ema is not None:
                # A run that starts averaging on resume starts from its current weights, with the warm-up.
                averaged = "ema_model" in ckpt
                updates = ckpt.get("ema_updates", 1e9 if averaged else 0.0)  # 1e9: no warm-up left
                self.train_step.ema.load_averaged(ckpt.get("ema_model", ckpt["model"]), updates)
            if self.train_step.guard is not None:
                self.train_step.guard.load_state_dict(ckpt.get("update_guard", {}))
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"The checkpoint's weights do not fit the model its config describes ({str(exc).splitlines()[0]}). "
                f"The file was edited or comes from another architecture; resume from an unmodified vae-train "
                f"checkpoint, or start a new run."
            ) from exc
        self.scheduler.load_state_dict(ckpt["scheduler"])
        extra = dict(ckpt.get("train_state", {}))
        n = len(self.terms)
        for key in ("epoch_sums", "interval_sums"):
            if len(extra.get(key, [])) != n:  # a checkpoint of an older layout: sums of the 4 ELBO terms
                extra[key] = (list(extra.get(key, [])) + [0.0] * n)[:n]
        self.state = TrainState(
            epoch=ckpt["epoch"], batch_in_epoch=ckpt.get("batch_in_epoch", 0), step=ckpt["step"], **extra
        )
        set_rng_state(ckpt["rng"])

    def set_base_lr(self, lr: float) -> None:
        """Change the peak learning rate of the model's parameters (the schedule keeps its shape, and every other
        parameter group, e.g. a discriminator's, keeps its ratio to it), e.g. an ``optim.lr=`` given on resume."""
        ratio = lr / self.scheduler.base_lrs[0]
        self.scheduler.base_lrs = [base * ratio for base in self.scheduler.base_lrs]
        factor = self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
            group["lr"] = base * factor

    def save(self, name: str, metrics: dict[str, float] | None = None) -> Path:
        if not all(torch.isfinite(p).all() for p in self.train_step.parameters):
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
    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], float]:
        s = self.state
        epoch_sums = torch.tensor(s.epoch_sums, device=self.device)
        interval_sums = torch.tensor(s.interval_sums, device=self.device)
        t0 = time.perf_counter() - s.epoch_seconds
        with progress.phase(
            f"epoch {epoch + 1}/{self.cfg.epochs}",
            total=len(self.batches),
            mode=self.cfg.progress,
            status=lambda: self._running_loss(epoch_sums),
            enabled=self.dist.is_main,  # one bar per job: rank 0's
            every_s=self.cfg.progress_every_s,
            initial=s.batch_in_epoch,  # a resumed epoch starts where it stopped
        ) as shown:
            return self._train_batches(epoch, epoch_sums, interval_sums, t0, shown)

    def _running_loss(self, epoch_sums: torch.Tensor) -> str:
        """The epoch's mean loss so far (a host sync: asked for about once a second on a bar, or per log line)."""
        count = self.state.epoch_count
        return f"loss {epoch_sums[self.terms.index('loss')].item() / count:.4g}" if count else "loss …"

    def _train_batches(
        self,
        epoch: int,
        epoch_sums: torch.Tensor,
        interval_sums: torch.Tensor,
        t0: float,
        shown: progress.Phase,
    ) -> tuple[dict[str, float], float]:
        s = self.state
        consecutive_skips = 0
        # Read once, not per step: each read of a DictConfig node costs ~10 us of Python.
        log_every, checkpoint_every = self.cfg.log_every_steps, self.cfg.checkpoint_every_steps
        for x, y in self.batches.epoch(epoch, s.batch_in_epoch):
            terms, bad = self.train_step(x, y, s.step)
            s.batch_in_epoch += 1
            if bad is not None:  # nothing was applied: the NaN policy decides
                if self.cfg.nan_policy != NanPolicy.skip or consecutive_skips + 1 >= self.cfg.max_nan_skips:
                    raise NonFinite(bad, epoch, s.batch_in_epoch, s.step)
                consecutive_skips += 1
                s.skipped_batches += 1
                log.warning("skipped batch %d of epoch %d: %s (step %d)", s.batch_in_epoch, epoch + 1, bad, s.step)
                shown.advance()
                continue
            consecutive_skips = 0
            self.scheduler.step()
            s.step += 1
            if self.first_step_at is None:
                self.first_step_at = time.time()
                # For start-up benchmarks (launch -> first update); not in metrics.json, which is deterministic.
                log.debug("first optimizer step done at unix time %.3f", self.first_step_at)
            batch_terms = terms.mul_(x.shape[0])  # detached per-sample means of the terms -> sums
            epoch_sums += batch_terms
            interval_sums += batch_terms
            s.epoch_count += x.shape[0]
            s.interval_count += x.shape[0]
            shown.advance()
            if s.step % log_every == 0:
                self._log_interval(interval_sums, epoch)
            signum = self.stop_requested()
            if signum or (checkpoint_every and s.step % checkpoint_every == 0):
                s.epoch_sums, s.interval_sums = epoch_sums.tolist(), interval_sums.tolist()
                s.epoch_seconds = time.perf_counter() - t0
                self.save("last.pt")
                if signum:
                    raise self._interrupted(signum, epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        self._epoch_seconds = seconds  # training time of the epoch, for its log line
        # Every rank's shard has the same size, so the mean over ranks is the mean over the whole epoch.
        means = (sum_over_ranks(epoch_sums, self.dist) / max(1, s.epoch_count * self.dist.world_size)).tolist()
        if not all(map(math.isfinite, means)):
            raise NonFinite("NaN/Inf loss", epoch, s.batch_in_epoch, s.step)
        if s.interval_count > 0:
            self._log_interval(interval_sums, epoch)
        throughput = s.epoch_count * self.dist.world_size / seconds if seconds > 0 else float("nan")
        return dict(zip(self.terms, means, strict=True)), throughput

    def _log_interval(self, interval_sums: torch.Tensor, epoch: int) -> None:
        s = self.state
        # The one host sync per logging interval (and, under torchrun, a sum over the ranks).
        means = (sum_over_ranks(interval_sums, self.dist) / (s.interval_count * self.dist.world_size)).tolist()
        if not all(map(math.isfinite, means)):
            raise NonFinite("NaN/Inf loss", epoch, s.batch_in_epoch, s.step)
        scalars = {f"train/{k}": v for k, v in zip(self.terms, means, strict=True)}
        if self.train_step.guard is not None:
            scalars["train/skipped_updates"] = float(self.train_step.guard.skipped.item())
        scalars.update({f"train/{k}": v for k, v in self.objective.schedule_values(s.step - 1).items()})
        self.tracker.scalars(scalars, s.step)
        interval_sums.zero_()
        s.interval_count = 0

    def _interrupted(self, signum: int, epoch: int, where: str | None = None) -> TrainingInterrupted:
        import signal

        name = signal.Signals(signum).name
        s = self.state
        self.tracker.flush()
        launcher = f"torchrun --nproc_per_node={self.dist.world_size} $(which vae-train)" if self.dist.enabled else ""
        position = where or f"step {s.step} (epoch {epoch + 1}, batch {s.batch_in_epoch} of {len(self.batches)})"
        return TrainingInterrupted(
            f"Stopped by {name} at {position}. The full state, mid-epoch position included, is saved in "
            f"{self.run_dir / 'checkpoints' / 'last.pt'} and TensorBoard is flushed. Resume with: "
            f"{launcher or 'vae-train'} trainer.resume={self.run_dir}",
            exit_code=128 + signum,
        )

    def _nonfinite_error(self, bad: NonFinite, gave_up: str = "") -> TrainingError:
        lr = float(self.optimizer.param_groups[0]["lr"])
        kept = self.run_dir / "checkpoints" / "last.pt"
        policy = NanPolicy(self.cfg.nan_policy)
        if policy == NanPolicy.stop:
            other = (
                "trainer.nan_policy=skip drops bad batches; trainer.nan_policy=rollback reloads the last checkpoint "
                "with a lower learning rate."
            )
        elif policy == NanPolicy.skip:
            other = (
                f"trainer.nan_policy=skip gave up after {self.cfg.max_nan_skips} bad batches in a row, so the model "
                f"itself has diverged rather than a few batches being bad: lower the learning rate, clip the "
                f"gradients, or try trainer.nan_policy=rollback (reload the last checkpoint with a lower lr)."
            )
        else:
            other = (
                f"trainer.nan_policy=rollback gave up {gave_up or f'after {self.cfg.max_rollbacks} rollbacks'}: "
                f"halving the learning rate did not help, so start from a much lower optim.lr (or raise "
                f"trainer.max_rollbacks / lower trainer.rollback_lr_factor)."
            )
        return TrainingError(
            f"Training stopped: {bad.what} at step {bad.step} (epoch {bad.epoch + 1}, batch {bad.batch}). Likely "
            f"causes: a learning rate too high (now {lr:g}; try optim.lr={lr / 10:g}), a likelihood that does not fit "
            f"the data (bernoulli needs pixels in [0, 1]; gaussian with a tiny likelihood.std explodes), or "
            f"exploding gradients (try trainer.grad_clip=1.0). "
            + (
                f"The last good checkpoint is kept: {kept} (resume with trainer.resume={self.run_dir}). "
                if kept.is_file()
                else "No checkpoint had been written yet. "
            )
            + other
        )

    def _rollback(self, bad: NonFinite) -> None:
        path = self.run_dir / "checkpoints" / "last.pt"
        if not path.is_file():
            raise self._nonfinite_error(bad, gave_up="because no checkpoint had been written yet")
        if self.state.rollbacks >= self.cfg.max_rollbacks:
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
        likelihood = self.model.likelihood
        x, y = to_unit_float(self.fixed_images), self.fixed_labels
        mu, _ = self.model.encode(x, y)
        recon = likelihood.mean(self.model.decode(mu, y))
        n = x.shape[0]
        if n % 8 == 0:
            # Rows alternate: 8 originals, then their 8 reconstructions.
            grid = torch.stack([x.view(n // 8, 8, *x.shape[1:]), recon.view(n // 8, 8, *x.shape[1:])], dim=1)
            pairs = grid.reshape(-1, *x.shape[1:])
            rows = ["original", "reconstruction"] * (n // 8)
        else:
            pairs = torch.cat([x, recon])
            rows = None
        self.tracker.images(
            "images/reconstructions",
            pairs,
            self.state.step,
            epoch + 1,
            nrow=8,
            title=f"epoch {epoch + 1}: {'validation' if self.data.val.shape[0] else 'training'} images and their "
            f"reconstructions (decoder mean at z = mu)",
            row_labels=rows,
        )
        if not self.model.can_sample:  # a VQ-VAE before its prior: uniform codes decode to noise, not samples
            self.model.train(was_training)
            return
        z = self.model.prior_sample(self.cfg.num_images, torch.Generator().manual_seed(self.sample_seed))
        samples = likelihood.mean(self.model.decode(z, self.sample_labels))
        # A CVAE's grid has one class per row of 8, named; otherwise a square grid.
        nrow = 8 if self.model.conditional else None
        names = tuple(getattr(self.data, "class_names", ()))
        classes = self.sample_labels[::8].tolist() if self.model.conditional else []
        self.tracker.images(
            "images/samples",
            samples,
            self.state.step,
            epoch + 1,
            nrow=nrow,
            title=f"epoch {epoch + 1}: samples from the prior (decoder mean, seed {self.sample_seed})"
            + (", a class per row" if classes else ""),
            row_labels=[names[c] if c < len(names) else f"class {c}" for c in classes] or None,
        )
        self.model.train(was_training)

    def _end_epoch(self, epoch: int, train_means: dict[str, float], throughput: float) -> None:
        s = self.state
        has_val = self.data.val.shape[0] > 0
        val_started = time.perf_counter()
        if has_val:
            with self.judged():
                size, least = self.cfg.eval_batch_size, self.objective.least_batch
                batches = progress.tracked(
                    labelled_batches(self.data.val, self.data.val_labels, size, least),
                    f"epoch {epoch + 1}/{self.cfg.epochs}: validation",
                    total=batch_count(self.data.val.shape[0], size, least),
                    mode=self.cfg.progress if self.dist.is_main else "none",
                    every_s=self.cfg.progress_every_s,
                )
                val = evaluate(self.model, self.objective, batches)
        else:
            val = dict(train_means)
        val_seconds = time.perf_counter() - val_started
        s.epoch, s.batch_in_epoch = epoch + 1, 0
        s.epoch_sums, s.epoch_count, s.epoch_seconds = [0.0] * len(self.terms), 0, 0.0
        s.interval_sums, s.interval_count = [0.0] * len(self.terms), 0
        lr = float(self.optimizer.param_groups[0]["lr"])  # a device tensor under CUDA graphs
        scalars = {f"val/{k}": v for k, v in val.items()}
        # Under train/ with the curves (TensorBoard sorts its card groups by name: a top-level "epoch" or "lr"
        # group would come before the loss curves).
        scalars.update({"train/lr": lr, "train/images_per_sec": throughput, "train/epoch": float(epoch + 1)})
        self.tracker.scalars(scalars, s.step)
        # Early stopping decides here on a metric known now (so this epoch's pictures and IW estimate are the
        # last ones), or after the IW estimate for val/nll_iw.
        known = {**{f"train/{k}": v for k, v in train_means.items()}, **{f"val/{k}": v for k, v in val.items()}}
        stop_early = self._watch(known[self.cfg.sweep_metric], epoch) if self.cfg.sweep_metric in known else False
        last = epoch + 1 == self.cfg.epochs or stop_early
        with self.judged():
            if (epoch + 1) % self.image_every == 0 or last:
                self._log_images(epoch)
            latent_scalars = self.latent_monitor.on_epoch_end(epoch + 1, s.step, last=last)
            if self.disentanglement is not None and self.dist.is_main:
                latent_scalars.update(self.disentanglement.on_epoch_end(epoch + 1, s.step, last=last))
        if self.cfg.sweep_metric in latent_scalars:
            stop_early = self._watch(latent_scalars[self.cfg.sweep_metric], epoch)
        if stop_early:
            s.stopped_early_at = epoch + 1
        # Where the epoch's time went (history.csv): training, validation, and the IW estimate when it ran.
        record = {
            "epoch": epoch + 1,
            "step": s.step,
            "images_per_sec": throughput,
            "lr": lr,
            "train_seconds": round(self._epoch_seconds, 3),
            "val_seconds": round(val_seconds, 3),
        }
        record.update(latent_scalars)
        record.update({f"train/{k}": v for k, v in train_means.items()})
        record.update({f"val/{k}": v for k, v in val.items()})
        s.history.append(record)
        del s.history[:-HISTORY_KEPT]  # checkpoints stay small however many epochs run (TensorBoard has them all)
        # best.pt: the lowest validation value of the objective's selection term (its loss, unless a game value
        # makes that meaningless across epochs: objectives/base.py ``selection``).
        term, sign = self.objective.selection
        improved = sign * val[term] < s.best_val
        if improved:
            s.best_val, s.best_epoch = sign * val[term], epoch + 1
        self.save("last.pt", metrics=record)
        if improved:
            self.save("best.pt", metrics=record)
        if self.dist.is_main:
            try:
                write_history(self.run_dir, s.history, s.epoch)
            except OSError as exc:  # the checkpoint holds the history; the next epoch end writes the files again
                log.warning("could not write %s: %s", self.run_dir / "history.jsonl", exc.strerror or exc)
        self.tracker.flush()
        if self.state.epoch == 1 and self.dist.is_main:
            log.info("after the first epoch the run directory holds %s", disk.describe(self.run_dir))
        # The epoch's line comes last (but for an early stop's): tests and people take it as the epoch's end.
        log.info(
            "epoch %d/%d  train %s | %s %s | %s, %s img/s%s",
            epoch + 1,
            self.cfg.epochs,
            describe_terms(train_means),
            "val" if has_val else "(no val split: train)",
            describe_terms(val),
            progress.duration(self._epoch_seconds),
            f"{throughput:,.0f}",
            "  *best" if improved else "",
        )
        if stop_early:
            metric, sign = self.cfg.sweep_metric, -1.0 if higher_is_better(self.cfg.sweep_metric) else 1.0
            log.info(
                "early stop after epoch %d: %s has not improved on %.4g (epoch %d) for %d evaluations "
                "(trainer.early_stop_patience=%d); the run ends here as if at its last epoch",
                epoch + 1,
                metric,
                sign * (s.watched_best or 0.0),
                s.watched_best_epoch,
                s.watched_since_best,
                self.cfg.early_stop_patience,
            )

    def _watch(self, value: float, epoch: int) -> bool:
        """Early stopping: record ``value`` of the watched metric (``trainer.sweep_metric``) at ``epoch``; whether
        it has now gone ``trainer.early_stop_patience`` evaluations without improving."""
        patience = self.cfg.early_stop_patience
        if patience == 0 or not math.isfinite(value):
            return False
        s = self.state
        score = -value if higher_is_better(self.cfg.sweep_metric) else value  # smaller is better
        if s.watched_best is None or score < s.watched_best - self.cfg.early_stop_min_delta:
            s.watched_best, s.watched_best_epoch, s.watched_since_best = score, epoch + 1, 0
            return False
        s.watched_since_best += 1
        return s.watched_since_best >= patience

    def fit(self) -> TrainState:
        """Train from the current state to ``cfg.epochs``; checkpoint ``last.pt`` every epoch (and every
        ``checkpoint_every_steps``), ``best.pt`` on a new best validation loss. A stop signal that arrives during
        an epoch's validation or checkpointing stops the run right after that epoch's checkpoint."""
        self.model.train()
        self.objective.train()
        self.state.stopped_early_at = 0  # a run resumed after an early stop (with a larger patience) goes on
        while self.state.epoch < self.cfg.epochs and not self.state.stopped_early_at:
            epoch = self.state.epoch
            try:
                train_means, throughput = self._train_epoch(epoch)
                self._end_epoch(epoch, train_means, throughput)
            except NonFinite as bad:
                if self.cfg.nan_policy == NanPolicy.rollback:
                    self._rollback(bad)
                    continue
                raise self._nonfinite_error(bad) from None
            signum = self.stop_requested()
            if signum and self.state.epoch < self.cfg.epochs and not self.state.stopped_early_at:
                raise self._interrupted(signum, epoch, where=f"the end of epoch {epoch + 1} (step {self.state.step})")
        with self.judged():
            self.latent_monitor.on_fit_end(self.state.step)
        return self.state


# Bounds: reported beside the loss, not as parts of it.
BOUND_TERMS = ("elbo", "iw_elbo")


def describe_terms(values: dict[str, float], bound_only: bool = False) -> str:
    """A split's terms for a log line: ``loss 244.1 (recon 220.3, kl 23.8), elbo -244.1``: the loss, then every
    term the objective reports (what makes up the loss, and its statistics), then the bounds. A hierarchy's KL per
    layer is in TensorBoard (``kl`` is their sum). ``bound_only``: the bound alone."""
    bounds = [k for k in BOUND_TERMS if k in values]
    if bound_only:
        return f"{bounds[-1]} {values[bounds[-1]]:.2f}" if bounds else f"loss {values['loss']:.2f}"
    parts = [k for k in values if k != "loss" and k not in BOUND_TERMS and not k.startswith("kl_")]
    detail = ", ".join(f"{k} {_number(values[k])}" for k in parts)
    text = f"loss {_number(values['loss'])}" + (f" ({detail})" if detail else "")
    # A bound that is the loss itself (the ELBO's -loss) would only repeat it.
    shown = [k for k in bounds if not math.isclose(values[k], -values["loss"], rel_tol=1e-9, abs_tol=1e-9)]
    return text + "".join(f", {k} {_number(values[k])}" for k in shown)


def _number(value: float) -> str:
    return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.3g}"

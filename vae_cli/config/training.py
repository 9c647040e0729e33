"""The ``optim``, ``trainer`` and ``logger`` groups' schemas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vae_cli.config.checks import Need
from vae_cli.config.enums import CpuWait, DeviceName, NanPolicy, OptimizerName, Precision, Schedule

# torch.manual_seed takes a 64-bit value; the trainer adds per-rank and per-purpose offsets to the seed.
MAX_SEED = 2**62


@dataclass
class OptimConfig:
    # The optimizer: adam, or adamw (decoupled weight decay); both fused on CPU and CUDA.
    name: OptimizerName = OptimizerName.adam
    # Peak learning rate (after warm-up; the schedule scales it).
    lr: float = 1e-3
    # Weight decay (optim=adamw only; adam's L2 form is refused).
    weight_decay: float = 0.0
    # Learning-rate schedule: none (constant), or cosine (to lr * min_lr_ratio over the whole run).
    schedule: Schedule = Schedule.none
    # Cosine schedule: the lr decays from lr to lr * min_lr_ratio over the whole run.
    min_lr_ratio: float = 0.0
    # Linear warm-up of the learning rate from 0 over this many optimizer steps; 0 = none.
    warmup_steps: int = 0

    @classmethod
    def check(cls, o: Any, cfg: Any, need: Need) -> None:
        need(o.lr > 0, f"optim.lr must be > 0 (got {o.lr}).")
        need(o.weight_decay >= 0, f"optim.weight_decay must be >= 0 (got {o.weight_decay}).")
        need(0 <= o.min_lr_ratio <= 1, f"optim.min_lr_ratio must be in [0, 1] (got {o.min_lr_ratio}).")
        need(o.warmup_steps >= 0, f"optim.warmup_steps must be >= 0 (got {o.warmup_steps}).")
        if o.weight_decay > 0 and o.name == OptimizerName.adam:
            need(
                False,
                "optim.weight_decay > 0 with optim=adam couples the decay with the adaptive step (L2, not decoupled "
                "decay); use optim=adamw for weight decay.",
            )


@dataclass
class TrainerConfig:
    # Training epochs (passes over the training split).
    epochs: int = 10
    # Training images per optimizer step.
    batch_size: int = 128
    # Where to train: auto (CUDA, then MPS, then CPU), cpu, cuda or mps.
    device: DeviceName = DeviceName.auto
    # Seed of everything random in the run: initial weights, shuffling, sampling noise, the val split.
    seed: int = 0
    # Clip the global grad norm to this value; null = no clipping.
    grad_clip: float | None = None
    # Skip an update whose gradient norm (before clipping) exceeds this (VDVAE's skip_threshold: one bad batch of a
    # deep hierarchy must not wreck it); null = never skip. The guard: after max_skips_in_a_row skips in a row the
    # next such update is applied, clipped to this norm, so training cannot stall on a threshold set too low.
    skip_grad_norm: float | None = None
    # The skip guard: after this many skipped updates in a row the next one is applied, clipped to skip_grad_norm.
    max_skips_in_a_row: int = 20
    # Exponential moving average of the weights (e.g. 0.999), used for validation, best.pt, the test split, images,
    # vae-eval and vae-sample; the raw weights keep training. 0 = off.
    ema_decay: float = 0.0
    # Log training scalars every N optimizer steps (epoch means are always logged).
    log_every_steps: int = 100
    # Log image grids (reconstructions, samples) every N epochs, and always after the last one.
    image_every_epochs: int = 1
    # How many fixed validation images / fixed prior samples go into the image grids.
    num_images: int = 64
    # A run directory or a checkpoint file to continue from; null = start fresh.
    resume: str | None = None
    # A new run in a directory that already holds a run (hydra.run.dir=...) is refused unless this is true; then
    # the old run is moved aside to <dir>.replaced-<time>/ (never deleted) and the new one starts in <dir>.
    overwrite: bool = False
    # Eval batch size (no gradients, so it can be larger than batch_size).
    eval_batch_size: int = 1000
    # Progress bar (with the running loss): auto = only on a terminal (stderr); bar | none.
    progress: str = "auto"
    # Without a bar (a log file, a pipe, a batch job): a line saying where a long phase stands (training within an
    # epoch, validation, the IW estimate, the test split) at least this often, in seconds.
    progress_every_s: float = 30.0
    # --- speed (see README "Performance"); none of these changes the model, the loss or the optimizer's math ---
    # bf16 runs matmuls and convolutions under bf16 autocast (weights, optimizer state, loss sums stay fp32):
    # several times faster on CPUs with AVX512-BF16/AMX and on GPUs, same final test loss within noise. auto (the
    # default): bf16 where the device has native bf16 matmuls, fp32 elsewhere (where bf16 is emulated and slower);
    # the run logs and records which (metrics.json "precision"). Evaluation (IW bounds, vae-eval) is always fp32.
    precision: Precision = Precision.auto
    # torch.compile the forward pass and the loss (the backward follows): fuses the elementwise work. The first
    # step pays the compilation (3-55 s on 2 CPU cores, less again from inductor's cache), so it pays off on long
    # runs; on a CPU it needs a C++ compiler (g++ or $CXX) at run time.
    compile: bool = False
    # CUDA only: capture the whole step (forward, backward, optimizer) once as a CUDA graph and replay it, which
    # removes the per-kernel launch cost that bounds small models on fast GPUs.
    cuda_graphs: bool = False
    # Conv models on CUDA, and on a CPU in bf16: NHWC memory format, which the fastest convolution kernels want.
    channels_last: bool = True
    # How idle CPU threads wait (vae_cli/process/cpu_threads.py): spinning is fastest alone, sleeping avoids a 10-40x
    # collapse when other jobs share the cores. auto picks by the machine's load at start.
    cpu_wait: CpuWait = CpuWait.auto
    # torch's CPU threads; null = auto: a SLURM task's CPUs, or the cores divided among parallel sweep jobs
    # (hydra/launcher=joblib), else torch's default (every core).
    cpu_threads: int | None = None
    # Also write checkpoints/last.pt every N optimizer steps inside an epoch; null = only at epoch ends.
    checkpoint_every_steps: int | None = None
    # The metric vae-train returns to a sweeper (Optuna minimizes it): val/loss, or e.g. val/nll_iw (with
    # trainer.nll_iw_every_epochs > 0, computed after the last epoch).
    sweep_metric: str = "val/loss"
    # Early stopping: stop when trainer.sweep_metric (the metric sweeps rank by; val/loss by default) has not
    # improved by more than early_stop_min_delta for this many of its evaluations (epochs; for val/nll_iw, its
    # estimates); 0 = never. The run then ends as one that reached its last epoch (test split, metrics.json).
    early_stop_patience: int = 0
    # Early stopping: an improvement of the watched metric by this much or less does not count.
    early_stop_min_delta: float = 0.0
    # What a NaN/Inf loss or gradient does: stop | skip (the batch) | rollback (to last.pt, lr * factor).
    nan_policy: NanPolicy = NanPolicy.stop
    # skip: give up after this many bad batches in a row. rollback: at most this many rollbacks.
    max_nan_skips: int = 10
    # nan_policy=rollback: at most this many rollbacks in a run.
    max_rollbacks: int = 3
    # nan_policy=rollback: the learning rate is multiplied by this at each rollback.
    rollback_lr_factor: float = 0.5
    # Strict determinism (torch.use_deterministic_algorithms): slower on GPU; CPU runs are deterministic anyway.
    deterministic: bool = False
    # Latent views in TensorBoard (vae_cli/training/latent_monitor.py), all on the first latent_images val images:
    # histograms of mu and log sigma^2 every epoch; traversals and the 2-D scatter every latent_every_epochs
    # epochs and after the last one.
    latent_every_epochs: int = 1
    # The latent views (and the embedding projector) use the first this-many validation images.
    latent_images: int = 1000
    # val/nll_iw: importance-weighted -log p(x) of validation images (nll_iw_images), nll_iw_k samples, every N
    # epochs and after the last; 0 = off.
    nll_iw_every_epochs: int = 5
    # val/nll_iw: importance samples per image (K).
    nll_iw_k: int = 16
    # Validation images the IW estimate uses (the first N); null = as many as cost about a tenth of the training
    # between two estimates (1,719 of Fashion-MNIST's 5,000 for K=16 every 5 epochs; the log and metrics.json say N).
    nll_iw_images: int | None = None
    # Embedding projector (mu, labels, thumbnails) at the end of training.
    embedding: bool = True
    # A quick check of the whole pipeline in seconds (Lightning's fast_dev_run): one epoch of a few steps, then
    # validation, the IW estimate, the latent views, checkpoints, the test split and metrics.json, each on a few
    # images. The run's config records the sizes used; it resumes like any run (trainer.epochs=N goes on).
    quick_check: bool = False

    @classmethod
    def check(cls, t: Any, cfg: Any, need: Need) -> None:
        need(t.epochs >= 1, f"trainer.epochs must be >= 1 (got {t.epochs}).")
        need(t.batch_size >= 1, f"trainer.batch_size must be >= 1 (got {t.batch_size}).")
        need(t.eval_batch_size >= 1, f"trainer.eval_batch_size must be >= 1 (got {t.eval_batch_size}).")
        need(0 <= t.seed < MAX_SEED, f"trainer.seed must be in [0, 2**62) (got {t.seed}).")
        need(t.log_every_steps >= 1, f"trainer.log_every_steps must be >= 1 (got {t.log_every_steps}).")
        need(t.image_every_epochs >= 1, f"trainer.image_every_epochs must be >= 1 (got {t.image_every_epochs}).")
        if cfg is not None:
            most = cfg.logger.max_grid_images
            need(
                1 <= t.num_images <= most,
                f"trainer.num_images must be in [1, logger.max_grid_images={most}] (got {t.num_images}): a "
                f"grid of more images is a picture nobody can read and megabytes per epoch. Raise "
                f"logger.max_grid_images to allow it.",
            )
        need(t.latent_every_epochs >= 1, f"trainer.latent_every_epochs must be >= 1 (got {t.latent_every_epochs}).")
        need(t.latent_images >= 1, f"trainer.latent_images must be >= 1 (got {t.latent_images}).")
        need(
            t.nll_iw_every_epochs >= 0,
            f"trainer.nll_iw_every_epochs must be >= 0, 0 = off (got {t.nll_iw_every_epochs}).",
        )
        need(t.nll_iw_k >= 1, f"trainer.nll_iw_k must be >= 1 (got {t.nll_iw_k}).")
        need(
            t.nll_iw_images is None or t.nll_iw_images >= 1,
            f"trainer.nll_iw_images must be >= 1 or null (got {t.nll_iw_images}).",
        )
        need(t.grad_clip is None or t.grad_clip > 0, f"trainer.grad_clip must be > 0 or null (got {t.grad_clip}).")
        need(
            t.checkpoint_every_steps is None or t.checkpoint_every_steps >= 1,
            f"trainer.checkpoint_every_steps must be >= 1 or null (got {t.checkpoint_every_steps}).",
        )
        need(
            t.cpu_threads is None or 1 <= t.cpu_threads <= 1024,
            f"trainer.cpu_threads must be >= 1 or null (got {t.cpu_threads}).",
        )
        need(
            t.sweep_metric.startswith(("val/", "test/", "train/")),
            f"trainer.sweep_metric must name a metric of metrics.json such as val/loss or val/nll_iw "
            f"(got {t.sweep_metric}).",
        )
        need(
            not (t.sweep_metric.endswith("/nll_iw") and t.nll_iw_every_epochs == 0),
            f"trainer.sweep_metric={t.sweep_metric} is computed only with trainer.nll_iw_every_epochs > 0 (it is 0).",
        )
        need(
            t.early_stop_patience >= 0,
            f"trainer.early_stop_patience must be >= 0, 0 = off (got {t.early_stop_patience}).",
        )
        need(
            t.early_stop_min_delta >= 0,
            f"trainer.early_stop_min_delta must be >= 0 (got {t.early_stop_min_delta}).",
        )
        need(
            not (t.early_stop_patience > 0 and t.sweep_metric.startswith("test/")),
            f"trainer.early_stop_patience watches trainer.sweep_metric during training, but {t.sweep_metric} is "
            f"computed once, after the last epoch; watch a val/ metric (e.g. trainer.sweep_metric=val/loss).",
        )
        need(t.max_nan_skips >= 1, f"trainer.max_nan_skips must be >= 1 (got {t.max_nan_skips}).")
        need(t.max_rollbacks >= 1, f"trainer.max_rollbacks must be >= 1 (got {t.max_rollbacks}).")
        need(
            0 < t.rollback_lr_factor < 1,
            f"trainer.rollback_lr_factor must be in (0, 1) (got {t.rollback_lr_factor}).",
        )
        need(t.progress in ("auto", "bar", "none"), f"trainer.progress must be auto, bar or none (got {t.progress}).")
        need(t.progress_every_s > 0, f"trainer.progress_every_s must be > 0 (got {t.progress_every_s}).")
        need(
            not (t.cuda_graphs and t.device not in (DeviceName.cuda, DeviceName.auto)),
            f"trainer.cuda_graphs=true needs a CUDA device (got trainer.device={DeviceName(t.device).value}).",
        )
        need(
            not (t.cuda_graphs and t.nan_policy != NanPolicy.stop),
            "trainer.cuda_graphs=true replays the optimizer update inside the graph, so it works with "
            f"trainer.nan_policy=stop only (got {NanPolicy(t.nan_policy).value}).",
        )


@dataclass
class MlflowConfig:
    # Log the run to MLflow too: its config as params, the scalars per step, the pictures, and at the end the
    # checkpoints, metrics.json and history.csv as artifacts (logger=mlflow turns it on).
    enabled: bool = False
    # The tracking server (http://host:5000) or store (file:/path, sqlite:///path); null = MLflow's own default
    # (the MLFLOW_TRACKING_URI environment variable, else ./mlruns).
    tracking_uri: str | None = None
    # The MLflow experiment the run goes into (made if missing); a sweep's jobs are its runs, tagged with the sweep.
    experiment: str = "vae-cli"
    # Upload best.pt and last.pt at the end of the run (MBs each; metrics.json and history.csv always go).
    log_checkpoints: bool = True


@dataclass
class WandbConfig:
    # Log the run to Weights & Biases too: config, scalars per step, pictures (logger=wandb turns it on).
    enabled: bool = False
    # offline: files in <run dir>/wandb, uploaded later with `wandb sync` (no account needed); online: needs a
    # `wandb login` and the network.
    mode: str = "offline"
    # The W&B project (and entity, the user or team; null = the login's default); a sweep's jobs form a group.
    project: str = "vae-cli"
    # The W&B user or team the run belongs to; null = the login's default.
    entity: str | None = None


@dataclass
class LoggerConfig:
    # Write TensorBoard event files into the run directory (tensorboard --logdir outputs).
    tensorboard: bool = True
    # Also write PNG image grids into <run dir>/images/.
    save_png: bool = True
    # Image grids, latent views and histograms are logged at most this many times per run (plus after the last
    # epoch): trainer.image_every_epochs / latent_every_epochs are thinned for runs of many short epochs, so the
    # run directory stays bounded however many epochs run.
    max_image_logs: int = 50
    # No image grid holds more images than this (trainer.num_images is checked against it).
    max_grid_images: int = 256
    # Experiment trackers beside TensorBoard (combine them: logger=[mlflow,wandb]). A tracker that cannot be reached
    # stops the run before training; one that fails later is dropped with a warning while the run goes on.
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    @classmethod
    def check(cls, lg: Any, cfg: Any, need: Need) -> None:
        need(lg.max_image_logs >= 1, f"logger.max_image_logs must be >= 1 (got {lg.max_image_logs}).")
        need(
            lg.wandb.mode in ("offline", "online"),
            f"logger.wandb.mode must be offline or online (got {lg.wandb.mode}).",
        )

"""One training session, from a composed config to a finished run directory. Independent of Hydra's runtime.

``prepare(cfg, run_dir)`` finds every reason to refuse the session before anything is written (the config checks;
on resume the checkpoint and the merged config); ``train`` is what ``vae-train``'s job calls (and tests call with
``hydra.compose()``): data -> model -> objective -> optimizer -> Trainer -> the test split -> metrics.json.
"""

from __future__ import annotations

import logging
import os
import platform
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from vae_cli.config.catalog import PRIORS
from vae_cli.config.schema import structured, to_plain_dict
from vae_cli.config.validate import validate
from vae_cli.datasets.batches import batch_count, labelled_batches, make_train_batches
from vae_cli.datasets.factor_sets import check_ground_truth
from vae_cli.datasets.loader import load_dataset
from vae_cli.datasets.preprocess import BatchPreprocess, to_unit_float
from vae_cli.datasets.splits import ImageSplits, splits_to
from vae_cli.evaluation.terms import evaluate
from vae_cli.evaluation.trackers.opened import open_trackers
from vae_cli.evaluation.tracking import Tracker
from vae_cli.models.build import build_model
from vae_cli.models.protocol import Model
from vae_cli.objectives import build_objective
from vae_cli.objectives.base import Objective, ObjectiveContext
from vae_cli.process import disk, progress
from vae_cli.process.atomic import write_json
from vae_cli.process.device import pick_device
from vae_cli.process.distributed import Distributed, any_rank, from_environment
from vae_cli.process.distributed import start as start_distributed
from vae_cli.process.distributed import stop as stop_distributed
from vae_cli.process.errors import ConfigError, TrainingError
from vae_cli.process.signals import EVALUATING, LOADING, STOP, TRAINING, WRITING, StopRequested, StopSignal
from vae_cli.process.version import __version__
from vae_cli.training.checkpoint import (
    evaluation_weights,
    identity,
    load_checkpoint,
    load_with_fallback,
    remove_stale_temp_files,
)
from vae_cli.training.code_prior import FrozenVQVAE, attach_vqvae, load_frozen
from vae_cli.training.disentanglement_monitor import DisentanglementMonitor
from vae_cli.training.hparams import run_hparams
from vae_cli.training.optim import build_optimizer, build_scheduler
from vae_cli.training.resume import check_resume_epochs, merge_resume_config
from vae_cli.training.step import check_compile_toolchain, resolve_precision
from vae_cli.training.trainer import Trainer, TrainingInterrupted, describe_terms

log = logging.getLogger(__name__)

# Under torchrun, rank r draws its noise from seed + r * this (rank 0: the single-process seed).
RANK_SEED_STRIDE = 1_000_003


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


@dataclass
class Prepared:
    """A run's config as it will train (a resume's merged with its checkpoint's), checked, and the checkpoint to
    continue from. Making it writes nothing, so everything that would refuse a run is found before any file is."""

    cfg: DictConfig
    resume_ckpt: dict[str, Any] | None = None
    resume_path: Path | None = None
    warning: str | None = None  # the resume fell back to the run's other checkpoint
    overrides: list[str] = field(default_factory=list)  # this command line's (TensorBoard's HPARAMS view)
    frozen_vqvae: FrozenVQVAE | None = None  # prior=pixelcnn: the VQ-VAE whose codes it learns


def prepare(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> Prepared:
    """The session's config as it will train, checked, and what it continues from; writes nothing."""
    if not cfg.trainer.resume:
        frozen = None
        if is_code_prior_run(cfg):
            # A VQ-VAE's second stage: its model, likelihood and data are the VQ-VAE run's (training/code_prior.py).
            cfg, frozen = attach_vqvae(cfg, list(overrides or []))
        if cfg.trainer.quick_check:
            shrink_for_quick_check(cfg)
        validate(cfg)
        return Prepared(cfg, overrides=list(overrides or []), frozen_vqvae=frozen)
    path, ckpt, warning = load_with_fallback(cfg.trainer.resume, preferred="last")
    try:
        saved = structured(ckpt["config"])  # data: nothing in it is resolved (config/schema.py)
    except ConfigError as exc:
        raise ConfigError(f"trainer.resume: {path}: {exc}") from None
    merged = merge_resume_config(cfg, saved, overrides or [], ckpt.get("batch_in_epoch", 0))
    check_resume_epochs(merged, ckpt, run_dir)
    validate(merged)
    return Prepared(merged, ckpt, path, warning, list(overrides or []))


# trainer.quick_check: training steps, held-out images (at most), IW samples and images, latent-view images.
QUICK_CHECK_STEPS = 5
QUICK_CHECK_EVAL_IMAGES = 256
QUICK_CHECK_IW = (4, 64)
QUICK_CHECK_LATENT_IMAGES = 64


def shrink_for_quick_check(cfg: DictConfig) -> None:
    """``trainer.quick_check=true``: every phase of a run, each on a few images (the config keeps the sizes)."""
    t, d = cfg.trainer, cfg.dataset
    train_images = QUICK_CHECK_STEPS * t.batch_size
    d.subset = min(d.subset, train_images) if d.subset is not None else train_images
    d.eval_subset = min(d.eval_subset or QUICK_CHECK_EVAL_IMAGES, QUICK_CHECK_EVAL_IMAGES)
    t.epochs = 1
    t.nll_iw_every_epochs = min(t.nll_iw_every_epochs, 1)
    t.nll_iw_k = min(t.nll_iw_k, QUICK_CHECK_IW[0])
    t.nll_iw_images = min(t.nll_iw_images or QUICK_CHECK_IW[1], QUICK_CHECK_IW[1])
    t.latent_images = min(t.latent_images, QUICK_CHECK_LATENT_IMAGES)
    t.num_images = min(t.num_images, QUICK_CHECK_LATENT_IMAGES)
    if cfg.disentanglement.every_epochs > 0:
        cfg.disentanglement.every_epochs = 0  # its sample sizes are the metrics' own: vae-eval --disentanglement
    log.info(
        "quick check: 1 epoch of at most %d steps (%d training images), validation and test on at most %d images, "
        "val/nll_iw with K=%d on %d; then checkpoints and metrics.json as in any run. Go on with trainer.resume=RUN "
        "trainer.epochs=N.",
        QUICK_CHECK_STEPS,
        d.subset,
        d.eval_subset,
        t.nll_iw_k,
        t.nll_iw_images,
    )


def is_code_prior_run(cfg: DictConfig) -> bool:
    """A second stage: a prior learned over the codes of a trained VQ-VAE (``prior=pixelcnn prior.vqvae=RUN``)."""
    return cfg.prior.name in PRIORS and PRIORS[cfg.prior.name].code_prior


def train(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str] | None = None,
    dist: Distributed | None = None,
    prepared: Prepared | None = None,
) -> dict[str, Any]:
    """Train one VAE as ``cfg`` says, writing everything into ``run_dir``; returns the final metrics.

    Under torchrun (``dist``, default: from the environment) every rank calls this; only rank 0 evaluates on the
    test split and returns metrics (the others return ``{}``), and ``run_dir`` of the others is scratch."""
    dist = dist or from_environment()
    try:
        with STOP:  # the handlers for this run (already installed by vae-train; a library call gets them here)
            prepared = prepared or prepare(cfg, run_dir, overrides)
            return _train(prepared, run_dir, dist)
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


def _train(prepared: Prepared, run_dir: Path, dist: Distributed) -> dict[str, Any]:
    started = time.perf_counter()
    cfg, resume_ckpt = prepared.cfg, prepared.resume_ckpt
    if dist.is_main:
        log.info("run directory %s", run_dir)
        if cfg.logger.tensorboard:
            log.info(
                "watch it: tensorboard --logdir %s, then http://localhost:6006/#custom_scalars (train and val curves "
                'together; README "Watching a run")',
                run_dir,
            )
    if prepared.warning:
        log.warning("%s", prepared.warning)
    if resume_ckpt is not None:
        log.info(
            "resuming from %s (epoch %d, step %d)", prepared.resume_path, resume_ckpt["epoch"], resume_ckpt["step"]
        )
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
    if cfg.trainer.compile:
        check_compile_toolchain(device)
    if dist.enabled:
        log.info("process %d of %d (torchrun), device %s", dist.rank, dist.world_size, device)
    torch.manual_seed(cfg.trainer.seed)
    if cfg.disentanglement.every_epochs > 0 and dist.is_main:
        # What the first scoring will read (a factors CSV and the images it lists), checked first: a broken table
        # is refused before the data is even loaded, not after the first epoch.
        check_ground_truth(cfg.dataset)
    with STOP.phase(LOADING):
        data = load_dataset(cfg.dataset, seed=cfg.trainer.seed)
    if cfg.trainer.batch_size > data.train.shape[0]:
        raise ConfigError(
            f"trainer.batch_size={cfg.trainer.batch_size} is larger than the training set "
            f"({data.train.shape[0]} images of '{data.name}'); use a smaller trainer.batch_size."
        )
    data = splits_to(data, device)
    log.info(
        "data %s: %s train / %s val / %s test images of %s on %s%s",
        data.name,
        f"{data.train.shape[0]:,}",
        f"{data.val.shape[0]:,}",
        f"{data.test.shape[0]:,}",
        "×".join(map(str, data.image_shape)),
        device,
        " (training split streamed from disk)" if data.streamed else "",
    )

    model, objective = build_model_and_objective(cfg, data, device)
    check_sweep_metric(cfg, objective, data)
    log.info("%s", describe_model(cfg, model, objective))
    precision, why = resolve_precision(cfg.trainer.precision, device)
    log.info("training precision %s (%s)", precision.value, why)
    model_info: dict[str, Any] = {}
    if is_code_prior_run(cfg):
        if prepared.frozen_vqvae is not None:
            load_frozen(model, prepared.frozen_vqvae)
            model_info["vqvae"] = prepared.frozen_vqvae.info
            if prepared.frozen_vqvae.info.get("warning"):
                log.warning("%s", prepared.frozen_vqvae.info["warning"])
        else:  # a resume: the pair is in the checkpoint (and the model was built frozen)
            model_info["vqvae"] = (resume_ckpt or {}).get("model_info", {}).get("vqvae")
        log.info("a PixelCNN prior over the codes of the VQ-VAE %s (frozen)", (model_info["vqvae"] or {}).get("path"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    param_groups = [{"params": trainable, "name": "model"}, *objective.param_groups()]
    optimizer = build_optimizer(
        cfg.optim, param_groups, fused=device.type in ("cpu", "cuda"), compiled=bool(cfg.trainer.compile)
    )
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
    # MLflow / W&B beside TensorBoard (logger=mlflow, logger=wandb): one that cannot be reached refuses the run here,
    # before its first step.
    extra = open_trackers(cfg.logger, run_dir, config_dict) if dist.is_main else []
    tracker = Tracker(
        run_dir,
        enabled=cfg.logger.tensorboard and dist.is_main,
        save_png=cfg.logger.save_png and dist.is_main,
        purge_step=purge_step,
        extra=extra,
    )
    tracker.loss_layout(list(objective.terms))
    try:
        trainer = Trainer(
            model,
            objective,
            optimizer,
            scheduler,
            data,
            train_batches,
            cfg.trainer,
            run_dir,
            tracker,
            config_dict,
            stop_requested=(
                AgreedStop(STOP, dist, device, GPU_STOP_AGREEMENT_STEPS if device.type == "cuda" else 1)
                if dist.enabled
                else (lambda: STOP.received)
            ),
            dist=dist,
            max_image_logs=cfg.logger.max_image_logs,
            model_info=model_info,
            disentanglement=DisentanglementMonitor(model, cfg.disentanglement, cfg.dataset, tracker),
        )
        if resume_ckpt is not None:
            trainer.load_state_dict(resume_ckpt)
            remove_stale_temp_files(run_dir / "checkpoints")
            if cfg.optim.lr != resume_ckpt["config"]["optim"]["lr"]:
                trainer.set_base_lr(cfg.optim.lr)  # the restored optimizer state would otherwise keep the old lr
        STOP.check()  # a signal during start-up stops here, before the first step
        with STOP.phase(TRAINING):
            state = trainer.fit()
        if not dist.is_main:
            return {}  # rank 0 evaluates on the test split and writes metrics.json
        log.info("run directory: %s", disk.describe(run_dir))
        with STOP.phase(EVALUATING):
            metrics, test = final_metrics(cfg, model, objective, data, state, run_dir, device)
        metrics["wall_time_s"] = round(time.perf_counter() - started, 3)
        with STOP.phase(WRITING):
            tracker.scalars({f"test/{k}": v for k, v in test.items()}, state.step)
            # The metrics are the run's own val/ and test/ scalars (no separate "final" copies to clutter the view).
            tracker.hparams(
                run_hparams(config_dict, prepared.overrides),
                {k: float(v) for k, v in metrics.items() if k.startswith(("val/", "test/")) and v is not None},
                state.step,
            )
            tracker.close()
            write_json(
                run_dir / "metrics.json",
                {
                    **metrics,
                    "dataset": data.name,
                    "device": str(device),
                    "precision": precision.value,  # the resolved trainer.precision (auto -> bf16 or fp32)
                    "vae_cli_version": __version__,
                    "torch_version": torch.__version__,
                    "python_version": platform.python_version(),
                },
            )
            kept = [run_dir / name for name in ("metrics.json", "history.csv", "history.jsonl")]
            tracker.finish_trackers("finished", [*kept, *(run_dir / "checkpoints").glob("*.pt")])
    except BaseException as exc:
        stopped = isinstance(exc, (StopRequested, TrainingInterrupted, KeyboardInterrupt))
        tracker.finish_trackers("interrupted" if stopped else "failed", [run_dir / "history.csv"])
        raise
    finally:
        tracker.close()
    log.info("done: test %s; run directory %s", describe_terms(test) if test else "(none)", run_dir)
    if STOP.received is not None:  # arrived while the results were written: they are complete; say so and stop
        raise TrainingInterrupted(
            f"{signal.Signals(STOP.received).name} arrived while the results were being written; they were "
            f"written completely ({run_dir / 'metrics.json'}) and the run is finished.",
            exit_code=128 + STOP.received,
        )
    return metrics


def final_metrics(
    cfg: DictConfig,
    model: Model,
    objective: Objective,
    data: ImageSplits,
    state: Any,
    run_dir: Path,
    device: torch.device,
) -> tuple[dict[str, Any], dict[str, float]]:
    """The numbers of metrics.json: the last epoch's, and the test split's, evaluated once, at the end, with the
    model selected on validation loss (best.pt). A run trained on the test split (dataset.train_split=test) has
    no held-out test numbers."""
    final = state.history[-1] if state.history else {}
    test: dict[str, float] = {}
    # The checkpoints the run ends with, by content: results computed from an older one are told apart (stale).
    checkpoints = {}
    for name in ("best", "last"):
        path = run_dir / "checkpoints" / f"{name}.pt"
        if path.is_file():
            checkpoints[name] = load_checkpoint(path, map_location=device)
    if data.test.shape[0] > 0:
        if "best" in checkpoints:
            model.load_state_dict(evaluation_weights(checkpoints["best"]))
            objective.load_state_dict(checkpoints["best"].get("objective", {}))
        size, least, n = cfg.trainer.eval_batch_size, objective.least_batch, data.test.shape[0]
        chosen = f"best.pt, epoch {state.best_epoch}" if "best" in checkpoints else "the final weights"
        log.info("test split: %s images (%s)", f"{n:,}", chosen)
        test_batches = progress.tracked(
            labelled_batches(data.test, data.test_labels, size, least),
            "test split",
            total=batch_count(n, size, least),
            mode=cfg.trainer.progress,
            every_s=cfg.trainer.progress_every_s,
        )
        test = evaluate(model, objective, test_batches)
    metrics: dict[str, Any] = {f"val/{k}": final.get(f"val/{k}") for k in objective.terms}
    for key in ("val/nll_iw", "val/bits_per_dim", "nll_iw_k", "nll_iw_images"):  # the latent monitor's, last epoch
        if final.get(key) is not None:
            metrics[key] = final[key]
    # Scored after the last epoch (disentanglement.every_epochs > 0): the final model's, not best.pt's.
    metrics.update({k: v for k, v in final.items() if k.startswith("disentanglement/")})
    metrics.update({f"train/{k}": final.get(f"train/{k}") for k in objective.terms})
    metrics.update({f"test/{k}": v for k, v in test.items()})
    metrics.update(
        {
            "epochs": state.epoch,
            "steps": state.step,
            "best_epoch": state.best_epoch,
            # trainer.early_stop_patience: the epoch training stopped at (absent: it ran all its epochs).
            **({"stopped_early_at": state.stopped_early_at} if state.stopped_early_at else {}),
            "images_per_sec": final.get("images_per_sec"),
            # What the val/ and test/ numbers were computed on (dataset.eval_subset shrinks both).
            "val_images": int(data.val.shape[0]),
            "test_images": int(data.test.shape[0]),
            "checkpoints": {name: identity(ckpt) for name, ckpt in checkpoints.items()},
        }
    )
    return metrics, test


def describe_model(cfg: DictConfig, model: Model, objective: Objective) -> str:
    """``model mlp (latent 20): 652,824 parameters; loss elbo, prior normal, likelihood bernoulli``."""
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    extra = sum(p.numel() for p in objective.parameters())
    text = f"model {cfg.model.arch} (latent {model.latent_dim}): {total:,} parameters"
    if trained != total:
        text += f" ({trained:,} trained, the rest frozen)"
    if extra:
        text += f", and {extra:,} in the objective"
    return f"{text}; loss {cfg.loss.name}, prior {cfg.prior.name}, likelihood {cfg.likelihood.name}"


def written_metrics(cfg: DictConfig, objective: Objective, data: ImageSplits) -> list[str]:
    """The metrics of metrics.json a run of ``cfg`` writes (``final_metrics``), known before its first step."""
    splits = ["val", "train", *(["test"] if data.test.shape[0] > 0 else [])]
    names = [f"{split}/{term}" for split in splits for term in objective.terms]
    if cfg.trainer.nll_iw_every_epochs > 0 and not objective.no_bound:  # no bound, no IW estimate
        names += ["val/nll_iw", "val/bits_per_dim"]
    return names


def check_sweep_metric(cfg: DictConfig, objective: Objective, data: ImageSplits) -> None:
    """``trainer.sweep_metric`` (what an Optuna sweep minimizes, the summary's ranking) is a metric this run
    writes: otherwise every trial would end as "failed" with nothing wrong in it."""
    metric = str(cfg.trainer.sweep_metric)
    names = written_metrics(cfg, objective, data)
    if metric not in names:
        raise ConfigError(
            f"trainer.sweep_metric={metric} is not a metric this run writes: with loss={cfg.loss.name} it writes "
            f"{', '.join(names)}. Choose one of them (e.g. trainer.sweep_metric=val/elbo, the bound every "
            f"objective reports)."
            if "val/elbo" in names
            else f"trainer.sweep_metric={metric} is not a metric this run writes: with loss={cfg.loss.name} it "
            f"writes {', '.join(names)}. Choose one of them."
            + (f" (No likelihood bound: {objective.no_bound}.)" if objective.no_bound else "")
        )


def build_model_and_objective(cfg: DictConfig, data: ImageSplits, device: torch.device) -> tuple[Model, Objective]:
    """The model (on ``device``) and the objective of ``cfg`` for ``data``: a CVAE gets the dataset's classes,
    a VampPrior with ``prior.init=data`` its first pseudo-inputs from the training images."""
    num_classes = 0
    if cfg.model.conditional:
        num_classes = data.num_classes
        if num_classes < 2:
            raise ConfigError(
                f"model.conditional=true needs class labels, but '{data.name}' has "
                f"{'none' if num_classes == 0 else 'a single class'} (an image folder gets its classes from one "
                f"sub-folder per class). Train an unconditional model (model.conditional=false), or give the "
                f"dataset labels."
            )
    init_images = None
    if str(cfg.prior.get("init", "")) in ("data", "PseudoInputInit.data"):  # a VampPrior's pseudo-inputs
        k = cfg.prior.components
        if data.train.shape[0] < k:
            raise ConfigError(
                f"prior.init=data takes prior.components={k} training images as pseudo-inputs, but '{data.name}' "
                f"has {data.train.shape[0]}; lower prior.components or use prior.init=random."
            )
        pick = torch.randperm(data.train.shape[0], generator=torch.Generator().manual_seed(cfg.trainer.seed))[:k]
        init_images = to_unit_float(
            data.train[pick.to(data.train.device)] if not data.streamed else data.train.read(pick)
        )
    model = build_model(cfg, data.image_shape, num_classes=num_classes, init_images=init_images).to(device)
    train_size = data.train.shape[0]
    objective = build_objective(cfg.loss, ObjectiveContext.of(model, train_size, data.image_shape), model)
    return model, objective.to(device)

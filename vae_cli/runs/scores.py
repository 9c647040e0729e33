"""Scoring a run directory and recording the result in it: ``vae-eval``'s work, also done by ``vae-compare --eval``.

``evaluate_run``: the importance-weighted bound and its companions on one split (``vae_cli.evaluation.bounds``);
``disentanglement_run``: the disentanglement metrics against the dataset's ground-truth factors
(``vae_cli.evaluation.disentanglement``). Each merges its entry into ``RUN/eval.json`` (one entry per split, and
``disentanglement``) and logs to the run's TensorBoard at the checkpoint's step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vae_cli.config.disentanglement import DisentanglementConfig
from vae_cli.datasets.batches import batch_count, labelled_batches
from vae_cli.datasets.factor_sets import ground_truth_for
from vae_cli.datasets.preprocess import to_unit_float
from vae_cli.evaluation.bounds import EvalResult, bits_per_dim_note, default_batch_size, evaluate_images
from vae_cli.evaluation.disentanglement.representation import encoder_mean
from vae_cli.evaluation.disentanglement.suite import DisentanglementResult, score
from vae_cli.evaluation.plots import bar_chart, to_tensor
from vae_cli.evaluation.reconstruction import ReconstructionResult, reconstruction_error
from vae_cli.evaluation.sample_quality.features import inception_features
from vae_cli.evaluation.sample_quality.suite import SampleQualityResult, generate, score_samples
from vae_cli.evaluation.sample_quality.trained_features import trained_features
from vae_cli.evaluation.tracking import Tracker
from vae_cli.process import progress
from vae_cli.process.device import pick_device
from vae_cli.process.errors import ConfigError, VaeCliError
from vae_cli.runs.loaded import LoadedRun, load_run, load_split, run_dir_of
from vae_cli.runs.results import owned, record_entry, sample_metric_prefix
from vae_cli.runs.samplers import load_sampler, sampler_path


def eval_forecast(k: int, n: int) -> Callable[[float], str | None]:
    """vae-eval's line once the first batches are timed: how long the whole estimate will take here, and, when that
    is long, how to shorten it."""

    def said(seconds: float) -> str | None:
        text = f"vae-eval: K={k} over {n:,} images will take about {progress.duration(seconds)} on this machine"
        if seconds < 60:
            return text + "."
        fewer = max(100, n // 10)
        shorter = [f"--k {max(1, k // 10)} (about {progress.duration(seconds / 10)})"] if k >= 10 else []
        if n > fewer:
            shorter.append(f"--num-images {fewer} (about {progress.duration(seconds * fewer / n)}; a separate entry)")
        return text + (f"; to shorten it: {' or '.join(shorter)}." if shorter else ".")

    return said


def eval_device(name: str):
    """The torch device of ``--device NAME``, or a message naming the fix when torch sees no such device."""
    try:
        return pick_device(name)
    except ConfigError as exc:
        raise ConfigError(
            f"--device {name} is not available here (torch sees no such device); use --device auto or cpu."
        ) from exc


def evaluate_run(
    path: str | Path,
    split: str = "test",
    k: int = 1000,
    data_root: str | None = None,
    dataset: str | None = None,
    which: str = "best",
    device: str = "auto",
    seed: int = 0,
    batch_size: int | None = None,
    write: bool = True,
    num_images: int | None = None,
) -> tuple[EvalResult | ReconstructionResult, LoadedRun]:
    """Evaluate one run on one split (a model without a likelihood bound: its reconstruction error); unless ``write`` is False, merge the result into ``RUN/eval.json`` and log it
    to the run's TensorBoard, holding the run's lock from before the checkpoint is read until both are written."""
    dev = eval_device(device)
    with owned_if(write, path, "eval.json"):
        run = load_run(path, which=which, device=dev, channels_last=True)
        data = load_split(run.cfg, split, data_root=data_root, dataset=dataset)
        images, labels = data.images.to(dev), data.labels.to(dev)
        # Another dataset gets its own entry (e.g. "test_mnist"), so the run's own test numbers are kept; so does a
        # subset (e.g. "test_first1000").
        entry = split if dataset in (None, run.cfg.dataset.name) else f"{split}_{dataset}"
        if num_images is not None and num_images < images.shape[0]:
            images, labels = images[:num_images], labels[:num_images]
            entry = f"{entry}_first{num_images}"
        if run.objective.no_bound:  # an autoencoder, a score reconstruction: no bound to estimate
            result = reconstruction_error(
                run.model,
                labelled_batches(images, labels, batch_size or 256),
                split=entry,
                no_bound=run.objective.no_bound,
                progress=lambda batches: progress.tracked(batches, f"vae-eval {entry} reconstruction"),
            )
            if write:
                record = {**result.to_dict(), **run.provenance, "dataset": dataset or run.cfg.dataset.name}
                with written_whole(run.run_dir):
                    scalars = {"recon": result.recon, "mse": result.mse, "active_units": float(result.active_units)}
                    log_scalars(run, {f"eval/{entry}/{name}": value for name, value in scalars.items()})
                    record_entry(run.run_dir, entry, record)
            return result, run
        bs = batch_size or default_batch_size(k)
        result = evaluate_images(
            run.model,
            labelled_batches(images, labels, bs),
            k=k,
            seed=seed,
            split=entry,
            progress=lambda batches: progress.tracked(
                batches,
                f"vae-eval {entry} K={k}",
                total=batch_count(images.shape[0], bs),
                forecast=eval_forecast(k, images.shape[0]),
            ),
        )
        if write:
            record = {
                **result.to_dict(),
                **run.provenance,
                "dataset": dataset or run.cfg.dataset.name,
                "seed": seed,
                "batch_size": bs,
                "device": str(dev),
                "bits_per_dim_note": bits_per_dim_note(run.cfg, run.model.likelihood.measures),
            }
            with written_whole(run.run_dir):
                # TensorBoard first: if the disk is full it fails there, and eval.json is left as it was.
                log_to_tensorboard(run, result)
                record_entry(run.run_dir, entry, record)
    return result, run


@contextlib.contextmanager
def owned_if(write: bool, path: str | Path, what: str) -> Iterator[None]:
    """The run directory of ``path`` (a run directory or a checkpoint in one) held for the block when writing."""
    if not write:
        yield
        return
    p = Path(path).expanduser()
    with owned(p if p.is_dir() else run_dir_of(p), what):
        yield


@contextlib.contextmanager
def written_whole(run_dir: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise VaeCliError(
            f"Could not write the results into {run_dir}: {exc.strerror or exc}. Nothing half-written was left "
            f"there (eval.json is replaced whole or not at all). Free disk space or fix the folder's permissions, "
            f"or print the numbers only with --no-write."
        ) from exc


@contextlib.contextmanager
def own_event_file(run: LoadedRun, save_png: bool = False) -> Iterator[Tracker]:
    """A tracker writing into the run's TensorBoard in an event file of its own, closed at the end; if the block
    fails, that incomplete event file is removed."""
    tracker = Tracker(run.run_dir, enabled=run.cfg.logger.tensorboard, save_png=save_png)
    try:
        yield tracker
        tracker.close()
    except BaseException:
        event_file = tracker.event_file
        with contextlib.suppress(OSError):
            tracker.close()
        if event_file is not None:
            event_file.unlink(missing_ok=True)
        raise


def log_scalars(run: LoadedRun, scalars: dict[str, float]) -> None:
    """``scalars`` into the run's TensorBoard at the checkpoint's step."""
    with own_event_file(run) as tracker:
        tracker.scalars(scalars, run.step)


def log_to_tensorboard(run: LoadedRun, result: EvalResult) -> None:
    with own_event_file(run, save_png=run.cfg.logger.save_png) as tracker:
        prefix = f"eval/{result.split}"
        tracker.scalars(
            {
                f"{prefix}/elbo": result.elbo,
                f"{prefix}/recon": result.recon,
                f"{prefix}/kl": result.kl,
                f"{prefix}/nll_iw": result.nll_iw,
                f"{prefix}/bits_per_dim": result.bits_per_dim,
                f"{prefix}/active_units": float(result.active_units),
                **{f"{prefix}/kl_{name}": value for name, value in (result.kl_per_layer or {}).items()},
                **(
                    {
                        f"{prefix}/perplexity": float(result.codebook["perplexity"]),
                        f"{prefix}/codes_used": float(result.codebook["fraction_used"]),
                    }
                    if result.codebook is not None
                    else {}
                ),
            },
            run.step,
        )
        if result.codebook is not None:  # a VQ-VAE: how often each code is used, most used first
            counts = sorted(result.codebook["counts"], reverse=True)
            chart = bar_chart(counts, f"code usage ({result.split})", "codes, most used first", "assignments")
        elif result.kl_per_dim is not None:
            chart = bar_chart(
                result.kl_per_dim, f"KL per latent dimension ({result.split})", "latent dimension", "KL (nats)"
            )
        else:  # a prior without a per-dimension KL: the spread of the posterior means shows which units are used
            chart = bar_chart(
                result.mu_variance, f"Var[mu] per latent dimension ({result.split})", "latent dimension", "Var[mu]"
            )
        tracker.images(f"{prefix}/kl_per_dim", to_tensor(chart)[None], run.step, run.epoch, nrow=1)


def disentanglement_config(run_cfg: Any, overrides: list[str]) -> DisentanglementConfig:
    """The run's ``disentanglement`` node with ``KEY=VALUE`` overrides, typed and checked."""
    node = OmegaConf.merge(OmegaConf.structured(DisentanglementConfig), run_cfg.get("disentanglement") or {})
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"--set takes KEY=VALUE (e.g. --set dci.num_train=2000); got {bad[0]!r}.")
    interpolated = [o for o in overrides if "${" in o.partition("=")[2]]
    if interpolated:
        raise ConfigError(
            f"--set {interpolated[0]}: vae-eval takes plain values, and an interpolation (${{...}}) is not resolved "
            f"(it could read the environment or run a resolver). Give the value itself, e.g. --set seed=1."
        )
    try:
        node = OmegaConf.merge(node, OmegaConf.from_dotlist([o.removeprefix("disentanglement.") for o in overrides]))
    except OmegaConfBaseException as exc:
        raise ConfigError(
            f"--set {' '.join(overrides)}: {str(exc).splitlines()[0]}. The keys are those of the disentanglement "
            f"config (metrics, seed, mig.num_bins, dci.num_train, sap.continuous, factor_vae.batch_size, ...)."
        ) from None
    problems: list[str] = []
    DisentanglementConfig.check(node, None, lambda ok, message: ok or problems.append(message))
    if problems:
        raise ConfigError(" ".join(problems))
    return OmegaConf.to_object(node)


def disentanglement_run(
    path: str | Path,
    data_root: str | None = None,
    overrides: list[str] | None = None,
    which: str = "best",
    device: str = "auto",
    write: bool = True,
) -> tuple[DisentanglementResult, LoadedRun]:
    """Score one run's representation on its dataset's factors; unless ``write`` is False, merge the scores into
    ``RUN/eval.json`` (entry ``disentanglement``: scores of other metrics are kept) and log ``disentanglement/*`` to
    the run's TensorBoard, holding the run's lock throughout."""
    dev = eval_device(device)
    with owned_if(write, path, "eval.json"):
        run = load_run(path, which=which, device=dev, channels_last=True)
        cfg = disentanglement_config(run.cfg, overrides or [])
        data_cfg = OmegaConf.merge(run.cfg.dataset, {})
        if data_root is not None:
            data_cfg.root = str(Path(data_root).expanduser())
        represent = encoder_mean(run.model)
        result = score(ground_truth_for(data_cfg), represent, cfg)
        if write:
            config = OmegaConf.to_container(OmegaConf.structured(cfg))
            # Each metric's own provenance: a partial scoring (--set metrics=[mig]) merges into the others.
            made = {**run.provenance, "config": config, "seconds": result.seconds}
            provenance = {metric: made for metric in cfg.metrics}
            record = {
                "scores": result.scores,
                "details": result.details,
                "provenance": provenance,
                "dataset": run.cfg.dataset.name,
                "device": str(dev),
                "representation": "mean of q(z|x)",
            }
            with written_whole(run.run_dir):
                log_scalars(run, result.scores)
                record_entry(run.run_dir, "disentanglement", record, merge_scores=True)
    return result, run


def feature_network_for(run: LoadedRun, which: str, inception_weights: str | None, data_root: str | None):
    """The feature network ``which`` (trained: the dataset's own classifier, cached; inception: from local
    weights)."""
    if which == "inception":
        if not inception_weights:
            raise ConfigError(
                "--feature-network inception needs --inception-weights PATH: the FID Inception-v3 weights as a local "
                "file (vae-cli never downloads them at run time). Without them, --feature-network trained measures in "
                "a classifier vae-cli trains on the dataset itself (not comparable with published FIDs)."
            )
        return inception_features(inception_weights)
    # The dataset's whole training split, whatever subset and validation split the run drew (the validation split
    # depends on the run's seed): one network per dataset and preprocessing, the same for every run and seed.
    cfg = OmegaConf.merge(run.cfg, {})
    if "subset" in cfg.dataset:
        cfg.dataset.subset = None
    if "val_size" in cfg.dataset:
        cfg.dataset.val_size = 0
    train = load_split(cfg, "train", data_root=data_root)
    test = load_split(cfg, "test", data_root=data_root)
    return trained_features(run.cfg.dataset.name, train.images, train.labels, test.images, test.labels)


def sample_quality_run(
    path: str | Path,
    samples: int,
    sampler: str = "prior",
    split: str = "test",
    seed: int = 0,
    feature_network: str = "trained",
    inception_weights: str | None = None,
    data_root: str | None = None,
    which: str = "best",
    device: str = "auto",
    num_images: int | None = None,
    write: bool = True,
) -> tuple[SampleQualityResult, LoadedRun]:
    """FID, KID and precision/recall of ``samples`` images drawn through ``sampler`` against the split; unless
    ``write`` is False, merged into eval.json (entry ``samples_<sampler>``) and logged to TensorBoard."""
    if samples < 2:
        raise ConfigError(f"--samples {samples}: sample quality needs at least 2 samples (10,000 is usual).")
    dev = eval_device(device)
    with owned_if(write, path, "eval.json"):
        run = load_run(path, which=which, device=dev, channels_last=True)
        if not run.model.can_sample or run.model.conditional:
            raise ConfigError(
                f"{run.run_dir} cannot be sampled without a label or a learned prior (a conditional model, or a VQ-VAE "
                f"under the uniform prior); sample quality is measured for unconditional models that sample."
            )
        fitted = (
            None
            if sampler == "prior" and not sampler_path(run.run_dir, "prior").exists()
            else load_sampler(run, sampler)
        )
        net = feature_network_for(run, feature_network, inception_weights, data_root).to("cpu")
        real_split = load_split(run.cfg, split, data_root=data_root)
        real = real_split.images if num_images is None else real_split.images[:num_images]
        if samples < 2 or real.shape[0] < 2:
            raise ConfigError(
                f"sample quality needs at least 2 samples and 2 real images (got {samples}, {real.shape[0]})."
            )
        fake = generate(run.model, fitted.sampler.sample if fitted else None, samples, seed)
        described = fitted.sampler.describe() if fitted else "the model's own prior"
        result = score_samples(net, to_unit_float(real), fake, seed, sampler, described, split)
        if write:
            record = {
                **result.to_dict(),
                **run.provenance,
                "dataset": run.cfg.dataset.name,
                "sampler_digest": fitted.record.get("integrity", {}).get("digest") if fitted else None,
                "images": "decoder mean of each sampled code",
            }
            prefix = sample_metric_prefix(sampler)
            with written_whole(run.run_dir):
                s = result.scores
                scalars = {"fid": s.fid, "kid": s.kid, "precision": s.precision, "recall": s.recall}
                log_scalars(run, {f"{prefix}/{name}": value for name, value in scalars.items()})
                record_entry(run.run_dir, result.entry, record)
    return result, run

"""Checks of a composed config that its types cannot express: ranges, finiteness and combinations.

``validate`` reports every problem at once, in one ``ConfigError``, before any data is read. Each message names
the key, the value it got and what to do instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig

from vae_cli.config.enums import (
    Arch,
    Binarize,
    DeviceName,
    EmnistSplit,
    IWEstimator,
    LikelihoodName,
    NanPolicy,
    OptimizerName,
    TCEstimator,
    TrainSplit,
)
from vae_cli.errors import ConfigError

# Official split sizes (images), for checks before any file is read. EMNIST depends on dataset.split.
OFFICIAL_TRAIN_SIZES = {"mnist": 60_000, "fashion_mnist": 60_000, "kmnist": 60_000, "cifar10": 50_000, "svhn": 73_257}
OFFICIAL_TEST_SIZES = {"mnist": 10_000, "fashion_mnist": 10_000, "kmnist": 10_000, "cifar10": 10_000, "svhn": 26_032}
EMNIST_TRAIN_SIZES = {
    "byclass": 697_932,
    "bymerge": 697_932,
    "balanced": 112_800,
    "letters": 124_800,
    "digits": 240_000,
    "mnist": 60_000,
}
EMNIST_TEST_SIZES = {
    "byclass": 116_323,
    "bymerge": 116_323,
    "balanced": 18_800,
    "letters": 20_800,
    "digits": 40_000,
    "mnist": 10_000,
}
# Datasets that have class labels whatever their files hold (image_folder: only with class sub-folders; celeba:
# only with dataset.label_attribute).
LABELLED = {
    "mnist",
    "fashion_mnist",
    "kmnist",
    "emnist",
    "cifar10",
    "svhn",
    "synthetic",
    "shapes2d",
    "xyobject",
    "dsprites",
}
# Grid points of the factor datasets (vae_cli/factors), known without rendering or reading them.
FACTOR_GRID_SIZES = {"shapes2d": 737_280, "dsprites": 737_280, "xyobject": 6_144}
# Objectives built on the aggregate posterior q(z) of one latent vector (total correlation, covariances, MMD).
FLAT_ONLY_OBJECTIVES = ("beta_tcvae", "factor_vae", "dip_vae", "info_vae")
# torch.manual_seed takes a 64-bit value; the trainer adds per-rank and per-purpose offsets to the seed.
MAX_SEED = 2**62
# A Gaussian likelihood with a smaller std makes the loss explode (1/std^2 per pixel) and means nothing on
# 8-bit data: 1e-3 is a quarter of one grey level.
MIN_GAUSSIAN_STD = 1e-3


def known_train_size(d: DictConfig) -> int | None:
    """Images left for training after the val split and subset, when that is known without reading files."""
    from_test = TrainSplit(d.get("train_split", TrainSplit.train)) == TrainSplit.test
    if d.name == "synthetic":
        total = d.num_test if from_test else d.num_train
    elif d.name in FACTOR_GRID_SIZES:
        grid = FACTOR_GRID_SIZES[d.name]
        total = d.num_test if from_test else (grid - d.num_test if d.num_train is None else d.num_train)
    elif d.name == "emnist":
        total = (EMNIST_TEST_SIZES if from_test else EMNIST_TRAIN_SIZES).get(EmnistSplit(d.split).value)
    else:
        total = (OFFICIAL_TEST_SIZES if from_test else OFFICIAL_TRAIN_SIZES).get(d.name)
    if total is None:
        return None
    n = max(0, total - d.val_size)
    return min(n, d.subset) if d.subset is not None else n


def _leaves(node: Any, kind: type, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of a config of type ``kind`` (bools are not ints here), with its dotted key."""
    if isinstance(node, DictConfig):
        for key, value in node.items():
            yield from _leaves(value, kind, f"{prefix}{key}.")
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            yield from _leaves(item, kind, f"{prefix[:-1]}[{i}].")
    elif isinstance(node, kind) and not isinstance(node, bool):
        yield prefix[:-1], node


def validate(cfg: DictConfig) -> None:
    """Check ranges and combinations the types cannot express; raise one ConfigError listing all problems."""
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    for key, value in _leaves(cfg, float):
        need(math.isfinite(value), f"{key} must be a finite number (got {value}).")
    _check_trainer(cfg, need)
    _check_model(cfg, need)
    _check_objective(cfg, need)
    _check_dataset(cfg, need, problems)
    _check_disentanglement(cfg, need)
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))


Need = Callable[[bool, str], None]


def _check_trainer(cfg: DictConfig, need: Need) -> None:
    t, o, lg = cfg.trainer, cfg.optim, cfg.logger
    need(t.epochs >= 1, f"trainer.epochs must be >= 1 (got {t.epochs}).")
    need(t.batch_size >= 1, f"trainer.batch_size must be >= 1 (got {t.batch_size}).")
    need(t.eval_batch_size >= 1, f"trainer.eval_batch_size must be >= 1 (got {t.eval_batch_size}).")
    need(0 <= t.seed < MAX_SEED, f"trainer.seed must be in [0, 2**62) (got {t.seed}).")
    need(t.log_every_steps >= 1, f"trainer.log_every_steps must be >= 1 (got {t.log_every_steps}).")
    need(t.image_every_epochs >= 1, f"trainer.image_every_epochs must be >= 1 (got {t.image_every_epochs}).")
    need(
        1 <= t.num_images <= lg.max_grid_images,
        f"trainer.num_images must be in [1, logger.max_grid_images={lg.max_grid_images}] (got {t.num_images}): a "
        f"grid of more images is a picture nobody can read and megabytes per epoch. Raise logger.max_grid_images "
        f"to allow it.",
    )
    need(lg.max_image_logs >= 1, f"logger.max_image_logs must be >= 1 (got {lg.max_image_logs}).")
    need(t.latent_every_epochs >= 1, f"trainer.latent_every_epochs must be >= 1 (got {t.latent_every_epochs}).")
    need(t.latent_images >= 1, f"trainer.latent_images must be >= 1 (got {t.latent_images}).")
    need(
        t.nll_iw_every_epochs >= 0,
        f"trainer.nll_iw_every_epochs must be >= 0, 0 = off (got {t.nll_iw_every_epochs}).",
    )
    need(t.nll_iw_k >= 1, f"trainer.nll_iw_k must be >= 1 (got {t.nll_iw_k}).")
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
    need(t.max_nan_skips >= 1, f"trainer.max_nan_skips must be >= 1 (got {t.max_nan_skips}).")
    need(t.max_rollbacks >= 1, f"trainer.max_rollbacks must be >= 1 (got {t.max_rollbacks}).")
    need(
        0 < t.rollback_lr_factor < 1,
        f"trainer.rollback_lr_factor must be in (0, 1) (got {t.rollback_lr_factor}).",
    )
    need(
        t.progress in ("auto", "bar", "none"),
        f"trainer.progress must be auto, bar or none (got {t.progress}).",
    )
    need(
        not (t.cuda_graphs and t.device not in (DeviceName.cuda, DeviceName.auto)),
        f"trainer.cuda_graphs=true needs a CUDA device (got trainer.device={DeviceName(t.device).value}).",
    )
    need(
        not (t.cuda_graphs and t.nan_policy != NanPolicy.stop),
        "trainer.cuda_graphs=true replays the optimizer update inside the graph, so it works with "
        f"trainer.nan_policy=stop only (got {NanPolicy(t.nan_policy).value}).",
    )
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


def _positive_list(values: Any) -> bool:
    return len(values) >= 1 and all(v >= 1 for v in values)


def _check_architecture(cfg: DictConfig, need: Need) -> None:
    m, d = cfg.model, cfg.dataset
    arch = Arch(m.arch)
    if "latent_dim" in m:
        need(m.latent_dim >= 1, f"model.latent_dim must be >= 1 (got {m.latent_dim}).")
    if arch == Arch.mlp:
        need(all(h >= 1 for h in m.hidden_dims), f"model.hidden_dims must be positive widths (got {m.hidden_dims}).")
    elif arch == Arch.conv:
        need(
            _positive_list(m.conv_channels),
            f"model.conv_channels must be a non-empty list of positive channel counts (got {m.conv_channels}).",
        )
        if _positive_list(m.conv_channels):
            factor = 2 ** len(m.conv_channels)
            need(
                d.image_size % factor == 0,
                f"model=conv with {len(m.conv_channels)} stride-2 layers needs dataset.image_size divisible by "
                f"{factor} (got {d.image_size}); use fewer model.conv_channels or model=mlp.",
            )
    else:  # resnet, hvae: the residual backbone
        need(
            _positive_list(m.widths) and len(m.widths) <= 6,
            f"model.widths must be 1 to 6 positive channel counts, one per resolution stage (got {list(m.widths)}).",
        )
        need(0 <= m.blocks <= 32, f"model.blocks must be in [0, 32] residual blocks per stage (got {m.blocks}).")
        if _positive_list(m.widths):
            factor = 2 ** (len(m.widths) - 1)
            need(
                d.image_size % factor == 0 and d.image_size // factor >= 2,
                f"model={arch.value} with {len(m.widths)} stages halves the image {len(m.widths) - 1} times, so it "
                f"needs dataset.image_size divisible by {factor} and at least {2 * factor} (got {d.image_size}); "
                f"use fewer model.widths (28 px: 2 or 3 stages; 32 px: up to 4; 64 px: up to 5).",
            )
    if arch == Arch.hvae:
        need(1 <= m.layers <= 64, f"model.layers must be in [1, 64] stochastic layers (got {m.layers}).")
        need(
            1 <= m.latent_channels <= 1024,
            f"model.latent_channels must be in [1, 1024] (got {m.latent_channels}).",
        )
        need(0 <= m.cell_blocks <= 32, f"model.cell_blocks must be in [0, 32] (got {m.cell_blocks}).")
        need(
            not m.conditional,
            "model=hvae has no conditional (CVAE) form yet; drop model.conditional=true, or use a flat model "
            "(model=mlp, conv or resnet) for a CVAE.",
        )
        need(
            cfg.prior.name == "normal",
            f"model=hvae brings its own hierarchical prior p(z_L) p(z_L-1 | z_L) ...; prior={cfg.prior.name} is for "
            f"the flat models. Drop prior={cfg.prior.name}.",
        )


def _check_likelihood(cfg: DictConfig, need: Need) -> None:
    lik, d = cfg.likelihood, cfg.dataset
    name = LikelihoodName(lik.name)
    binarized = Binarize(d.binarize) != Binarize.none
    if name == LikelihoodName.gaussian:
        try:
            std = float(lik.std)
        except ValueError:
            std = None
            need(
                str(lik.std) in ("learned", "learned_global"),
                f"likelihood.std must be a number (a fixed σ), learned (per pixel, from the decoder) or "
                f"learned_global (one σ) (got {lik.std!r}).",
            )
        if std is not None:
            need(
                math.isfinite(std) and MIN_GAUSSIAN_STD <= std <= 10,
                f"likelihood.std must be in [{MIN_GAUSSIAN_STD:g}, 10] (got {lik.std}): below that the loss grows "
                f"as 1/std^2 per pixel and overflows (a quarter of one grey level is 1e-3). The usual range is "
                f"0.05-0.2, or likelihood.std=learned.",
            )
        need(
            math.isfinite(lik.min_std) and MIN_GAUSSIAN_STD <= lik.min_std <= 1,
            f"likelihood.min_std must be in [{MIN_GAUSSIAN_STD:g}, 1] (got {lik.min_std}).",
        )
    elif name == LikelihoodName.logistic_mixture:
        need(1 <= lik.components <= 256, f"likelihood.components must be in [1, 256] (got {lik.components}).")
        need(
            not binarized and not d.dequantize,
            "likelihood=logistic_mixture is a distribution over the 256 levels of 8-bit pixels, and "
            + ("dataset.binarize makes them 0/1 (use likelihood=bernoulli for binary data)" if binarized else "")
            + (" and " if binarized and d.dequantize else "")
            + ("dataset.dequantize=true moves them off the levels (drop it)" if d.dequantize else "")
            + ".",
        )
    elif name == LikelihoodName.continuous_bernoulli:
        need(
            not binarized,
            "likelihood=continuous_bernoulli is a density on grey levels in [0, 1]; on binarized data "
            "(dataset.binarize) use likelihood=bernoulli, which is then a proper likelihood.",
        )


def _check_model(cfg: DictConfig, need: Need) -> None:
    m, prior, d = cfg.model, cfg.prior, cfg.dataset
    _check_architecture(cfg, need)
    _check_likelihood(cfg, need)
    if "components" in prior:
        need(
            1 <= prior.components <= 10_000,
            f"prior.components must be in [1, 10000] (got {prior.components}).",
        )
    _check_vqvae(cfg, need)
    if m.conditional:
        need(
            prior.name == "normal" or prior.name == "mog",
            f"model.conditional=true with prior={prior.name}: the VampPrior's pseudo-inputs have no labels, so "
            f"q(z|u_k) cannot be evaluated by a conditional encoder. Use prior=normal or prior=mog with a CVAE.",
        )
        if d.name == "celeba" and d.label_attribute is None:
            need(
                False,
                "model.conditional=true needs class labels, and dataset=celeba has none unless "
                "dataset.label_attribute names a column of list_attr_celeba.txt (e.g. dataset.label_attribute=Smiling).",
            )
        elif d.name not in LABELLED | {"celeba", "image_folder"}:
            need(False, f"model.conditional=true needs class labels, and dataset={d.name} has none.")


def _check_vqvae(cfg: DictConfig, need: Need) -> None:
    m, prior, loss = cfg.model, cfg.prior, cfg.loss
    vq = Arch(m.arch) == Arch.vqvae
    if prior.name == "pixelcnn":
        need(
            vq,
            "prior=pixelcnn is a prior over the codes of a VQ-VAE, and this run's model is not one: give the VQ-VAE "
            "run to learn it for (vae-train prior=pixelcnn prior.vqvae=RUN; the model then comes from RUN).",
        )
        need(1 <= prior.layers <= 64, f"prior.layers must be in [1, 64] (got {prior.layers}).")
        need(1 <= prior.channels <= 4096, f"prior.channels must be in [1, 4096] (got {prior.channels}).")
        need(
            prior.kernel in (3, 5, 7),
            f"prior.kernel must be 3, 5 or 7 (an odd width, centred; got {prior.kernel}).",
        )
    if not vq:
        return
    need(
        2 <= m.codebook_size <= 65_536,
        f"model.codebook_size must be in [2, 65536] codes (got {m.codebook_size}).",
    )
    need(1 <= m.code_dim <= 4096, f"model.code_dim must be in [1, 4096] (got {m.code_dim}).")
    need(m.commitment >= 0, f"model.commitment must be >= 0 (got {m.commitment}).")
    need(0 < m.ema_decay < 1, f"model.ema_decay must be in (0, 1) (got {m.ema_decay}).")
    need(
        prior.name in ("normal", "pixelcnn"),
        f"model=vqvae trains under the uniform prior over its codes (prior=normal, the default) and then takes a "
        f"PixelCNN prior in a second run (prior=pixelcnn prior.vqvae=RUN); prior={prior.name} is for the "
        f"Gaussian latents of the other models.",
    )
    need(
        not m.conditional,
        "model=vqvae has no conditional (CVAE) form; drop model.conditional=true.",
    )
    need(
        loss.name == "elbo",
        f"model=vqvae trains with loss=elbo (reconstruction, its codebook and commitment losses, and the "
        f"constant KL of a one-hot posterior); loss={loss.name} needs a Gaussian posterior.",
    )
    if loss.name == "elbo":
        need(
            loss.free_bits == 0 and loss.capacity_max is None,
            "loss.free_bits and loss.capacity_max reshape a KL that is constant for model=vqvae (one-hot "
            "posterior, log K per code); drop them.",
        )


def _check_objective(cfg: DictConfig, need: Need) -> None:
    loss, m, t, prior = cfg.loss, cfg.model, cfg.trainer, cfg.prior
    name = loss.name
    if Arch(m.arch) == Arch.vqvae and name != "elbo":
        return  # reported by _check_vqvae
    if Arch(m.arch) == Arch.hvae:
        if name in FLAT_ONLY_OBJECTIVES:
            need(
                False,
                f"loss={name} works on the aggregate posterior of one latent vector; model=hvae has "
                f"{m.layers} conditional layers. Use loss=elbo or loss=iwae with model=hvae, or a flat model "
                f"(model=mlp, conv, resnet) with loss={name}.",
            )
            return
        if name == "iwae" and IWEstimator(loss.estimator) == IWEstimator.dreg:
            need(
                False,
                "loss.estimator=dreg needs a one-layer posterior (its gradient stops q's parameters, which in "
                "model=hvae depend on the layers above); use loss.estimator=iwae with model=hvae.",
            )
    if name == "elbo":
        need(loss.beta >= 0, f"loss.beta must be >= 0 (got {loss.beta}).")
        need(loss.recon_weight > 0, f"loss.recon_weight must be > 0 (got {loss.recon_weight}).")
        need(loss.kl_warmup_steps >= 0, f"loss.kl_warmup_steps must be >= 0 (got {loss.kl_warmup_steps}).")
        need(loss.free_bits >= 0, f"loss.free_bits must be >= 0 nats, 0 = off (got {loss.free_bits}).")
        if loss.free_bits > 0:
            need(
                prior.name == "normal",
                f"loss.free_bits works on the KL of each latent dimension, which only prior=normal has in closed "
                f"form (got prior={prior.name}). Use prior=normal, or loss.capacity_max for a total-KL target.",
            )
        if loss.capacity_max is not None:
            need(loss.capacity_max >= 0, f"loss.capacity_max must be >= 0 nats (got {loss.capacity_max}).")
            need(loss.capacity_steps >= 1, f"loss.capacity_steps must be >= 1 (got {loss.capacity_steps}).")
            need(
                loss.free_bits == 0,
                "loss.free_bits and loss.capacity_max both reshape the KL term; use one of them.",
            )
            need(
                loss.kl_warmup_steps == 0,
                "loss.kl_warmup_steps and loss.capacity_max both schedule the KL term (capacity annealing already "
                "raises C from 0); use one of them.",
            )
    elif name == "iwae":
        need(1 <= loss.k <= 5000, f"loss.k must be in [1, 5000] importance samples (got {loss.k}).")
    elif name == "beta_tcvae":
        for key in ("alpha", "beta", "gamma"):
            need(loss[key] >= 0, f"loss.{key} must be >= 0 (got {loss[key]}).")
        if TCEstimator(loss.estimator) == TCEstimator.mss:
            need(
                t.batch_size >= 3,
                f"loss.estimator=mss stratifies over the other images of a batch and needs trainer.batch_size >= 3 "
                f"(got {t.batch_size}).",
            )
    elif name == "factor_vae":
        need(loss.gamma >= 0, f"loss.gamma must be >= 0 (got {loss.gamma}).")
        need(
            m.latent_dim >= 2,
            f"loss=factor_vae estimates the total correlation between latent dimensions, which needs "
            f"model.latent_dim >= 2 (got {m.latent_dim}).",
        )
        need(
            len(loss.disc_hidden) >= 1 and all(h >= 1 for h in loss.disc_hidden),
            f"loss.disc_hidden must be a non-empty list of positive widths (got {list(loss.disc_hidden)}).",
        )
        need(loss.disc_lr > 0, f"loss.disc_lr must be > 0 (got {loss.disc_lr}).")
        need(
            len(loss.disc_betas) == 2 and all(0 <= b < 1 for b in loss.disc_betas),
            f"loss.disc_betas must be two numbers in [0, 1) (got {list(loss.disc_betas)}).",
        )
        need(
            t.batch_size >= 2,
            f"loss=factor_vae permutes latents across the batch and needs trainer.batch_size >= 2 (got {t.batch_size}).",
        )
    elif name == "dip_vae":
        need(loss.lambda_od >= 0, f"loss.lambda_od must be >= 0 (got {loss.lambda_od}).")
        need(loss.lambda_d is None or loss.lambda_d >= 0, f"loss.lambda_d must be >= 0 or null (got {loss.lambda_d}).")
        need(
            t.batch_size >= 2,
            f"loss=dip_vae estimates a covariance over the batch and needs trainer.batch_size >= 2 (got {t.batch_size}).",
        )
    elif name == "info_vae":
        need(loss.kernel_scale > 0, f"loss.kernel_scale must be > 0 (got {loss.kernel_scale}).")
        need(loss.alpha <= 1, f"loss.alpha must be <= 1: the KL weight is 1 - alpha (got {loss.alpha}).")
        need(
            loss.alpha + loss["lambda"] - 1 >= 0,
            f"loss.alpha + loss.lambda - 1 is the MMD weight and must be >= 0 (got {loss.alpha + loss['lambda'] - 1:g}).",
        )
        need(
            t.batch_size >= 2,
            f"loss=info_vae's unbiased MMD needs trainer.batch_size >= 2 (got {t.batch_size}).",
        )


def _check_dataset(cfg: DictConfig, need: Need, problems: list[str]) -> None:
    d, t = cfg.dataset, cfg.trainer
    need(d.val_size >= 0, f"dataset.val_size must be >= 0 (got {d.val_size}).")
    need(d.subset is None or d.subset >= 1, f"dataset.subset must be >= 1 or null (got {d.subset}).")
    need(d.channels in (1, 3), f"dataset.channels must be 1 or 3 (got {d.channels}).")
    need(1 <= d.image_size <= 1024, f"dataset.image_size must be in [1, 1024] (got {d.image_size}).")
    need(0 <= d.threshold <= 1, f"dataset.threshold must be in [0, 1] (got {d.threshold}).")
    need(
        not (d.dequantize and d.binarize != Binarize.none),
        f"dataset.dequantize=true adds grey-level noise, which makes no sense on binarized pixels "
        f"(dataset.binarize={Binarize(d.binarize).value}); use one or the other.",
    )
    need(d.crop_size is None or d.crop_size >= 1, f"dataset.crop_size must be >= 1 or null (got {d.crop_size}).")
    need(0 <= d.background <= 255, f"dataset.background must be a grey level 0-255 (got {d.background}).")
    need(0 < d.test_fraction < 1, f"dataset.test_fraction must be in (0, 1) (got {d.test_fraction}).")
    need(d.memory_budget_mb >= 0, f"dataset.memory_budget_mb must be >= 0 (got {d.memory_budget_mb}).")
    need(d.num_workers >= 0, f"dataset.num_workers must be >= 0 (got {d.num_workers}).")
    need(d.max_image_pixels >= 1, f"dataset.max_image_pixels must be >= 1 (got {d.max_image_pixels}).")
    need(
        (d.num_train is None or d.num_train >= 1) and d.num_test >= 1,
        "dataset.num_train (or null) and dataset.num_test must be >= 1.",
    )
    need(d.num_train is not None or d.name in FACTOR_GRID_SIZES, "dataset.num_train=null is only for factor datasets.")
    if d.name in FACTOR_GRID_SIZES:
        grid = FACTOR_GRID_SIZES[d.name]
        need(
            d.num_test + (d.num_train or 1) <= grid,
            f"dataset.num_train + dataset.num_test must be at most the {grid} grid points of '{d.name}' (got "
            f"{d.num_train} + {d.num_test}).",
        )
        need(
            d.image_size == 64 and d.channels == (3 if d.name == "xyobject" else 1),
            f"'{d.name}' images are {3 if d.name == 'xyobject' else 1}x64x64: dataset.image_size must be 64 and "
            f"dataset.channels {3 if d.name == 'xyobject' else 1}.",
        )
    need(
        d.factors_csv is None or d.name == "image_folder",
        "dataset.factors_csv is read only by dataset=image_folder.",
    )
    n_train = known_train_size(d)
    if n_train is not None and t.batch_size > n_train:
        problems.append(
            f"trainer.batch_size={t.batch_size} is larger than the training set ({n_train} images of "
            f"'{d.name}' after dataset.val_size/subset); use a smaller trainer.batch_size."
        )


def check_disentanglement_node(node: DictConfig, need: Need, prefix: str = "disentanglement.") -> None:
    """The metric names and sample sizes (also checked by vae-eval for its own overrides)."""
    from vae_cli.config.disentanglement import METRICS

    unknown = [m for m in node.metrics if m not in METRICS]
    need(not unknown, f"{prefix}metrics: unknown {unknown}; choose among {', '.join(METRICS)}.")
    need(node.every_epochs >= 0, f"{prefix}every_epochs must be >= 0 (got {node.every_epochs}).")
    for key, value in _leaves(node, int):
        if key.endswith(("num_train", "num_test", "num_eval", "num_variance_estimate", "batch_size", "num_bins")):
            need(value >= 2, f"{prefix}{key} must be >= 2 (got {value}): the metrics need a spread of samples.")


def _check_disentanglement(cfg: DictConfig, need: Need) -> None:
    from vae_cli.factors.from_config import FACTOR_DATASETS

    node = cfg.get("disentanglement")
    if node is None:
        return
    check_disentanglement_node(node, need)
    if node.every_epochs > 0:
        d = cfg.dataset
        need(
            d.name in FACTOR_DATASETS or (d.name == "image_folder" and d.get("factors_csv")),
            f"disentanglement.every_epochs={node.every_epochs} needs ground-truth factors, which dataset "
            f"'{d.name}' has not: use dataset=shapes2d, xyobject or dsprites, or an image folder with "
            f"dataset.factors_csv; or set disentanglement.every_epochs=0.",
        )
        need(
            cfg.model.get("arch") != "vqvae" and not cfg.model.get("conditional", False),
            "disentanglement.every_epochs > 0 scores the encoder mean of an unconditional Gaussian-latent model; "
            "not a VQ-VAE or a conditional model.",
        )

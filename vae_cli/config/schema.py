"""Typed config schemas (registered in Hydra's ConfigStore) and cross-field checks.

The YAML files under ``configs/`` fill these dataclasses; because the root config is typed, a misspelt key or a
value of the wrong type fails when Hydra composes the config, naming the key. ``validate`` then checks what a
type cannot express (ranges, combinations) and reports every problem at once, before any data is loaded.

Enums rather than ``Literal``: hydra-core 1.3 needs omegaconf < 2.4, which does not support ``Literal``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from vae_cli.errors import ConfigError


class Likelihood(str, Enum):
    bernoulli = "bernoulli"
    gaussian = "gaussian"


class Arch(str, Enum):
    mlp = "mlp"
    conv = "conv"


class OptimizerName(str, Enum):
    adam = "adam"
    adamw = "adamw"


class Schedule(str, Enum):
    none = "none"
    cosine = "cosine"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"


class CpuWait(str, Enum):
    auto = "auto"  # sleep if the machine is already busy when the run starts, else spin briefly (bounded)
    spin = "spin"  # OMP_WAIT_POLICY=ACTIVE: fastest on an idle machine that stays idle
    sleep = "sleep"  # OMP_WAIT_POLICY=PASSIVE: no collapse when cores are oversubscribed


class NanPolicy(str, Enum):
    stop = "stop"  # stop the run, keep the last good checkpoint
    skip = "skip"  # drop the batch's update and go on
    rollback = "rollback"  # reload the last checkpoint and go on with a lower learning rate


class DeviceName(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Binarize(str, Enum):
    # none: grey levels in [0, 1]. dynamic: a fresh Bernoulli sample of every training pixel each epoch (val/test
    # get one fixed seeded sample). static_threshold: pixel > dataset.threshold, once. static_sample: one seeded
    # Bernoulli sample of every image, fixed for the whole run.
    none = "none"
    dynamic = "dynamic"
    static_threshold = "static_threshold"
    static_sample = "static_sample"


class ResizeMode(str, Enum):
    # How an image of another shape becomes image_size x image_size (image_folder, celeba).
    center_crop = "center_crop"  # scale the shorter side to image_size, crop the centre (keeps aspect ratio)
    stretch = "stretch"  # scale both sides to image_size (distorts the aspect ratio, keeps everything)
    pad = "pad"  # scale the longer side to image_size, pad with dataset.background (letterbox)


class SubsetMode(str, Enum):
    first = "first"
    random = "random"


class EmnistSplit(str, Enum):
    byclass = "byclass"
    bymerge = "bymerge"
    balanced = "balanced"
    letters = "letters"
    digits = "digits"
    mnist = "mnist"


@dataclass
class DatasetConfig:
    # Which builder in vae_cli/datasets/ reads the files: mnist | fashion_mnist | kmnist | emnist | cifar10 |
    # svhn | celeba | image_folder | synthetic. docs/datasets.md gives the on-disk layout of each.
    name: str = MISSING
    # Where the files live (e.g. <root>/MNIST/raw/...; for image_folder the folder of images itself). Relative
    # paths are taken from the directory vae-train is started in, not the run directory.
    root: str = "data"
    # true: fetch missing files through torchvision (needs internet). Offline, files already under root are read.
    download: bool = False
    # EMNIST only: which of the six EMNIST splits.
    split: EmnistSplit = EmnistSplit.balanced
    # Images carved from the training split (seeded) for validation and model selection; 0 disables.
    val_size: int = 5000
    # Train on N training images only (after the val split); null = all. For quick runs.
    subset: int | None = None
    # first: the first N in file order; random: N drawn with the trainer seed.
    subset_mode: SubsetMode = SubsetMode.first
    # Shape of one image. Fixed datasets (mnist, cifar10, ...) check it against the files; image_folder and
    # celeba decode every image to this shape.
    channels: int = 1
    image_size: int = 28
    # --- preprocessing (pixels always end up as floats in [0, 1]) ---
    binarize: Binarize = Binarize.none
    # static_threshold: a pixel is 1 when its grey level in [0, 1] is above this.
    threshold: float = 0.5
    # Uniform noise of one grey level added to training pixels (continuous likelihoods, e.g. loss=gaussian).
    dequantize: bool = False
    # Random horizontal flips of training images (opt-in: wrong for digits and letters).
    hflip: bool = False
    # --- decoding of image files (image_folder, celeba) ---
    resize: ResizeMode = ResizeMode.center_crop
    # Centre-crop a square of this many pixels before resizing; null = none (celeba: 148, the usual 64x64 crop).
    crop_size: int | None = None
    # Grey level (0-255) that transparent pixels are composited onto, and that pads resize=pad.
    background: int = 255
    # image_folder without train/ and test/ sub-folders: fraction held out (fixed seed) as the test split.
    test_fraction: float = 0.1
    # Skip unreadable image files with a warning instead of stopping (the default names them and stops).
    skip_bad_files: bool = False
    # CelebA only: an attribute of list_attr_celeba.txt (e.g. Smiling) used as a two-class label; null = none.
    label_attribute: str | None = None
    # --- speed ---
    # Decoded training data above this size (MiB) is not kept in memory but streamed from the on-disk cache
    # through a DataLoader with workers; below it, everything sits on the training device as uint8.
    memory_budget_mb: int = 4096
    # Threads that decode image files, and DataLoader worker processes when streaming.
    num_workers: int = 2
    # Keep decoded image folders (and celeba) as uint8 arrays on disk, so the next run starts in seconds.
    cache: bool = True
    # Where that cache goes; null = <root>/.vae-cli-cache.
    cache_dir: str | None = None
    # Only for name=synthetic: how many train/test images to generate.
    num_train: int = 2048
    num_test: int = 512


@dataclass
class ModelConfig:
    arch: Arch = Arch.mlp
    latent_dim: int = 20
    # MLP: widths of the hidden layers (encoder; the decoder mirrors them).
    hidden_dims: list[int] = field(default_factory=lambda: [400])
    # Conv: channels of the stride-2 conv layers (encoder; the decoder mirrors them). Each halves H and W.
    conv_channels: list[int] = field(default_factory=lambda: [32, 64])


@dataclass
class LossConfig:
    likelihood: Likelihood = Likelihood.bernoulli
    # Weight on the KL term (beta-VAE); 1 gives the true ELBO.
    beta: float = 1.0
    # Linear KL warm-up from 0 to beta over this many optimizer steps; 0 = no warm-up.
    kl_warmup_steps: int = 0
    # Weight on the reconstruction term; 1 gives the true ELBO.
    recon_weight: float = 1.0
    # Standard deviation of the Gaussian likelihood p(x|z) = N(decoder(z), std^2), in pixel units [0, 1].
    gaussian_std: float = 0.1


@dataclass
class OptimConfig:
    name: OptimizerName = OptimizerName.adam
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Schedule = Schedule.none
    # Cosine schedule: the lr decays from lr to lr * min_lr_ratio over the whole run.
    min_lr_ratio: float = 0.0
    warmup_steps: int = 0


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 128
    device: DeviceName = DeviceName.auto
    seed: int = 0
    # Clip the global grad norm to this value; null = no clipping.
    grad_clip: float | None = None
    # Log training scalars every N optimizer steps (epoch means are always logged).
    log_every_steps: int = 100
    # Log image grids (reconstructions, samples) every N epochs, and always after the last one.
    image_every_epochs: int = 1
    # How many fixed validation images / fixed prior samples go into the image grids.
    num_images: int = 64
    # A run directory or a checkpoint file to continue from; null = start fresh.
    resume: str | None = None
    # Eval batch size (no gradients, so it can be larger than batch_size).
    eval_batch_size: int = 1000
    # Progress bar: auto = only on a terminal.
    progress: str = "auto"
    # Speed (see README "Performance"). None of these changes the model, the loss or the optimizer's math.
    # bf16 runs matmuls and convolutions under bf16 autocast (weights, optimizer state, loss sums stay fp32):
    # several times faster on CPUs with AVX512-BF16/AMX and on GPUs, same final test loss within noise.
    precision: Precision = Precision.fp32
    # torch.compile the forward pass and the loss (the backward follows): fuses the elementwise work. The first
    # step pays the compilation (~40 s on 2 CPU cores), so it pays off on long runs, and most on GPUs.
    compile: bool = False
    # CUDA only: capture the whole step (forward, backward, optimizer) once as a CUDA graph and replay it, which
    # removes the per-kernel launch cost that bounds small models on fast GPUs.
    cuda_graphs: bool = False
    # Conv models on CUDA: NHWC memory format, which the tensor-core convolution kernels want.
    channels_last: bool = True
    # How idle CPU threads wait (vae_cli/cpu_threads.py): spinning is fastest alone, sleeping avoids a 10-40x
    # collapse when other jobs share the cores. auto picks by the machine's load at start.
    cpu_wait: CpuWait = CpuWait.auto
    # Also write checkpoints/last.pt every N optimizer steps inside an epoch; null = only at epoch ends.
    checkpoint_every_steps: int | None = None
    # What a NaN/Inf loss or gradient does: stop | skip (the batch) | rollback (to last.pt, lr * factor).
    nan_policy: NanPolicy = NanPolicy.stop
    # skip: give up after this many bad batches in a row. rollback: at most this many rollbacks.
    max_nan_skips: int = 10
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5
    # Strict determinism (torch.use_deterministic_algorithms): slower on GPU; CPU runs are deterministic anyway.
    deterministic: bool = False
    # Latent views in TensorBoard (vae_cli/latent_monitor.py), all on the first latent_images val images:
    # histograms of mu and log sigma^2 every epoch; traversals and the 2-D scatter every latent_every_epochs
    # epochs and after the last one.
    latent_every_epochs: int = 1
    latent_images: int = 1000
    # val/nll_iw: importance-weighted -log p(x) of the val split, nll_iw_k samples, every N epochs and after the
    # last; 0 = off.
    nll_iw_every_epochs: int = 5
    nll_iw_k: int = 16
    # Embedding projector (mu, labels, thumbnails) at the end of training.
    embedding: bool = True


@dataclass
class LoggerConfig:
    tensorboard: bool = True
    # Also write PNG image grids into <run dir>/images/.
    save_png: bool = True


@dataclass
class TrainConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def register_configs() -> None:
    """Register the root schema so ``train.yaml``'s defaults list can start with ``train_schema``."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)


def to_plain_dict(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """A resolved, plain-Python copy of a config: safe to put in a ``weights_only`` checkpoint or JSON."""
    if isinstance(cfg, dict):
        return cfg
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(plain, dict)
    return plain  # type: ignore[return-value]


# Training-split sizes of datasets whose size is known before reading them (for checks that run before loading).
# Official training-split sizes (images), for checks before any file is read. EMNIST depends on dataset.split.
OFFICIAL_TRAIN_SIZES = {"mnist": 60_000, "fashion_mnist": 60_000, "kmnist": 60_000, "cifar10": 50_000, "svhn": 73_257}
EMNIST_TRAIN_SIZES = {
    "byclass": 697_932,
    "bymerge": 697_932,
    "balanced": 112_800,
    "letters": 124_800,
    "digits": 240_000,
    "mnist": 60_000,
}


def known_train_size(d: DictConfig) -> int | None:
    """Images left for training after the val split and subset, when that is known without reading files."""
    if d.name == "synthetic":
        total = d.num_train
    elif d.name == "emnist":
        total = EMNIST_TRAIN_SIZES.get(EmnistSplit(d.split).value)
    else:
        total = OFFICIAL_TRAIN_SIZES.get(d.name)
    if total is None:
        return None
    n = max(0, total - d.val_size)
    return min(n, d.subset) if d.subset is not None else n


def validate(cfg: DictConfig) -> None:
    """Check ranges and combinations the types cannot express; raise one ConfigError listing all problems."""
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    t, m, loss, o, d = cfg.trainer, cfg.model, cfg.loss, cfg.optim, cfg.dataset
    need(t.epochs >= 1, f"trainer.epochs must be >= 1 (got {t.epochs}).")
    need(t.batch_size >= 1, f"trainer.batch_size must be >= 1 (got {t.batch_size}).")
    need(t.eval_batch_size >= 1, f"trainer.eval_batch_size must be >= 1 (got {t.eval_batch_size}).")
    need(t.log_every_steps >= 1, f"trainer.log_every_steps must be >= 1 (got {t.log_every_steps}).")
    need(t.image_every_epochs >= 1, f"trainer.image_every_epochs must be >= 1 (got {t.image_every_epochs}).")
    need(t.num_images >= 1, f"trainer.num_images must be >= 1 (got {t.num_images}).")
    need(t.latent_every_epochs >= 1, f"trainer.latent_every_epochs must be >= 1 (got {t.latent_every_epochs}).")
    need(t.latent_images >= 1, f"trainer.latent_images must be >= 1 (got {t.latent_images}).")
    need(
        t.nll_iw_every_epochs >= 0,
        f"trainer.nll_iw_every_epochs must be >= 0, 0 = off (got {t.nll_iw_every_epochs}).",
    )
    need(t.nll_iw_k >= 1, f"trainer.nll_iw_k must be >= 1 (got {t.nll_iw_k}).")
    need(t.grad_clip is None or t.grad_clip > 0, f"trainer.grad_clip must be > 0 or null (got {t.grad_clip}).")
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
    need(m.latent_dim >= 1, f"model.latent_dim must be >= 1 (got {m.latent_dim}).")
    need(
        all(h >= 1 for h in m.hidden_dims),
        f"model.hidden_dims must be positive widths (got {m.hidden_dims}).",
    )
    need(
        len(m.conv_channels) >= 1 and all(c >= 1 for c in m.conv_channels),
        f"model.conv_channels must be a non-empty list of positive channel counts (got {m.conv_channels}).",
    )
    need(loss.beta >= 0, f"loss.beta must be >= 0 (got {loss.beta}).")
    need(loss.recon_weight > 0, f"loss.recon_weight must be > 0 (got {loss.recon_weight}).")
    need(loss.kl_warmup_steps >= 0, f"loss.kl_warmup_steps must be >= 0 (got {loss.kl_warmup_steps}).")
    need(loss.gaussian_std > 0, f"loss.gaussian_std must be > 0 (got {loss.gaussian_std}).")
    need(o.lr > 0, f"optim.lr must be > 0 (got {o.lr}).")
    need(o.weight_decay >= 0, f"optim.weight_decay must be >= 0 (got {o.weight_decay}).")
    need(0 <= o.min_lr_ratio <= 1, f"optim.min_lr_ratio must be in [0, 1] (got {o.min_lr_ratio}).")
    need(o.warmup_steps >= 0, f"optim.warmup_steps must be >= 0 (got {o.warmup_steps}).")
    need(d.val_size >= 0, f"dataset.val_size must be >= 0 (got {d.val_size}).")
    need(d.subset is None or d.subset >= 1, f"dataset.subset must be >= 1 or null (got {d.subset}).")
    need(d.channels in (1, 3), f"dataset.channels must be 1 or 3 (got {d.channels}).")
    need(d.image_size >= 1, f"dataset.image_size must be >= 1 (got {d.image_size}).")
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
    n_train = known_train_size(d)
    if n_train is not None and t.batch_size > n_train:
        problems.append(
            f"trainer.batch_size={t.batch_size} is larger than the training set ({n_train} images of "
            f"'{d.name}' after dataset.val_size/subset); use a smaller trainer.batch_size."
        )
    if m.arch == Arch.conv and len(m.conv_channels) >= 1:
        factor = 2 ** len(m.conv_channels)
        need(
            d.image_size % factor == 0,
            f"model=conv with {len(m.conv_channels)} stride-2 layers needs dataset.image_size divisible by "
            f"{factor} (got {d.image_size}); use fewer model.conv_channels or model=mlp.",
        )
    if o.weight_decay > 0 and o.name == OptimizerName.adam:
        problems.append(
            "optim.weight_decay > 0 with optim=adam couples the decay with the adaptive step (L2, not decoupled "
            "decay); use optim=adamw for weight decay."
        )
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))

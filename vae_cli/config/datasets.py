"""The ``dataset`` group: its schema (``DatasetConfig``: which files, how they are split, decoded and preprocessed)
and the dataset catalog (``DATASETS``: one ``DatasetSpec`` per dataset, importable without torch).

A dataset is its spec below (name, official split sizes, labels, ground-truth factors, the model it picks, where
its builder is), its YAML (``configs/dataset/<name>.yaml``) and, for a new file format, one module in
``vae_cli/datasets/``. Validation, the loader, the factor code and the docs' tables read the specs; nothing else
keeps a list of dataset names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from vae_cli.config.checks import Need
from vae_cli.config.enums import Binarize, EmnistSplit, ResizeMode, SubsetMode, TrainSplit


@dataclass
class DatasetConfig:
    # Which dataset of the catalog (DATASETS below) reads the files; docs/datasets.md gives the on-disk layout of each.
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
    # Validate and test on the first N images of the val and test splits only (quick checks: the numbers then
    # describe those N, and metrics.json says so); null = the whole splits. vae-eval always reads whole splits.
    eval_subset: int | None = None
    # Colour channels of one image: 1 (grey) or 3 (RGB). Fixed datasets (mnist, cifar10, ...) check the shape
    # against the files; image_folder and celeba decode every image to it.
    channels: int = 1
    # Height and width of one image, in pixels.
    image_size: int = 28
    # --- preprocessing (pixels always end up as floats in [0, 1]) ---
    # Black-and-white pixels: none; dynamic (each pixel drawn from its grey level at every use); static_threshold;
    # static_sample (drawn once, with a fixed seed).
    binarize: Binarize = Binarize.none
    # static_threshold: a pixel is 1 when its grey level in [0, 1] is above this.
    threshold: float = 0.5
    # Uniform noise of one grey level added to training pixels (continuous likelihoods, e.g. loss=gaussian).
    dequantize: bool = False
    # Random horizontal flips of training images (opt-in: wrong for digits and letters).
    hflip: bool = False
    # --- decoding of image files (image_folder, celeba) ---
    # How a decoded image is brought to image_size: center_crop (then scale), stretch, or pad (with background).
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
    # Which official split to train on: train (normal), or test for a copy that holds only the test files (the
    # validation images are then carved from it and the run reports no test numbers).
    train_split: TrainSplit = TrainSplit.train
    # Images with more pixels than this are refused as possible decompression bombs (PIL's own limit); raise it
    # for real scans or panoramas.
    max_image_pixels: int = 89_478_485
    # synthetic: how many train/test images to generate. shapes2d, xyobject, dsprites: how many grid points form
    # the test split (fixed seed) and the training split (null = all the others; N = a seeded subset).
    num_train: int | None = 2048
    # synthetic: how many test images to generate; the factor datasets: how many grid points form the test split.
    num_test: int = 512
    # image_folder only: a CSV of ground-truth factors (a 'file' column of paths relative to root, then one column
    # per factor) that makes the folder a factor dataset for vae-eval --disentanglement; null = none.
    factors_csv: str | None = None

    @classmethod
    def check(cls, d: Any, cfg: Any, need: Need) -> None:
        need(d.val_size >= 0, f"dataset.val_size must be >= 0 (got {d.val_size}).")
        need(d.subset is None or d.subset >= 1, f"dataset.subset must be >= 1 or null (got {d.subset}).")
        need(
            d.eval_subset is None or d.eval_subset >= 1,
            f"dataset.eval_subset must be >= 1 or null (got {d.eval_subset}).",
        )
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
        spec = DATASETS.get(d.name)
        grid = spec.grid if spec is not None else None
        need(d.num_train is not None or grid is not None, "dataset.num_train=null is only for factor datasets.")
        if grid is not None:
            need(
                d.num_test + (d.num_train or 1) <= grid.size,
                f"dataset.num_train + dataset.num_test must be at most the {grid.size} grid points of '{d.name}' "
                f"(got {d.num_train} + {d.num_test}).",
            )
            channels, size, _ = grid.shape
            need(
                d.image_size == size and d.channels == channels,
                f"'{d.name}' images are {channels}x{size}x{size}: dataset.image_size must be {size} and "
                f"dataset.channels {channels}.",
            )
        need(
            d.factors_csv is None or (spec is not None and spec.factors_from_csv),
            "dataset.factors_csv is read only by dataset="
            + " or ".join(s.name for s in DATASETS.values() if s.factors_from_csv)
            + ".",
        )


@dataclass(frozen=True)
class FactorGridSpec:
    """A dataset that is a full grid of ground-truth factor combinations (vae_cli/factors)."""

    size: int  # grid points, known without rendering or reading them
    shape: tuple[int, int, int]  # (channels, height, width) of every image
    label_factor: str  # the factor used as the class label
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """What vae-cli knows of one dataset before reading a file."""

    name: str
    build: str  # "vae_cli.datasets.<module>:<function>(cfg, parts) -> RawSplits"
    # The official split sizes, when known without reading files (checks before any data loads); None: unknown.
    train_size: int | None = None
    test_size: int | None = None
    # EMNIST: (train, test) sizes per dataset.split instead.
    split_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Generated from dataset.num_train / num_test (synthetic).
    generated: bool = False
    # Class labels: always | attribute (only with dataset.label_attribute) | class_folders (one sub-folder per class).
    labels: str = "always"
    # The class names, where the dataset fixes them (label i is entry i).
    classes: tuple[str, ...] = ()
    # What the format's reader needs to find the files (e.g. the IDX folder name, system locations), its own keys.
    reader: dict[str, Any] = field(default_factory=dict)
    # The model a dataset=<name> picks (its YAML's "override /model:"): a conv model for colour and large images.
    model: str = "mlp"
    # Ground-truth factors: a full factor grid, and/or the function that builds the ground truth of a config.
    grid: FactorGridSpec | None = None
    ground_truth: str | None = None  # "vae_cli.<datasets|factors>.<module>:<function>(cfg) -> FactorData"
    factors_from_csv: bool = False  # the ground truth comes from dataset.factors_csv (when it is set)

    def has_factors(self, d: Any) -> bool:
        """Whether a run with dataset config ``d`` has ground-truth factors to score against."""
        return self.ground_truth is not None and (not self.factors_from_csv or bool(d.get("factors_csv")))


class DatasetCatalog:
    """The datasets vae-cli reads, in the order the docs list them."""

    # Where the builders and ground-truth functions live: the data layer (readers, and the factor generators below it).
    packages = ("vae_cli.datasets", "vae_cli.factors")

    def __init__(self, *specs: DatasetSpec) -> None:
        self._specs = {spec.name: spec for spec in specs}

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __getitem__(self, name: str) -> DatasetSpec:
        return self._specs[name]

    def get(self, name: str) -> DatasetSpec | None:
        return self._specs.get(name)

    def __iter__(self) -> Iterator[DatasetSpec]:
        return iter(self._specs.values())

    def values(self) -> Iterator[DatasetSpec]:
        return iter(self._specs.values())

    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def with_factors(self) -> tuple[str, ...]:
        """Datasets that are factor grids (their ground truth needs nothing but the dataset itself)."""
        return tuple(s.name for s in self._specs.values() if s.grid is not None)


IDX = "vae_cli.datasets.idx:load_idx_dataset"
GRID = "vae_cli.datasets.factor_sets:load_grid_dataset"
# dSprites' grid: shape x scale x orientation x x x y = 3 x 6 x 40 x 32 x 32 (rendered by shapes2d, read by dsprites).
DSPRITES_GRID = FactorGridSpec(737_280, (1, 64, 64), "shape", ("square", "ellipse", "heart"))

DIGITS = tuple("0123456789")
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_FASHION = {
    "system_dirs": ("/usr/share/datasets/fashion-mnist",),
    "how_to_get": "install Debian's package (apt-get install dataset-fashion-mnist; found automatically in "
    "/usr/share/datasets/fashion-mnist), or ",
}

DATASETS = DatasetCatalog(
    DatasetSpec("mnist", IDX, train_size=60_000, test_size=10_000, classes=DIGITS, reader={"folder": "MNIST"}),
    DatasetSpec(
        "fashion_mnist",
        IDX,
        train_size=60_000,
        test_size=10_000,
        classes=FASHION,
        reader={"folder": "FashionMNIST", **DEBIAN_FASHION},
    ),
    DatasetSpec(
        "kmnist",
        IDX,
        train_size=60_000,
        test_size=10_000,
        classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        reader={"folder": "KMNIST"},
    ),
    DatasetSpec(
        "emnist",
        IDX,
        # Its files are named per dataset.split, their images stored transposed, its classes per split (idx.py).
        reader={"folder": "EMNIST", "per_split": True},
        split_sizes={
            "byclass": (697_932, 116_323),
            "bymerge": (697_932, 116_323),
            "balanced": (112_800, 18_800),
            "letters": (124_800, 20_800),
            "digits": (240_000, 40_000),
            "mnist": (60_000, 10_000),
        },
    ),
    DatasetSpec("cifar10", "vae_cli.datasets.cifar:load_cifar10", train_size=50_000, test_size=10_000, model="conv"),
    DatasetSpec("svhn", "vae_cli.datasets.svhn:load_svhn", train_size=73_257, test_size=26_032, model="conv"),
    DatasetSpec("celeba", "vae_cli.datasets.celeba:load_celeba", labels="attribute", model="conv"),
    DatasetSpec(
        "image_folder",
        "vae_cli.datasets.image_folder:load_image_folder",
        labels="class_folders",
        model="conv",
        ground_truth="vae_cli.datasets.factor_sets:folder_with_factors",
        factors_from_csv=True,
    ),
    DatasetSpec("synthetic", "vae_cli.datasets.synthetic:load_synthetic", generated=True),
    DatasetSpec(
        "shapes2d", GRID, model="conv", grid=DSPRITES_GRID, ground_truth="vae_cli.factors.shapes2d:from_config"
    ),
    DatasetSpec(
        "xyobject",
        GRID,
        model="conv",
        grid=FactorGridSpec(6_144, (3, 64, 64), "colour", ("red", "yellow", "green", "cyan", "blue", "magenta")),
        ground_truth="vae_cli.factors.xyobject:from_config",
    ),
    DatasetSpec(
        "dsprites", GRID, model="conv", grid=DSPRITES_GRID, ground_truth="vae_cli.factors.dsprites:from_config"
    ),
)


def known_train_size(d: Any) -> int | None:
    """Images left for training after the val split and subset, when that is known without reading files."""
    from_test = TrainSplit(d.get("train_split", TrainSplit.train)) == TrainSplit.test
    spec = DATASETS.get(d.name)
    if spec is None:
        return None
    if spec.generated:
        total = d.num_test if from_test else d.num_train
    elif spec.grid is not None:
        total = d.num_test if from_test else (spec.grid.size - d.num_test if d.num_train is None else d.num_train)
    elif spec.split_sizes:
        sizes = spec.split_sizes.get(EmnistSplit(d.split).value)
        total = None if sizes is None else sizes[1 if from_test else 0]
    else:
        total = spec.test_size if from_test else spec.train_size
    if total is None:
        return None
    n = max(0, total - d.val_size)
    return min(n, d.subset) if d.subset is not None else n

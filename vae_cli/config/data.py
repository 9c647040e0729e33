"""The ``dataset`` group's schema: which files, how they are split, decoded and preprocessed."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from vae_cli.config.enums import Binarize, EmnistSplit, ResizeMode, SubsetMode, TrainSplit


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
    # Which official split to train on: train (normal), or test for a copy that holds only the test files (the
    # validation images are then carved from it and the run reports no test numbers).
    train_split: TrainSplit = TrainSplit.train
    # Images with more pixels than this are refused as possible decompression bombs (PIL's own limit); raise it
    # for real scans or panoramas.
    max_image_pixels: int = 89_478_485
    # synthetic: how many train/test images to generate. shapes2d, xyobject, dsprites: how many grid points form
    # the test split (fixed seed) and the training split (null = all the others; N = a seeded subset).
    num_train: int | None = 2048
    num_test: int = 512
    # image_folder only: a CSV of ground-truth factors (a 'file' column of paths relative to root, then one column
    # per factor) that makes the folder a factor dataset for vae-eval --disentanglement; null = none.
    factors_csv: str | None = None

"""Data loading benchmark: vae-cli's data layer vs torchvision's per-sample DataLoader, side by side, one process.

    .venv/bin/python benchmarks/data_loading.py            # Fashion-MNIST from Debian's install location
    .venv/bin/python benchmarks/data_loading.py --folder-images 5000 --workers 0 2

Measures, on the real Fashion-MNIST training split (60k, 1x28x28):
- load: files -> ready to iterate (vae-cli: ``load_dataset``, gz read in place; torchvision: ``FashionMNIST``
  on already-uncompressed files, its best case);
- epoch: one pass of shuffled batches of 128 as float tensors in [0, 1] (vae-cli: ``IndexBatches``, also with
  dynamic binarization; torchvision: ``DataLoader(FashionMNIST(transform=ToTensor()))`` with N workers);
- image folder: the same images written as PNG files, first load (decode + cache) vs second load (cache hit) vs
  one torchvision ``ImageFolder`` epoch.
Every figure is the best of ``--repeats`` runs; the ratios compare figures from this same run.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from vae_cli.config.datasets import DatasetConfig
from vae_cli.datasets import BatchPreprocess, IndexBatches, load_dataset

FASHION = Path("/usr/share/datasets/fashion-mnist")


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def drain(batches) -> int:
    n = 0
    for x in batches:
        if isinstance(x, (list, tuple)):
            x = x[0]
        n += x.shape[0]
    return n


def stage_torchvision_root(tmp: Path) -> Path:
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in FASHION.glob("*-ubyte.gz"):
        with gzip.open(gz) as src, open(raw / gz.name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="torchvision DataLoader workers")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = torch's default)")
    parser.add_argument("--folder-images", type=int, default=5000, help="PNG files for the image-folder part (0=skip)")
    args = parser.parse_args()
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        raise SystemExit(f"needs Debian's dataset-fashion-mnist in {FASHION} (bash scripts/setup.sh installs it)")
    import torchvision.datasets as tvd
    import torchvision.transforms as T
    from torch.utils.data import DataLoader

    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, best of {args.repeats}"
    )
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tv_root = stage_torchvision_root(tmp / "tv")
        cfg = DatasetConfig(name="fashion_mnist", root=str(tmp / "ours"), val_size=0)

        t0 = time.perf_counter()
        load_dataset(cfg, seed=0)  # first run: decompresses the .gz files, keeps raw copies in the root
        ours_first = time.perf_counter() - t0
        ours_load = best_of(args.repeats, lambda: load_dataset(cfg, seed=0))
        tv_load = best_of(
            args.repeats,
            lambda: (tvd.FashionMNIST(str(tv_root), train=True), tvd.FashionMNIST(str(tv_root), train=False)),
        )
        rows += [
            ("load: vae-cli load_dataset, first run (from .gz)", ours_first),
            ("load: vae-cli load_dataset, later runs", ours_load),
            ("load: torchvision FashionMNIST (train+test, raw)", tv_load),
        ]

        data = load_dataset(cfg, seed=0)
        plain = IndexBatches(data.train, args.batch_size, seed=0)
        dyn = IndexBatches(data.train, args.batch_size, seed=0, preprocess=BatchPreprocess(0, dynamic_binarize=True))
        ours_epoch = best_of(args.repeats, lambda: drain(plain.epoch(0)))
        dyn_epoch = best_of(args.repeats, lambda: drain(dyn.epoch(0)))
        rows += [
            ("epoch: vae-cli IndexBatches", ours_epoch),
            ("epoch: vae-cli IndexBatches + dynamic binarization", dyn_epoch),
        ]
        tv_set = tvd.FashionMNIST(str(tv_root), train=True, transform=T.ToTensor())
        tv_epochs = {}
        for w in args.workers:
            loader = DataLoader(
                tv_set, batch_size=args.batch_size, shuffle=True, num_workers=w, persistent_workers=False
            )
            tv_epochs[w] = best_of(args.repeats, lambda loader=loader: drain(loader))
            rows.append((f"epoch: torchvision DataLoader + ToTensor, {w} workers", tv_epochs[w]))

        folder_rows = []
        if args.folder_images > 0:
            from PIL import Image

            folder = tmp / "folder"
            for i in range(args.folder_images):
                cls = folder / str(int(data.train_labels[i]))
                cls.mkdir(parents=True, exist_ok=True)
                Image.fromarray(data.train[i, 0].numpy()).save(cls / f"{i:05d}.png")
            # The cache goes beside the folder: torchvision's ImageFolder would take a cache folder inside for a class.
            fcfg = DatasetConfig(
                name="image_folder",
                root=str(folder),
                val_size=0,
                channels=1,
                image_size=28,
                cache_dir=str(tmp / "cache"),
            )
            t0 = time.perf_counter()
            load_dataset(fcfg, seed=0)
            first = time.perf_counter() - t0
            second = best_of(args.repeats, lambda: load_dataset(fcfg, seed=0))
            tv_folder = tvd.ImageFolder(str(folder), transform=T.Compose([T.Grayscale(), T.ToTensor()]))
            tv_folder_epoch = best_of(1, lambda: drain(DataLoader(tv_folder, batch_size=args.batch_size, shuffle=True)))
            folder_rows = [
                (f"folder of {args.folder_images} PNGs: vae-cli first load (decode + write cache)", first),
                (f"folder of {args.folder_images} PNGs: vae-cli second load (cache hit)", second),
                (
                    f"folder of {args.folder_images} PNGs: torchvision ImageFolder, one epoch, 0 workers",
                    tv_folder_epoch,
                ),
            ]

    width = max(len(name) for name, _ in rows + folder_rows)
    for name, seconds in rows + folder_rows:
        print(f"{name:<{width}}  {seconds * 1000:9.1f} ms")
    print()
    print(f"load ratio   (torchvision / vae-cli later runs): {tv_load / ours_load:6.1f}x")
    for w, t in tv_epochs.items():
        print(f"epoch ratio  (torchvision {w} workers / vae-cli IndexBatches): {t / ours_epoch:6.1f}x")
    best_tv = min(tv_epochs.values())
    total = (tv_load + best_tv) / (ours_load + ours_epoch)
    print(f"load + epoch (best torchvision / vae-cli): {total:6.1f}x")
    if folder_rows:
        print(
            f"folder second load vs first: {first / second:6.1f}x faster; vs a torchvision ImageFolder epoch: "
            f"{tv_folder_epoch / second:6.1f}x"
        )


if __name__ == "__main__":
    main()

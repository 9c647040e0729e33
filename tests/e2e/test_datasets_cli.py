"""Every dataset option trains end to end through the installed `vae-train`, on files in the real formats."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from tests.conftest import SHARED_MNIST, real_data_required, run_vae_train
from tests.dataset_files import (
    arrange_shared_mnist,
    write_celeba,
    write_cifar10,
    write_mnist_like,
    write_svhn,
)
from vae_cli.evaluation import plots

SMALL = [
    "dataset.val_size=16",
    "dataset.subset=64",
    "trainer.epochs=1",
    "trainer.batch_size=16",
    "trainer.num_images=8",
    "trainer.eval_batch_size=256",
    "model.latent_dim=4",
]
# Each architecture's own keys (a key of model=mlp is refused for a run that uses model=conv), so the grey datasets
# (the MLP) and the colour ones (their dataset option picks the conv model) are two sweeps.
GREY_MODEL, COLOUR_MODEL = ["model.hidden_dims=[32]"], ["model.conv_channels=[8,16]"]


def test_each_dataset_option_trains_end_to_end_with_a_model_that_fits(tmp_path):
    root = tmp_path / "data"
    write_mnist_like(root / "KMNIST" / "raw", n_train=120, n_test=40)
    write_mnist_like(root / "EMNIST" / "raw", n_train=120, n_test=40, prefix="emnist-balanced-")
    write_cifar10(root, per_batch=24, n_test=40)
    write_svhn(root, n_train=120, n_test=40)
    write_celeba(root, n=64)
    grey, colour = ["kmnist", "emnist"], ["cifar10", "svhn", "celeba"]
    if (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        arrange_shared_mnist(root)  # the real MNIST test split (it stands in for the train split too)
        grey.insert(0, "mnist")
    elif real_data_required():
        pytest.fail(f"the real MNIST test split is required here but missing: {SHARED_MNIST}")
    runs = {}
    for names, model, sweep in ((grey, GREY_MODEL, tmp_path / "grey"), (colour, COLOUR_MODEL, tmp_path / "colour")):
        args = ["-m", f"dataset={','.join(names)}", f"dataset.root={root}", *SMALL, *model, f"hydra.sweep.dir={sweep}"]
        run_vae_train(args, cwd=tmp_path)
        runs.update({name: sweep / str(job) for job, name in enumerate(names)})
    shapes = {"cifar10": (3, 32, 32), "svhn": (3, 32, 32), "celeba": (3, 64, 64)}
    for name, run in runs.items():
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["dataset"] == name and math.isfinite(metrics["test/elbo"]) and metrics["test/kl"] >= 0
        ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
        channels, size, _ = shapes.get(name, (1, 28, 28))
        assert ckpt["config"]["model"]["arch"] == ("conv" if channels == 3 else "mlp"), name
        assert ckpt["config"]["dataset"]["channels"] == channels and ckpt["config"]["dataset"]["image_size"] == size
        # 8 samples, 3 per row, under a title line; tiles of at least 56 pixels (28 and 32 scaled 2x, 64 as is).
        grid = Image.open(run / "images" / "images_samples_epoch001.png")
        tile = {28: 58, 32: 66, 64: 66}[size]
        line = plots.LABEL_FONT_SIZE + 6
        assert grid.height == line + 3 * tile + 2 and grid.width >= 3 * tile + 2, (name, grid.size)
        log = (run / "vae-train.log").read_text()
        assert f"images of {channels}×{size}×{size}" in log


def test_image_folder_names_a_bad_file_then_trains_and_reuses_its_cache(tmp_path):
    images = tmp_path / "my images"
    for cls, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        (images / cls).mkdir(parents=True)
        for i in range(30):
            size = (20 + i, 24)  # mixed sizes
            mode = ["RGB", "RGBA", "L", "P"][i % 4]
            img = Image.new("RGB", size, colour).convert(mode)
            img.save(images / cls / f"{i}.png")
    (images / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    args = ["dataset=image_folder", f"dataset.root={images}", "dataset.image_size=16", *SMALL]

    failed = run_vae_train(args, cwd=tmp_path, check=False)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert str(images / "red" / "broken.png") in failed.stderr and "skip_bad_files=true" in failed.stderr

    (images / "red" / "broken.png").unlink()
    first = run_vae_train([*args, "hydra.run.dir=run1"], cwd=tmp_path)
    assert "decoded 60 images into the cache" in first.stdout + first.stderr
    # Second run: from the cache, and (budget 0 MiB) streaming the training split through DataLoader workers.
    second = run_vae_train([*args, "dataset.memory_budget_mb=0", "hydra.run.dir=run2"], cwd=tmp_path)
    assert "decoded images from the cache" in second.stdout + second.stderr
    assert "(training split streamed from disk)" in second.stdout + second.stderr
    for run in ("run1", "run2"):
        metrics = json.loads((tmp_path / run / "metrics.json").read_text())
        assert metrics["dataset"] == "image_folder" and math.isfinite(metrics["test/elbo"])
    assert len(list((images / ".vae-cli-cache").glob("image_folder-*/images.npy"))) == 1

import gzip
import shutil

import pytest
import torch

from tests.conftest import DEBIAN_FASHION, SHARED_MNIST, need_path
from vae_cli.config import DatasetConfig
from vae_cli.data import IDX_FILES, IndexBatches, load_dataset, stage_idx_files
from vae_cli.errors import DataError


def synthetic(**kw):
    return DatasetConfig(**{"name": "synthetic", "num_train": 300, "num_test": 50, "val_size": 40, **kw})


def test_synthetic_splits_shapes_and_types():
    data = load_dataset(synthetic(), seed=0)
    assert data.train.shape == (260, 1, 28, 28) and data.train.dtype == torch.uint8
    assert data.val.shape == (40, 1, 28, 28) and data.test.shape == (50, 1, 28, 28)
    assert data.train_labels.shape == (260,) and data.train_labels.dtype == torch.int64


def test_val_split_is_seeded_and_disjoint_from_train():
    a, b, c = (load_dataset(synthetic(), seed=s) for s in (0, 0, 1))
    assert torch.equal(a.val, b.val) and torch.equal(a.train, b.train)
    assert not torch.equal(a.val, c.val)
    # Rows are distinct images (noise), so disjointness can be checked on the pixels.
    train_rows = {bytes(t.flatten().tolist()) for t in a.train}
    assert all(bytes(v.flatten().tolist()) not in train_rows for v in a.val)


def test_subset_takes_the_first_n_training_images():
    full = load_dataset(synthetic(), seed=0)
    sub = load_dataset(synthetic(subset=32), seed=0)
    assert torch.equal(sub.train, full.train[:32])
    assert torch.equal(sub.val, full.val)


def test_val_size_too_large_is_a_clear_error():
    with pytest.raises(DataError, match=r"dataset\.val_size"):
        load_dataset(synthetic(val_size=300), seed=0)


def test_files_that_disagree_with_the_configured_shape_are_a_clear_error(monkeypatch):
    from vae_cli import data as data_module

    def rgb_files(cfg):
        x = torch.zeros(100, 3, 32, 32, dtype=torch.uint8)
        y = torch.zeros(100, dtype=torch.long)
        return data_module.RawSplits(x, y, x[:10], y[:10])

    monkeypatch.setitem(data_module.BUILDERS, "rgb", rgb_files)
    with pytest.raises(DataError, match=r"\(3, 32, 32\).*\(1, 28, 28\)"):
        load_dataset(DatasetConfig(name="rgb", channels=1, image_size=28, val_size=10), seed=0)


def test_index_batches_cover_every_image_once_and_are_reproducible():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    batches = IndexBatches(images, batch_size=4, seed=3)
    assert len(batches) == 3
    epoch0 = torch.cat(list(batches.epoch(0))).flatten() * 255
    assert sorted(epoch0.round().long().tolist()) == list(range(10))
    again = torch.cat(list(batches.epoch(0))).flatten() * 255
    assert torch.equal(epoch0, again)
    assert not torch.equal(epoch0, torch.cat(list(batches.epoch(1))).flatten() * 255)
    # Starting mid-epoch yields exactly the remaining batches of that epoch.
    tail = torch.cat(list(batches.epoch(0, start_batch=1))).flatten() * 255
    assert torch.equal(tail, epoch0[4:])
    assert next(iter(batches.epoch(0))).dtype == torch.float32


def _arrange_mnist_root(tmp_path):
    """A root holding the real MNIST test split; it stands in for the train split too (only t10k is shipped)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for kind in ("images-idx3", "labels-idx1"):
        shutil.copy(SHARED_MNIST / f"t10k-{kind}-ubyte.gz", raw / f"t10k-{kind}-ubyte.gz")
        shutil.copy(SHARED_MNIST / f"t10k-{kind}-ubyte.gz", raw / f"train-{kind}-ubyte.gz")
    return tmp_path


def test_real_mnist_test_split_through_the_mnist_option(tmp_path):
    need_path(SHARED_MNIST / "t10k-images-idx3-ubyte.gz", "the real MNIST test split")
    root = _arrange_mnist_root(tmp_path)
    data = load_dataset(DatasetConfig(name="mnist", root=str(root), val_size=1000), seed=0)
    assert data.test.shape == (10_000, 1, 28, 28)
    assert data.train.shape == (9_000, 1, 28, 28)
    assert sorted(data.test_labels.unique().tolist()) == list(range(10))
    # Real digits: mostly background, with a bright stroke in every image.
    assert 0.05 < data.test.float().div(255).mean().item() < 0.25
    assert (data.test.flatten(1).max(1).values > 200).all()
    # The .gz files were staged uncompressed where torchvision reads them.
    assert all((root / "MNIST" / "raw" / name).is_file() for name in IDX_FILES)


def test_real_fashion_mnist_from_the_debian_install(tmp_path):
    need_path(DEBIAN_FASHION / "train-images-idx3-ubyte.gz", "Debian's dataset-fashion-mnist")
    data = load_dataset(DatasetConfig(name="fashion_mnist", root=str(tmp_path), val_size=5000), seed=0)
    assert data.train.shape == (55_000, 1, 28, 28) and data.val.shape == (5_000, 1, 28, 28)
    assert data.test.shape == (10_000, 1, 28, 28)
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10
    assert 0.2 < data.train[:5000].float().div(255).mean().item() < 0.4


def test_missing_dataset_is_one_paragraph_naming_the_place_and_the_fix(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset(DatasetConfig(name="mnist", root=str(tmp_path / "nowhere")), seed=0)
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "dataset.download=true" in message and "dataset.root" in message
    assert "\n" not in message


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="corrupt"):
        stage_idx_files(raw, ())
    assert not any(p.name.startswith(".") for p in raw.iterdir())  # no half-written temp file left


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    need_path(SHARED_MNIST / "t10k-images-idx3-ubyte.gz", "the real MNIST test split")
    root = _arrange_mnist_root(tmp_path)
    raw = root / "MNIST" / "raw"
    stage_idx_files(raw, ())
    blob = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset(DatasetConfig(name="mnist", root=str(root)), seed=0)


def test_gzip_roundtrip_helper_is_exact(tmp_path):
    need_path(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz", "the real MNIST test split")
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz", raw / "t10k-labels-idx1-ubyte.gz")
    stage_idx_files(raw, ())
    with gzip.open(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == f.read()

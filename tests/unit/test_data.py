"""Splits, index batches and the MNIST family (IDX files): real MNIST and Fashion-MNIST, and broken files."""

import gzip
import shutil
import time
from unittest import mock

import numpy as np
import pytest
import torch

from tests.conftest import DEBIAN_FASHION, SHARED_MNIST, need_path
from tests.dataset_files import arrange_shared_mnist, write_idx, write_mnist_like
from vae_cli.config.datasets import DatasetConfig
from vae_cli.datasets import IndexBatches, load_dataset, loader
from vae_cli.datasets.idx import read_idx
from vae_cli.datasets.splits import RawSplits
from vae_cli.process.errors import DataError


def synthetic(**kw):
    return DatasetConfig(**{"name": "synthetic", "num_train": 300, "num_test": 50, "val_size": 40, **kw})


def test_synthetic_splits_shapes_types_and_info():
    data = load_dataset(synthetic(), seed=0)
    assert data.train.shape == (260, 1, 28, 28) and data.train.dtype == torch.uint8
    assert data.val.shape == (40, 1, 28, 28) and data.test.shape == (50, 1, 28, 28)
    assert data.train_labels.shape == (260,) and data.train_labels.dtype == torch.int64
    assert data.info.image_shape == (1, 28, 28) and data.info.num_classes == 10 and not data.streamed


def test_val_split_is_seeded_and_disjoint_from_train():
    a, b, c = (load_dataset(synthetic(), seed=s) for s in (0, 0, 1))
    assert torch.equal(a.val, b.val) and torch.equal(a.train, b.train)
    assert not torch.equal(a.val, c.val)
    # Rows are distinct images (noise), so disjointness can be checked on the pixels.
    train_rows = {bytes(t.flatten().tolist()) for t in a.train}
    assert all(bytes(v.flatten().tolist()) not in train_rows for v in a.val)
    # The test split is untouched by the seed.
    assert torch.equal(a.test, c.test)


def test_subset_first_and_random():
    full = load_dataset(synthetic(), seed=0)
    first = load_dataset(synthetic(subset=32), seed=0)
    assert torch.equal(first.train, full.train[:32]) and torch.equal(first.val, full.val)
    rand_a = load_dataset(synthetic(subset=32, subset_mode="random"), seed=0)
    rand_b = load_dataset(synthetic(subset=32, subset_mode="random"), seed=1)
    assert rand_a.train.shape[0] == 32 and not torch.equal(rand_a.train, first.train)
    full_rows = {bytes(t.flatten().tolist()) for t in full.train}
    assert all(bytes(t.flatten().tolist()) in full_rows for t in rand_a.train)  # drawn from the training split
    assert not torch.equal(rand_a.train, rand_b.train)
    # val_size=0 keeps the file order, and the subset still applies.
    assert load_dataset(synthetic(val_size=0, subset=10), seed=0).train.shape[0] == 10


def test_val_size_too_large_is_a_clear_error():
    with pytest.raises(DataError, match=r"dataset\.val_size"):
        load_dataset(synthetic(val_size=300), seed=0)


def test_files_that_disagree_with_the_configured_shape_are_a_clear_error(monkeypatch):
    def rgb_files(cfg, parts):
        x = torch.zeros(100, 3, 32, 32, dtype=torch.uint8)
        y = torch.zeros(100, dtype=torch.long)
        return RawSplits(x, y, x[:10], y[:10])

    monkeypatch.setattr(loader, "builder", lambda name: rgb_files)
    with pytest.raises(DataError, match=r"\(3, 32, 32\).*\(1, 28, 28\)"):
        load_dataset(DatasetConfig(name="rgb", channels=1, image_size=28, val_size=10), seed=0)


def test_unknown_dataset_name_lists_the_choices():
    with pytest.raises(DataError, match=r"cifar10.*image_folder.*svhn"):
        load_dataset(DatasetConfig(name="imagenet"), seed=0)


def test_index_batches_cover_every_image_once_and_are_reproducible():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    batches = IndexBatches(images, batch_size=4, seed=3)
    assert len(batches) == 3
    epoch0 = torch.cat([x for x, _ in batches.epoch(0)]).flatten() * 255
    assert sorted(epoch0.round().long().tolist()) == list(range(10))
    again = torch.cat([x for x, _ in batches.epoch(0)]).flatten() * 255
    assert torch.equal(epoch0, again)
    assert not torch.equal(epoch0, torch.cat([x for x, _ in batches.epoch(1)]).flatten() * 255)
    # Starting mid-epoch yields exactly the remaining batches of that epoch.
    tail = torch.cat([x for x, _ in batches.epoch(0, start_batch=1)]).flatten() * 255
    assert torch.equal(tail, epoch0[4:])
    assert next(iter(batches.epoch(0)))[0].dtype == torch.float32


# ----- the MNIST family on real files -------------------------------------------------------------------------


def test_real_mnist_test_split_through_the_mnist_option(tmp_path):
    need_path(SHARED_MNIST / "t10k-images-idx3-ubyte.gz", "the real MNIST test split")
    root = arrange_shared_mnist(tmp_path)
    data = load_dataset(DatasetConfig(name="mnist", root=str(root), val_size=1000), seed=0)
    assert data.test.shape == (10_000, 1, 28, 28)
    assert data.train.shape == (9_000, 1, 28, 28)
    assert torch.bincount(data.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert data.class_names == tuple("0123456789")
    # Real digits: mostly background, with a bright stroke in every image.
    assert 0.05 < data.test.float().div(255).mean().item() < 0.25
    assert (data.test.flatten(1).max(1).values > 200).all()


def test_mnist_reader_agrees_with_torchvision_on_the_real_files(tmp_path):
    need_path(SHARED_MNIST / "t10k-images-idx3-ubyte.gz", "the real MNIST test split")
    import torchvision.datasets as tvd

    root = arrange_shared_mnist(tmp_path)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # torchvision reads uncompressed files
        with gzip.open(root / "MNIST" / "raw" / f"{name}.gz") as src:
            (root / "MNIST" / "raw" / name).write_bytes(src.read())
    with mock.patch.object(tvd.MNIST, "_check_exists", return_value=True):
        reference = tvd.MNIST(str(root), train=False)
    ours = load_dataset(DatasetConfig(name="mnist", root=str(root), val_size=0), seed=0)
    assert torch.equal(ours.test[:, 0], reference.data) and torch.equal(ours.test_labels, reference.targets)


def test_real_fashion_mnist_from_the_debian_install(tmp_path):
    need_path(DEBIAN_FASHION / "train-images-idx3-ubyte.gz", "Debian's dataset-fashion-mnist")
    data = load_dataset(DatasetConfig(name="fashion_mnist", root=str(tmp_path), val_size=5000), seed=0)
    assert data.train.shape == (55_000, 1, 28, 28) and data.val.shape == (5_000, 1, 28, 28)
    assert data.test.shape == (10_000, 1, 28, 28)
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10
    assert 0.2 < data.train[:5000].float().div(255).mean().item() < 0.4
    assert data.class_names[9] == "Ankle boot"
    # The first run keeps uncompressed copies in the root (torchvision's layout); the next run reads those.
    raw = tmp_path / "FashionMNIST" / "raw"
    with gzip.open(DEBIAN_FASHION / "t10k-labels-idx1-ubyte.gz") as f:
        assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == f.read()
    again = load_dataset(DatasetConfig(name="fashion_mnist", root=str(tmp_path), val_size=5000), seed=0)
    assert torch.equal(again.train, data.train) and torch.equal(again.test_labels, data.test_labels)


def test_a_replaced_gz_wins_over_its_stale_uncompressed_copy_and_read_only_roots_work(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_like(raw, n_train=50, n_test=20)
    first = load_dataset(DatasetConfig(name="mnist", root=str(tmp_path), val_size=0), seed=0)
    assert (raw / "t10k-labels-idx1-ubyte").is_file() and not [p for p in raw.iterdir() if p.name.startswith(".")]
    time.sleep(0.01)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.full(20, 3, dtype=np.uint8))  # newer .gz
    second = load_dataset(DatasetConfig(name="mnist", root=str(tmp_path), val_size=0), seed=0)
    assert second.test_labels.tolist() == [3] * 20 and not torch.equal(first.test_labels, second.test_labels)
    # Where the uncompressed copy cannot be written (here MNIST is a file, not a folder), the .gz is read as is.
    fresh = tmp_path / "ro"
    write_mnist_like(fresh, n_train=50, n_test=20)
    (fresh / "MNIST").write_text("in the way")
    data = load_dataset(DatasetConfig(name="mnist", root=str(fresh), val_size=0), seed=0)
    assert data.train.shape == (50, 1, 28, 28) and not list(fresh.glob("*-ubyte"))


def test_missing_dataset_is_one_paragraph_naming_the_place_and_the_fix(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset(DatasetConfig(name="mnist", root=str(tmp_path / "nowhere")), seed=0)
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "dataset.download=true" in message and "dataset.root" in message
    assert "\n" not in message


def test_files_dropped_straight_into_the_root_are_found(tmp_path):
    write_mnist_like(tmp_path, gz=False)  # no MNIST/raw/ folders, uncompressed
    data = load_dataset(DatasetConfig(name="mnist", root=str(tmp_path), val_size=50), seed=0)
    assert data.train.shape == (250, 1, 28, 28) and data.test.shape == (100, 1, 28, 28)


def test_corrupt_gzip_is_a_clear_error_naming_the_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_like(raw)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*corrupt or truncated.*download"):
        load_dataset(DatasetConfig(name="mnist", root=str(tmp_path)), seed=0)


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    need_path(SHARED_MNIST / "t10k-images-idx3-ubyte.gz", "the real MNIST test split")
    raw = arrange_shared_mnist(tmp_path) / "MNIST" / "raw"
    blob = gzip.decompress((raw / "train-images-idx3-ubyte.gz").read_bytes())
    (raw / "train-images-idx3-ubyte.gz").unlink()
    (raw / "train-images-idx3-ubyte").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError) as info:
        load_dataset(DatasetConfig(name="mnist", root=str(tmp_path)), seed=0)
    assert "train-images-idx3-ubyte is truncated or corrupt" in str(info.value)
    assert "10000x28x28" in str(info.value)


def test_truncated_gzip_stream_is_a_clear_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_like(raw)
    blob = (raw / "t10k-images-idx3-ubyte.gz").read_bytes()
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz"):
        load_dataset(DatasetConfig(name="mnist", root=str(tmp_path)), seed=0)


def test_html_page_saved_as_idx_and_swapped_files_are_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_like(raw, gz=False)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"<html>quota exceeded</html>")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is not an IDX file"):
        load_dataset(DatasetConfig(name="mnist", root=str(tmp_path)), seed=0)
    shutil.copy(raw / "train-images-idx3-ubyte", raw / "t10k-labels-idx1-ubyte")
    shutil.copy(raw / "train-labels-idx1-ubyte", raw / "t10k-images-idx3-ubyte")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte holds"):
        load_dataset(DatasetConfig(name="mnist", root=str(tmp_path)), seed=0)


def test_label_count_mismatch_is_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_like(raw)
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(DataError, match=r"\(7,\) labels.*300 images.*do not belong together"):
        load_dataset(DatasetConfig(name="mnist", root=str(tmp_path)), seed=0)


def test_read_idx_parses_other_types(tmp_path):
    values = np.arange(-6, 6, dtype=">i4").reshape(3, 4)
    path = write_idx(tmp_path / "x-idx2", values, gz=False)
    assert np.array_equal(read_idx(path), values) and read_idx(path).dtype == np.int32


def test_batch_size_above_a_known_training_split_is_refused_before_any_file_is_read():
    from tests.conftest import compose_config
    from vae_cli.config.validate import validate
    from vae_cli.process.errors import ConfigError

    for overrides, n in (
        (["dataset=emnist", "dataset.split=digits", "dataset.val_size=0", "trainer.batch_size=240001"], 240_000),
        (["dataset=cifar10", "trainer.batch_size=45001"], 45_000),
        (["dataset=svhn", "dataset.val_size=257", "trainer.batch_size=73001"], 73_000),
    ):
        with pytest.raises(ConfigError, match=f"\\({n} images of"):
            validate(compose_config(overrides))
    validate(compose_config(["dataset=cifar10", "trainer.batch_size=45000"]))

"""KMNIST, EMNIST, CIFAR-10, SVHN and CelebA readers on small files written in each real on-disk format."""

import pickle
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from tests.dataset_files import (
    CELEBA_ATTRS,
    CIFAR_NAMES,
    pattern_images,
    write_celeba,
    write_cifar10,
    write_mat,
    write_mnist_like,
    write_svhn,
)
from vae_cli.config.datasets import DatasetConfig
from vae_cli.datasets import load_dataset
from vae_cli.datasets.matlab import read_mat
from vae_cli.process.errors import DataError


def cfg(name, root, **kw):
    return DatasetConfig(name=name, root=str(root), **{"val_size": 20, **kw})


def test_kmnist_reads_its_own_folder_with_its_class_names(tmp_path):
    write_mnist_like(tmp_path / "KMNIST" / "raw")
    data = load_dataset(cfg("kmnist", tmp_path), seed=0)
    assert data.train.shape == (280, 1, 28, 28) and data.test.shape == (100, 1, 28, 28)
    assert data.class_names[:3] == ("o", "ki", "su")
    expected_test, labels = pattern_images(100, seed=1)
    assert torch.equal(data.test[:, 0], torch.from_numpy(expected_test))
    assert torch.equal(data.test_labels, torch.from_numpy(labels))


def test_emnist_split_option_picks_files_and_classes_and_turns_images_upright(tmp_path):
    raw = tmp_path / "EMNIST" / "raw"
    write_mnist_like(raw, prefix="emnist-letters-")
    write_mnist_like(raw, n_train=50, n_test=30, prefix="emnist-digits-")
    letters = load_dataset(cfg("emnist", tmp_path, split="letters"), seed=0)
    assert letters.class_names[0] == "N/A" and letters.class_names[1] == "a" and len(letters.class_names) == 27
    stored, _ = pattern_images(100, seed=1)
    # The files store every image transposed; the loader returns them upright.
    assert torch.equal(letters.test[:, 0], torch.from_numpy(stored).transpose(1, 2))
    digits = load_dataset(cfg("emnist", tmp_path, split="digits"), seed=0)
    assert digits.test.shape[0] == 30 and digits.class_names == tuple("0123456789")
    with pytest.raises(DataError, match="emnist-balanced-train-images-idx3-ubyte"):
        load_dataset(cfg("emnist", tmp_path, split="balanced"), seed=0)


def test_cifar10_batches_read_with_names_and_agree_with_torchvision(tmp_path):
    write_cifar10(tmp_path)
    data = load_dataset(cfg("cifar10", tmp_path, channels=3, image_size=32), seed=0)
    assert data.train.shape == (280, 3, 32, 32) and data.test.shape == (100, 3, 32, 32)
    assert data.class_names == tuple(CIFAR_NAMES)
    expected, labels = pattern_images(100, 32, 32, 3, seed=5)
    assert torch.equal(data.test, torch.from_numpy(expected).permute(0, 3, 1, 2))
    assert torch.equal(data.test_labels, torch.from_numpy(labels))

    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as tvc

    with mock.patch.object(tvc, "check_integrity", return_value=True):  # test files have no official md5
        reference = tvd.CIFAR10(str(tmp_path), train=False)
    assert np.array_equal(reference.data, data.test.permute(0, 2, 3, 1).numpy())


def test_cifar10_truncated_or_malicious_batch_is_refused_by_name(tmp_path):
    base = write_cifar10(tmp_path)
    blob = (base / "data_batch_3").read_bytes()
    (base / "data_batch_3").write_bytes(blob[: len(blob) // 3])
    with pytest.raises(DataError, match=r"data_batch_3 could not be read.*truncated or corrupt"):
        load_dataset(cfg("cifar10", tmp_path, channels=3, image_size=32), seed=0)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (base / "data_batch_3").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(DataError, match=r"builtins\.print"):
        load_dataset(cfg("cifar10", tmp_path, channels=3, image_size=32), seed=0)


def test_cifar10_missing_files_are_listed(tmp_path):
    base = write_cifar10(tmp_path)
    (base / "test_batch").unlink()
    with pytest.raises(DataError, match=r"missing: test_batch.*cifar-10-python\.tar\.gz"):
        load_dataset(cfg("cifar10", tmp_path, channels=3, image_size=32), seed=0)


@pytest.mark.parametrize("compress", [True, False])
def test_svhn_mat_files_read_with_zero_relabelled(tmp_path, compress):
    write_svhn(tmp_path, compress=compress)
    data = load_dataset(cfg("svhn", tmp_path, channels=3, image_size=32), seed=0)
    assert data.train.shape == (280, 3, 32, 32) and data.test.shape == (100, 3, 32, 32)
    expected, labels = pattern_images(100, 32, 32, 3, seed=1)
    assert torch.equal(data.test, torch.from_numpy(expected).permute(0, 3, 1, 2))
    assert torch.equal(data.test_labels, torch.from_numpy(labels))  # 10 in the file -> digit 0
    assert (data.test_labels == 0).any()


def test_matlab_reader_casts_small_storage_to_the_array_class(tmp_path):
    y = np.array([[1.0], [10.0], [7.0]])
    write_mat(tmp_path / "y.mat", {"y": y}, compress=False, small_storage=True)
    assert b"\x02\x00\x00\x00\x03\x00\x00\x00\x01\x0a\x07" in (tmp_path / "y.mat").read_bytes()  # miUINT8, 3 bytes
    arrays = read_mat(tmp_path / "y.mat")
    assert arrays["y"].dtype == np.float64 and np.array_equal(arrays["y"], y)


def test_matlab_reader_agrees_with_scipy_when_scipy_is_installed(tmp_path):
    sio = pytest.importorskip("scipy.io")
    x = np.random.default_rng(0).integers(0, 255, (32, 32, 3, 5), dtype=np.uint8)
    y = np.arange(1, 6, dtype=np.float64).reshape(5, 1)
    for compress in (True, False):
        sio.savemat(tmp_path / "a.mat", {"X": x, "y": y}, do_compression=compress)
        arrays = read_mat(tmp_path / "a.mat")
        assert np.array_equal(arrays["X"], x) and np.array_equal(arrays["y"], y)
        write_mat(tmp_path / "b.mat", {"X": x, "y": y}, compress)
        loaded = sio.loadmat(tmp_path / "b.mat")
        assert np.array_equal(loaded["X"], x) and np.array_equal(loaded["y"], y)


def test_svhn_truncated_v73_and_wrong_content_are_named(tmp_path):
    base = write_svhn(tmp_path)
    blob = (base / "train_32x32.mat").read_bytes()
    (base / "train_32x32.mat").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"train_32x32\.mat could not be read.*truncated or corrupt"):
        load_dataset(cfg("svhn", tmp_path, channels=3, image_size=32), seed=0)
    (base / "train_32x32.mat").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    with pytest.raises(DataError, match=r"v7\.3 files are HDF5"):
        load_dataset(cfg("svhn", tmp_path, channels=3, image_size=32), seed=0)
    write_mat(base / "train_32x32.mat", {"images": np.zeros((4, 4), dtype=np.uint8)})
    with pytest.raises(DataError, match=r"holds \{'images': \(4, 4\)\}.*not an SVHN"):
        load_dataset(cfg("svhn", tmp_path, channels=3, image_size=32), seed=0)


def test_celeba_partitions_crop_and_attribute_labels(tmp_path):
    write_celeba(tmp_path, n=48)
    data = load_dataset(cfg("celeba", tmp_path, channels=3, image_size=64, val_size=8, crop_size=148), seed=0)
    # partitions cycle 0,0,0,0,0,0,1,2 by file number: 6 test images of 48, train+valid pooled.
    assert data.test.shape == (6, 3, 64, 64) and data.train.shape[0] + data.val.shape[0] == 42
    assert data.class_names == () and (data.test_labels == -1).all()
    # The 148-pixel centre crop holds the disc (radius 50 of 74): the centre is bright, the corners dark.
    img = data.test[0].float()
    assert img[:, 28:36, 28:36].mean() > 140 and img[:, :4, :4].mean() < 40
    labelled = load_dataset(
        cfg("celeba", tmp_path, channels=3, image_size=64, val_size=8, crop_size=148, label_attribute="Smiling"),
        seed=0,
    )
    assert labelled.class_names == ("not Smiling", "Smiling")
    attr = (tmp_path / "celeba" / "list_attr_celeba.txt").read_text().splitlines()[2:]
    smiling = {line.split()[0]: line.split()[1 + CELEBA_ATTRS.index("Smiling")] == "1" for line in attr}
    test_files = sorted(f for f in smiling if int(f[:6]) % 8 == 7)
    assert labelled.test_labels.tolist() == [int(smiling[f]) for f in test_files]
    with pytest.raises(DataError, match=r"not a column.*Smiling"):
        load_dataset(cfg("celeba", tmp_path, channels=3, image_size=64, val_size=8, label_attribute="Smile"), seed=0)


def test_celeba_missing_files_give_the_manual_download_layout(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset(cfg("celeba", tmp_path, channels=3, image_size=64), seed=0)
    assert str(tmp_path / "celeba" / "img_align_celeba") in str(info.value) and "by hand" in str(info.value)
    base = write_celeba(tmp_path, n=16)
    (base / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(DataError, match=r"1 of the 16 images.*000003\.jpg.*skip_bad_files"):
        load_dataset(cfg("celeba", tmp_path, channels=3, image_size=64, val_size=2), seed=0)
    data = load_dataset(cfg("celeba", tmp_path, channels=3, image_size=64, val_size=2, skip_bad_files=True), seed=0)
    assert data.train.shape[0] + data.val.shape[0] + data.test.shape[0] == 15
    Image.new("RGB", (4, 4)).save(base / "img_align_celeba" / "000003.jpg")
    (base / "list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(DataError, match=r"list_eval_partition\.txt line 1"):
        load_dataset(cfg("celeba", tmp_path, channels=3, image_size=64), seed=0)


def test_download_true_asks_torchvision_then_reads_what_it_wrote(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    class FakeKMNIST:  # stands in for the network: writes the files where torchvision's KMNIST would
        def __init__(self, root, download=False, **kwargs):
            calls.append((root, download, kwargs))
            write_mnist_like(Path(root) / "KMNIST" / "raw", n_train=60, n_test=20)

    monkeypatch.setattr(tvd, "KMNIST", FakeKMNIST)
    data = load_dataset(cfg("kmnist", tmp_path, download=True, val_size=10), seed=0)
    assert calls == [(str(tmp_path.resolve()), True, {})] and data.train.shape[0] == 50
    load_dataset(cfg("kmnist", tmp_path, download=True, val_size=10), seed=0)
    assert len(calls) == 1  # files present: no second download

    class Offline:
        def __init__(self, root, download=False, **kwargs):
            raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd, "CIFAR10", Offline)
    with pytest.raises(DataError) as info:
        load_dataset(cfg("cifar10", tmp_path / "c", download=True, channels=3, image_size=32), seed=0)
    assert "Downloading 'cifar10' through torchvision" in str(info.value) and "name resolution" in str(info.value)
    assert "docs/datasets.md" in str(info.value) and "Traceback" not in str(info.value)

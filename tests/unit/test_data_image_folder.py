"""dataset=image_folder on folders the tests write with PIL: every mode, mixed sizes, labels, cache, bad files."""

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from vae_cli.config.datasets import DatasetConfig
from vae_cli.datasets import IndexBatches, StreamingBatches, decode, load_dataset
from vae_cli.datasets.decode import DecodeSpec, decode_image
from vae_cli.process.errors import DataError


def folder_cfg(root, **kw):
    base = {"name": "image_folder", "root": str(root), "val_size": 2, "image_size": 8, "channels": 3}
    return DatasetConfig(**{**base, **kw})


def write_pngs(folder, n, color=(200, 30, 30), size=(12, 10), mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new(mode, size, color).save(folder / f"{i:03d}.png")


def grey_value(path, channels=1, **kw):
    arr = decode_image(path, DecodeSpec(image_size=4, channels=channels, **kw))
    assert arr.shape == (channels, 4, 4) and arr.dtype == np.uint8
    return arr


@pytest.mark.parametrize(
    "mode, value, expected_grey",
    [
        ("L", 77, 77),
        ("RGB", (77, 77, 77), 77),
        ("1", 1, 255),
        ("I;16", 257 * 77, 77),  # 16-bit grey is scaled, not clipped to white
        ("I", 257 * 77, 77),
        ("CMYK", (0, 0, 0, 255 - 77), 77),
        ("LA", (77, 255), 77),
        ("RGBA", (77, 77, 77, 255), 77),
        ("RGBA", (10, 10, 10, 0), 255),  # fully transparent: the background (white)
        ("F", 0.5, 128),
    ],
)
def test_every_mode_becomes_the_right_grey(tmp_path, mode, value, expected_grey):
    # CMYK comes as JPEG in practice; PNG cannot hold float or 32-bit integer images, TIFF can.
    path = tmp_path / {"CMYK": "x.jpg", "F": "x.tiff", "I": "x.tiff"}.get(mode, "x.png")
    Image.new(mode, (6, 6), value).save(path)
    assert abs(int(grey_value(path).mean()) - expected_grey) <= 1


def test_palette_with_a_transparent_colour_and_rgb_targets(tmp_path):
    img = Image.new("P", (6, 6), 0)
    img.putpalette([200, 0, 0] + [0, 0, 200] * 255)
    img.putpixel((0, 0), 1)
    img.info["transparency"] = 1
    img.save(tmp_path / "p.png", transparency=1)
    rgb = decode_image(tmp_path / "p.png", DecodeSpec(image_size=6, channels=3, background=0))
    assert rgb[:, 3, 3].tolist() == [200, 0, 0] and rgb[:, 0, 0].tolist() == [0, 0, 0]
    grey16 = Image.fromarray(np.full((6, 6), 65535, dtype=np.uint16))
    grey16.save(tmp_path / "g16.png")
    assert decode_image(tmp_path / "g16.png", DecodeSpec(image_size=4, channels=3)).min() == 255


def test_resize_policies_on_a_wide_image(tmp_path):
    pixels = np.zeros((10, 30), dtype=np.uint8)
    pixels[:, :10] = 255  # white left third
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    crop = grey_value(tmp_path / "wide.png", resize="center_crop")
    stretch = grey_value(tmp_path / "wide.png", resize="stretch")
    pad = grey_value(tmp_path / "wide.png", resize="pad", background=128)
    assert crop.max() < 30  # the centre square is the black middle third
    assert stretch[0, :, 0].min() > 200 and stretch[0, :, -1].max() < 30
    assert pad[0, 0, 0] == 128 and pad[0, 0, :].tolist() == [128] * 4  # letterbox bands above and below


def test_mixed_modes_sizes_and_formats_in_one_folder_with_class_labels(tmp_path):
    root = tmp_path / "imgs"
    write_pngs(root / "cats", 4, (255, 0, 0), (20, 16))
    for i, mode in enumerate(["L", "RGBA", "P", "CMYK", "I;16", "1"]):
        (root / "dogs").mkdir(parents=True, exist_ok=True)
        suffix = ".jpeg" if mode == "CMYK" else ".png"
        Image.new(mode, (9 + i, 31), 1 if mode == "1" else 0).save(root / "dogs" / f"{mode.replace(';', '')}{suffix}")
    Image.new("RGB", (40, 40), (0, 255, 0)).save(root / "dogs" / "photo.JPG", quality=95)
    Image.new("RGB", (5, 5), (0, 0, 255)).save(root / "dogs" / "tiny.webp")
    Image.new("RGB", (64, 8), (0, 0, 255)).save(root / "dogs" / "strip.bmp")
    (root / "dogs" / "notes.txt").write_text("not an image")
    data = load_dataset(folder_cfg(root, val_size=2, test_fraction=0.2), seed=0)
    n = data.train.shape[0] + data.val.shape[0] + data.test.shape[0]
    assert n == 4 + 6 + 3 and data.test.shape[0] == 3
    assert data.image_shape == (3, 8, 8) and data.class_names == ("cats", "dogs")
    labels = torch.cat([data.train_labels, data.val_labels, data.test_labels])
    assert sorted(labels.tolist()) == [0] * 4 + [1] * 9
    everything = torch.cat([data.train, data.val, data.test]).float()
    assert torch.isfinite(everything).all()


def test_train_test_subfolders_are_the_official_split(tmp_path):
    write_pngs(tmp_path / "train" / "a", 6, (10, 10, 10))
    write_pngs(tmp_path / "train" / "b", 6, (240, 240, 240))
    write_pngs(tmp_path / "test" / "a", 3, (10, 10, 10))
    data = load_dataset(folder_cfg(tmp_path, val_size=2), seed=0)
    assert data.test.shape[0] == 3 and data.train.shape[0] + data.val.shape[0] == 12
    assert data.test_labels.tolist() == [0, 0, 0] and data.class_names == ("a", "b")
    assert data.test.float().mean() < 20


def test_unlabelled_folder_and_a_test_split_independent_of_the_seed(tmp_path):
    for i in range(20):
        Image.new("L", (8, 8), i * 10).save(tmp_path / f"{i}.png")
    a = load_dataset(folder_cfg(tmp_path, channels=1, test_fraction=0.25), seed=0)
    b = load_dataset(folder_cfg(tmp_path, channels=1, test_fraction=0.25), seed=5)
    assert a.class_names == () and (a.train_labels == -1).all()
    assert a.test.shape[0] == 5 and torch.equal(a.test, b.test) and not torch.equal(a.val, b.val)


def test_cache_second_load_decodes_nothing_and_edits_invalidate_it(tmp_path, monkeypatch):
    write_pngs(tmp_path, 10, (100, 150, 200))
    first = load_dataset(folder_cfg(tmp_path), seed=0)
    entries = list((tmp_path / ".vae-cli-cache").iterdir())
    assert len(entries) == 1 and (entries[0] / "images.npy").is_file()
    assert not [p for p in (tmp_path / ".vae-cli-cache").iterdir() if ".tmp-" in p.name]

    calls = []
    real = decode.decode_image
    monkeypatch.setattr(decode, "decode_image", lambda p, s: calls.append(p) or real(p, s))
    second = load_dataset(folder_cfg(tmp_path), seed=0)
    assert calls == [] and torch.equal(first.train, second.train) and torch.equal(first.test, second.test)

    Image.new("RGB", (12, 10), (0, 0, 0)).save(tmp_path / "003.png")  # same name, new content
    later = time.time() + 5
    os.utime(tmp_path / "003.png", (later, later))
    third = load_dataset(folder_cfg(tmp_path), seed=0)
    assert len(calls) == 10 and len(list((tmp_path / ".vae-cli-cache").iterdir())) == 2
    assert not torch.equal(
        torch.cat([first.train, first.val, first.test]), torch.cat([third.train, third.val, third.test])
    )
    load_dataset(folder_cfg(tmp_path, image_size=4), seed=0)  # other preprocessing: another entry
    assert len(list((tmp_path / ".vae-cli-cache").iterdir())) == 3


def test_unwritable_cache_folder_still_loads(tmp_path):
    write_pngs(tmp_path / "imgs", 6)
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the cache folder should be")
    data = load_dataset(folder_cfg(tmp_path / "imgs", cache_dir=str(blocker / "cache")), seed=0)
    assert data.train.shape[0] + data.val.shape[0] + data.test.shape[0] == 6


def test_corrupt_and_truncated_images_are_named_or_skipped(tmp_path):
    write_pngs(tmp_path, 8)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    Image.new("RGB", (50, 50), (1, 2, 3)).save(tmp_path / "cut.png")
    blob = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError) as info:
        load_dataset(folder_cfg(tmp_path, cache=False), seed=0)
    message = str(info.value)
    assert (
        "2 image file(s)" in message and str(tmp_path / "bad.jpg") in message and str(tmp_path / "cut.png") in message
    )
    assert "skip_bad_files=true" in message and "\n" not in message
    data = load_dataset(folder_cfg(tmp_path, cache=False, skip_bad_files=True), seed=0)
    assert data.train.shape[0] + data.val.shape[0] + data.test.shape[0] == 8


def test_missing_root_empty_folder_and_folder_without_images(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'} does not exist.*dataset.root="):
        load_dataset(folder_cfg(tmp_path / "nope"), seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"found no images under .*empty \(it is empty\)"):
        load_dataset(folder_cfg(tmp_path / "empty"), seed=0)
    (tmp_path / "gifs").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "gifs" / "a.gif")
    with pytest.raises(DataError, match=r"holds 1 other files \(e.g. a.gif\).*\.png, \.jpg"):
        load_dataset(folder_cfg(tmp_path / "gifs"), seed=0)


def test_over_the_memory_budget_the_training_split_streams_the_same_batches(tmp_path):
    for i in range(40):
        Image.new("L", (8, 8), i * 6).save(tmp_path / f"{i:02d}.png")
    in_memory = load_dataset(folder_cfg(tmp_path, channels=1, val_size=4), seed=0)
    streamed = load_dataset(folder_cfg(tmp_path, channels=1, val_size=4, memory_budget_mb=0), seed=0)
    assert streamed.streamed and not in_memory.streamed
    assert streamed.train.shape == in_memory.train.shape and torch.equal(streamed.val, in_memory.val)
    expected = [x for x, _ in IndexBatches(in_memory.train, 7, seed=3).epoch(1, start_batch=2)]  # 32 images: 5 batches
    for workers in (0, 1):
        got = [
            x for x, _ in StreamingBatches(streamed.train, 7, 3, torch.device("cpu"), num_workers=workers).epoch(1, 2)
        ]
        assert len(got) == len(expected) == 3
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_a_full_disk_while_caching_is_a_clear_error_and_leaves_no_partial_entry(tmp_path, monkeypatch):
    import errno

    from vae_cli.datasets import cache

    write_pngs(tmp_path, 6)

    def no_space(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "_reserve", no_space)
    with pytest.raises(DataError, match=r"No space left on device.*dataset\.cache_dir=.*dataset\.cache=false"):
        load_dataset(folder_cfg(tmp_path), seed=0)
    assert list((tmp_path / ".vae-cli-cache").iterdir()) == []


@pytest.mark.parametrize(
    "resize, crop", [("center_crop", None), ("center_crop", 148), ("pad", None), ("stretch", None), ("stretch", 100)]
)
def test_reduced_scale_jpeg_decoding_gives_the_same_picture(tmp_path, monkeypatch, resize, crop):
    yy, xx = np.mgrid[0:218, 0:178]
    pixels = np.stack([xx * 255 // 177, yy * 255 // 217, (xx + yy) * 255 // 394], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "g.jpg", quality=95)
    spec = DecodeSpec(image_size=16, channels=3, resize=resize, crop_size=crop)
    reduced = decode_image(tmp_path / "g.jpg", spec).astype(int)
    monkeypatch.setattr(decode, "_draft_size", lambda size, spec: size)  # full-resolution decode
    full = decode_image(tmp_path / "g.jpg", spec).astype(int)
    assert np.abs(reduced - full).mean() < 2.0

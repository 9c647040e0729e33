"""Binarization (dynamic, static threshold, static sample), dequantization and flips: values and reproducibility."""

import pytest
import torch

from tests.conftest import compose_config
from vae_cli.config.datasets import DatasetConfig
from vae_cli.config.validate import validate
from vae_cli.datasets import BatchPreprocess, IndexBatches, load_dataset
from vae_cli.process.errors import ConfigError


def synthetic(**kw):
    return DatasetConfig(**{"name": "synthetic", "num_train": 200, "num_test": 50, "val_size": 40, **kw})


def grey_images(n=64, value=64):
    return torch.full((n, 1, 8, 8), value, dtype=torch.uint8)


def test_dynamic_binarization_resamples_each_epoch_and_replays_after_resume():
    images = grey_images(value=64)  # p = 64/255
    batches = IndexBatches(images, 16, seed=1, preprocess=BatchPreprocess(1, dynamic_binarize=True))
    epoch0 = [x for x, _ in batches.epoch(0)]
    x = torch.cat(epoch0)
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert abs(x.mean().item() - 64 / 255) < 0.03  # 4096 Bernoulli draws
    assert torch.equal(torch.cat([x for x, _ in batches.epoch(0)]), x)
    assert not torch.equal(torch.cat([x for x, _ in batches.epoch(1)]), x)
    # A resume at batch 2 draws the same pixels as the uninterrupted epoch.
    assert all(
        torch.equal(a, b) for a, b in zip([x for x, _ in batches.epoch(0, start_batch=2)], epoch0[2:], strict=True)
    )
    other_seed = IndexBatches(images, 16, seed=2, preprocess=BatchPreprocess(2, dynamic_binarize=True))
    assert not torch.equal(torch.cat([x for x, _ in other_seed.epoch(0)]), x)


def test_dynamic_mode_evaluates_on_one_fixed_sample():
    a = load_dataset(synthetic(binarize="dynamic"), seed=0)
    b = load_dataset(synthetic(binarize="dynamic"), seed=3)
    plain = load_dataset(synthetic(), seed=0)
    assert set(a.test.unique().tolist()) == {0, 255} and torch.equal(a.test, b.test)
    assert set(a.val.unique().tolist()) == {0, 255}
    assert torch.equal(a.train, plain.train)  # training pixels stay grey: resampled per batch
    assert abs(a.test.float().mean().item() - plain.test.float().mean().item()) < 3


def test_static_threshold_and_static_sample():
    plain = load_dataset(synthetic(), seed=0)
    thr = load_dataset(synthetic(binarize="static_threshold", threshold=0.3), seed=0)
    assert torch.equal(thr.train, (plain.train > 0.3 * 255).to(torch.uint8) * 255)
    s1 = load_dataset(synthetic(binarize="static_sample"), seed=0)
    s2 = load_dataset(synthetic(binarize="static_sample"), seed=0)
    assert set(s1.train.unique().tolist()) == {0, 255} and torch.equal(s1.train, s2.train)
    assert abs(s1.train.float().mean().item() - plain.train.float().mean().item()) < 3
    # Fixed per run: every epoch sees the same binary pixels.
    batches = IndexBatches(s1.train, 32, seed=0, preprocess=BatchPreprocess.from_config(synthetic(), 0))
    one, two = (torch.cat([x for x, _ in batches.epoch(e)]) for e in (0, 1))
    assert torch.equal(one.sum(0), two.sum(0)) and set(one.unique().tolist()) == {0.0, 1.0}


def test_dequantization_noise_is_one_grey_level_around_the_pixel():
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    pre = BatchPreprocess(0, dequantize=True)
    x = pre(images, epoch=0, batch_index=0)
    exact = images.float() / 255
    assert (x - exact).abs().max() <= 0.5 / 255 + 1e-6 and (x != exact).float().mean() > 0.9
    assert x.min() >= 0 and x.max() <= 1
    assert abs((x - exact).mean().item()) < 0.05 / 255
    assert torch.equal(pre(images, 0, 0), x) and not torch.equal(pre(images, 0, 1), x)


def test_horizontal_flips_are_opt_in_per_sample_and_exact():
    images = torch.arange(8, dtype=torch.uint8).repeat(32, 1, 8, 1)  # rows 0..7 left to right
    assert torch.equal(BatchPreprocess(0)(images, 0, 0), images.float() / 255)
    x = BatchPreprocess(0, hflip=True)(images, 0, 0)
    flipped = (x[:, 0, 0, 0] > x[:, 0, 0, -1]).float()
    assert 0.2 < flipped.mean() < 0.8  # some, not all
    for i in range(32):
        expected = images[i].flip(-1) if flipped[i] else images[i]
        assert torch.equal(x[i], expected.float() / 255)


def test_static_threshold_per_batch_when_streamed():
    pre = BatchPreprocess.from_config(DatasetConfig(name="x", binarize="static_threshold", threshold=0.5), 0, True)
    x = pre(torch.tensor([[[[100, 200]]]], dtype=torch.uint8), 0, 0)
    assert x.flatten().tolist() == [0.0, 1.0]


def test_contradictory_or_out_of_range_preprocessing_is_refused_at_start():
    cfg = compose_config(["dataset.dequantize=true", "dataset.binarize=dynamic", "dataset.threshold=2"])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert "dataset.dequantize=true" in str(info.value) and "dataset.threshold must be in [0, 1]" in str(info.value)


def test_uint8_threshold_matches_the_grey_level_rule_for_every_pixel_value():
    from vae_cli.datasets.preprocess import threshold_uint8

    pixels = torch.arange(256, dtype=torch.uint8)
    for t in (0.0, 0.3, 0.5, 128 / 255, 0.999, 1.0):
        assert torch.equal(threshold_uint8(pixels, t) == 255, pixels.double() / 255 > t), t

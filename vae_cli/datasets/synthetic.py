"""``dataset=synthetic``: ten classes of smooth random patterns plus pixel noise, generated in memory.

Tiny, learnable, and needs no files; deterministic for a given config (fixed generator seed), so tests get the
same data every time.
"""

from __future__ import annotations

import torch

from vae_cli.config.datasets import DatasetConfig
from vae_cli.datasets.splits import BOTH, Parts, RawSplits


def load_synthetic(cfg: DatasetConfig, parts: Parts = BOTH) -> RawSplits:
    """Generated in milliseconds: both splits always (``parts`` changes nothing), the same for every seed."""
    g = torch.Generator().manual_seed(1234)
    c, s = cfg.channels, cfg.image_size
    coarse = torch.rand(10, c, max(2, s // 4), max(2, s // 4), generator=g)
    templates = torch.nn.functional.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=False)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, 10, (n,), generator=g)
        images = templates[labels] + 0.1 * torch.randn(n, c, s, s, generator=g)
        return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels

    train, train_labels = make(cfg.num_train)
    test, test_labels = make(cfg.num_test)
    return RawSplits(train, train_labels, test, test_labels, tuple(f"pattern {i}" for i in range(10)))

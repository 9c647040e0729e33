"""Scoring generated images against a real split: features of both, then FID, KID and precision/recall."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vae_cli.evaluation.sample_quality.features import FeatureNetwork
from vae_cli.evaluation.sample_quality.metrics import SampleScores, score_features
from vae_cli.models.protocol import Model
from vae_cli.process import progress

FEATURE_BATCH = 500


@dataclass
class SampleQualityResult:
    entry: str  # the eval.json entry: samples_<sampler key>
    sampler: str
    sampler_description: str
    num_samples: int
    real_split: str
    num_real: int
    feature_network: str  # the network's key: numbers of two keys are never compared
    feature_label: str
    comparable_with_literature: bool
    seed: int
    scores: SampleScores
    seconds: float

    def to_dict(self) -> dict[str, object]:
        out = {k: v for k, v in self.__dict__.items() if k != "scores"}
        return {**out, **self.scores.to_dict()}


@torch.no_grad()
def features(net: FeatureNetwork, images: torch.Tensor, what: str) -> torch.Tensor:
    """Features ``[N, F]`` (float64, CPU) of images in [0, 1] ``[N, C, H, W]``."""
    out = []
    for chunk in progress.tracked(images.split(FEATURE_BATCH), what, total=-(-images.shape[0] // FEATURE_BATCH)):
        out.append(net(chunk).double().cpu())
    return torch.cat(out)


@torch.no_grad()
def generate(
    model: Model, draw: Callable[[int, torch.Generator], torch.Tensor] | None, n: int, seed: int
) -> torch.Tensor:
    """``n`` images in [0, 1] (the decoder's mean image: the likelihood's expectation), decoded from codes drawn by
    ``draw``, or (None) the model's own samples (``model.sample``: its prior, whatever its latent is: a hierarchy's
    layers, a VQ-VAE's PixelCNN codes)."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    for start in range(0, n, FEATURE_BATCH):
        count = min(FEATURE_BATCH, n - start)
        if draw is None:
            params = model.sample(count, generator=generator)
        else:
            params = model.decode(draw(count, generator).to(model.device))
        images.append(model.likelihood.mean(params).float().cpu())
    return torch.cat(images)


def score_samples(
    net: FeatureNetwork,
    real: torch.Tensor,
    fake: torch.Tensor,
    seed: int,
    sampler: str,
    sampler_description: str,
    real_split: str,
) -> SampleQualityResult:
    started = time.perf_counter()
    real_f = features(net, real, f"features of {real.shape[0]:,} {real_split} images")
    fake_f = features(net, fake, f"features of {fake.shape[0]:,} samples")
    scores = score_features(real_f, fake_f, seed)
    return SampleQualityResult(
        entry=f"samples_{sampler}",
        sampler=sampler,
        sampler_description=sampler_description,
        num_samples=int(fake.shape[0]),
        real_split=real_split,
        num_real=int(real.shape[0]),
        feature_network=net.key,
        feature_label=net.label,
        comparable_with_literature=net.comparable_with_literature,
        seed=seed,
        scores=scores,
        seconds=round(time.perf_counter() - started, 3),
    )

"""The ``likelihood`` group: p(x|z) (``likelihood=bernoulli``, ``gaussian``, ...), one schema each, registered in
``LIKELIHOODS`` (config/catalog.py) with its builder in ``vae_cli.models.likelihoods``; docs/models.md,
"Likelihoods"."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vae_cli.config.catalog import LIKELIHOODS
from vae_cli.config.checks import Need
from vae_cli.config.enums import Binarize

# A Gaussian (or Laplace) likelihood with a smaller scale makes the loss explode (1/std^2, 1/b per pixel) and means
# nothing on 8-bit data: 1e-3 is a quarter of one grey level.
MIN_GAUSSIAN_STD = 1e-3


@dataclass(frozen=True)
class PixelScale:
    """A likelihood's scale key in pixel units: a number or a learned kind, and its floor."""

    key: str  # likelihood.<key>
    floor: str  # likelihood.<floor>, the least a learned scale can be
    learned: tuple[str, ...]  # the values besides a number
    choices: str  # how the message says the valid values
    growth: str  # how the loss grows as the scale shrinks


GAUSSIAN_STD = PixelScale(
    "std",
    "min_std",
    ("learned", "learned_global"),
    "a number (a fixed σ), learned (per pixel, from the decoder) or learned_global (one σ)",
    "1/std^2",
)
LAPLACE_SCALE = PixelScale(
    "scale", "min_scale", ("learned",), "a number (a fixed b) or learned (per pixel, from the decoder)", "1/b"
)


def check_pixel_scale(lik: Any, scale: PixelScale, need: Need) -> None:
    value = lik[scale.key]
    try:
        number = float(value)
    except ValueError:
        number = None
        need(str(value) in scale.learned, f"likelihood.{scale.key} must be {scale.choices} (got {value!r}).")
    if number is not None:
        need(
            math.isfinite(number) and MIN_GAUSSIAN_STD <= number <= 10,
            f"likelihood.{scale.key} must be in [{MIN_GAUSSIAN_STD:g}, 10] (got {value}): below that the loss grows "
            f"as {scale.growth} per pixel and overflows (a quarter of one grey level is 1e-3). The usual range is "
            f"0.05-0.2, or likelihood.{scale.key}=learned.",
        )
    floor = lik[scale.floor]
    need(
        math.isfinite(floor) and MIN_GAUSSIAN_STD <= floor <= 1,
        f"likelihood.{scale.floor} must be in [{MIN_GAUSSIAN_STD:g}, 1] (got {floor}).",
    )


def binarized(cfg: Any) -> bool:
    return cfg is not None and Binarize(cfg.dataset.binarize) != Binarize.none


@dataclass
class LikelihoodConfig:
    # p(x|z): one of LIKELIHOODS (likelihood=bernoulli, gaussian, ...; docs/models.md, "Likelihoods").
    name: str = "bernoulli"


@LIKELIHOODS.register(build="vae_cli.models.likelihoods.bernoulli:build")
@dataclass
class BernoulliConfig(LikelihoodConfig):
    name: str = "bernoulli"


@LIKELIHOODS.register(build="vae_cli.models.likelihoods.continuous_bernoulli:build")
@dataclass
class ContinuousBernoulliConfig(LikelihoodConfig):
    name: str = "continuous_bernoulli"

    @classmethod
    def check(cls, lik: Any, cfg: Any, need: Need) -> None:
        need(
            not binarized(cfg),
            "likelihood=continuous_bernoulli is a density on grey levels in [0, 1]; on binarized data "
            "(dataset.binarize) use likelihood=bernoulli, which is then a proper likelihood.",
        )


@LIKELIHOODS.register(build="vae_cli.models.likelihoods.gaussian:build")
@dataclass
class GaussianLikelihoodConfig(LikelihoodConfig):
    name: str = "gaussian"
    # A fixed σ in pixel units [0, 1] (e.g. 0.1), or learned (per pixel, output by the decoder beside the mean),
    # or learned_global (one σ for all pixels, a parameter). A string so that one key takes all three.
    std: str = "0.1"
    # A learned σ is min_std + softplus(.): it cannot collapse to 0 (a density spike, then NaN).
    min_std: float = 1e-3

    @classmethod
    def check(cls, lik: Any, cfg: Any, need: Need) -> None:
        check_pixel_scale(lik, GAUSSIAN_STD, need)


@LIKELIHOODS.register(build="vae_cli.models.likelihoods.logistic_mixture:build")
@dataclass
class LogisticMixtureConfig(LikelihoodConfig):
    name: str = "logistic_mixture"
    # Discretized logistics per pixel (PixelCNN++), colour channels coupled; the data must be 8-bit.
    components: int = 10

    @classmethod
    def check(cls, lik: Any, cfg: Any, need: Need) -> None:
        need(1 <= lik.components <= 256, f"likelihood.components must be in [1, 256] (got {lik.components}).")
        if cfg is None:
            return
        bin_, deq = binarized(cfg), bool(cfg.dataset.dequantize)
        need(
            not bin_ and not deq,
            "likelihood=logistic_mixture is a distribution over the 256 levels of 8-bit pixels, and "
            + ("dataset.binarize makes them 0/1 (use likelihood=bernoulli for binary data)" if bin_ else "")
            + (" and " if bin_ and deq else "")
            + ("dataset.dequantize=true moves them off the levels (drop it)" if deq else "")
            + ".",
        )


@LIKELIHOODS.register(build="vae_cli.models.likelihoods.laplace:build")
@dataclass
class LaplaceLikelihoodConfig(LikelihoodConfig):
    name: str = "laplace"
    # The scale b in pixel units [0, 1] (e.g. 0.1: the L1 reconstruction, weighted 1/b), or learned (per pixel,
    # output by the decoder beside the mean). A string so that one key takes both.
    scale: str = "0.1"
    # A learned b is min_scale + softplus(.): it cannot collapse to 0.
    min_scale: float = 1e-3

    @classmethod
    def check(cls, lik: Any, cfg: Any, need: Need) -> None:
        check_pixel_scale(lik, LAPLACE_SCALE, need)


@LIKELIHOODS.register(build="vae_cli.models.likelihoods.msssim:build")
@dataclass
class MSSSIMConfig(LikelihoodConfig):
    name: str = "msssim"
    # How many scales of MS-SSIM (each halves the image; the reference's 5 need images of 160+ pixels).
    scales: int = 3
    # The Gaussian window's standard deviation in pixels; its side is 2 * int(3.5 sigma + 0.5) + 1 (5 for 0.7, 9 for
    # 1.0 and 1.5, the reference's).
    sigma: float = 0.7
    # The term is weight * pixels * (1 - MS-SSIM): the scale of a per-pixel loss summed over the image.
    weight: float = 1.0

    @classmethod
    def check(cls, lik: Any, cfg: Any, need: Need) -> None:
        need(1 <= lik.scales <= 5, f"likelihood.scales must be in [1, 5] (got {lik.scales}).")
        need(
            lik.sigma > 0 and lik.weight > 0,
            f"likelihood.sigma and likelihood.weight must be > 0 (got {lik.sigma}, {lik.weight}).",
        )
        if cfg is not None and lik.sigma > 0:
            size = int(cfg.dataset.image_size)
            window = int(3.5 * lik.sigma + 0.5) * 2 + 1
            coarsest = size // 2 ** (lik.scales - 1)
            need(
                coarsest > window,
                f"likelihood=msssim with {lik.scales} scales halves {size}-pixel images to {coarsest} pixels, no "
                f"wider than its {window}-pixel window (likelihood.sigma={lik.sigma}); lower likelihood.scales or "
                f"likelihood.sigma (3 scales and sigma 0.7 fit 28-pixel images).",
            )

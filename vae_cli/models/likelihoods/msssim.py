"""``likelihood=msssim``: reconstruction by multi-scale structural similarity (Wang et al., 2003), as Snell et al.
(2017, "Learning to generate images with perceptually based loss functions") train autoencoders with it.

    "-log p(x|z)" = weight * D * (1 - MS-SSIM(x, decoder mean))     (D pixels: the scale of a summed per-pixel loss)

MS-SSIM comes from torchmetrics (``multiscale_structural_similarity_index_measure``): a maintained, differentiable
implementation with the reference constants (K1 0.01, K2 0.03, Gaussian window) and ``normalize="relu"`` (negative
contrast terms clipped before the fractional powers, which otherwise give NaN gradients early in training, a known
trap of the reference formula). The window is a Gaussian of standard deviation ``sigma`` whose side torchmetrics
sets to 2 * int(3.5 sigma + 0.5) + 1 pixels (9 for the reference's 1.5... and 1.0; 5 for 0.7), and only windows
wholly inside the image count. Small images cannot take the reference's 5 scales (28 pixels halve to 1 after 4
steps), so the number of scales and sigma are keys, checked against the image size; the scales' weights are the
reference's first ones, renormalized to sum to 1.

This is a score, not a distribution of the images: its ``measures`` is ``score``, and vae-eval reports no bound
on log p(x) for a model trained with it (the pictures and samples use the decoder's mean).
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

from vae_cli.models.likelihoods.base import Likelihood, Measures

REFERENCE_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. (2003), finest scale first


def gaussian_window(sigma: float) -> int:
    """The side of torchmetrics' Gaussian window for ``sigma`` (its ``kernel_size`` is unused with a Gaussian)."""
    return int(3.5 * sigma + 0.5) * 2 + 1


class MSSSIMLikelihood(Likelihood):
    measures = Measures.score

    def __init__(self, scales: int = 3, sigma: float = 0.7, weight: float = 1.0) -> None:
        super().__init__()
        betas = REFERENCE_BETAS[:scales]
        self.betas = tuple(b / sum(betas) for b in betas)
        self.kernel_size = gaussian_window(sigma)
        self.sigma = float(sigma)
        self.weight = float(weight)

    def similarity(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """MS-SSIM of each image with its reconstruction ``[B]`` (1: identical). In fp32 even under bf16 autocast:
        the local variances are differences of window means, E[x^2] - E[x]^2, which bf16's 8 bits would erase."""
        with torch.autocast(mean.device.type, enabled=False):
            return multiscale_structural_similarity_index_measure(
                mean.float(),
                x.float(),
                gaussian_kernel=True,
                sigma=self.sigma,
                kernel_size=self.kernel_size,
                reduction="none",
                data_range=1.0,
                betas=self.betas,
                normalize="relu",
            )

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        pixels = x[0].numel()
        return -self.weight * pixels * (1.0 - self.similarity(x, self.mean(params)))

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params.float())

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.mean(params)  # no distribution to draw from: the decoder's image


def build(cfg: Any, binarized: bool = False) -> Likelihood:
    return MSSSIMLikelihood(cfg.scales, cfg.sigma, cfg.weight)

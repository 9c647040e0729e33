"""The sample-quality estimators, on feature matrices ``[N, F]`` of real and generated images.

- FID (Heusel et al., 2017): |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)), the Frechet distance between
  Gaussians fitted to the two feature sets (torchmetrics' ``FrechetInceptionDistance`` estimator, float64, on
  features given to it as they are). Biased upwards for small N: compare FIDs of one N only.
- KID (Binkowski et al., 2018): the unbiased MMD^2 with the cubic polynomial kernel (x.y / F + 1)^3, averaged over
  random subsets (torchmetrics' ``KernelInceptionDistance``, its subsets drawn from the seed): unbiased, so small N
  gives noisier, not larger, values.
- Precision and recall for distributions (Kynkaanniemi et al., 2019): each set's manifold is the union of balls
  around its points reaching their k-th nearest neighbour within the set; precision is the fraction of generated
  points inside the real manifold (fidelity), recall the fraction of real points inside the generated one
  (coverage). k = 3, as the paper.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

NEIGHBOURS = 3
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
DISTANCE_CHUNK = 1024


class GivenFeatures(nn.Module):
    """The identity as torchmetrics' feature extractor: the features are computed once, by the caller."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = FrechetInceptionDistance(feature=GivenFeatures(real.shape[1]), normalize=False)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, seed: int) -> tuple[float, float, int]:
    """KID mean and standard deviation over subsets, and the subset size used."""
    size = min(KID_SUBSET_SIZE, real.shape[0], fake.shape[0])
    with warnings.catch_warnings():  # "will save all extracted features": they are given, and kept anyway
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(
            feature=GivenFeatures(real.shape[1]), subsets=KID_SUBSETS, subset_size=size, normalize=False
        )
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the subsets: the same seed, the same KID
        mean, std = metric.compute()
    return float(mean), float(std), size


def kth_neighbour_radii(points: torch.Tensor, k: int = NEIGHBOURS) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the set ``[N]``."""
    radii = []
    for chunk in points.split(DISTANCE_CHUNK):
        d = torch.cdist(chunk, points)
        # The k + 1 smallest include the point itself (distance 0).
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def inside_manifold(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Whether each query lies within some point's ball ``[Q]`` (bool)."""
    inside = []
    for chunk in queries.split(DISTANCE_CHUNK):
        inside.append((torch.cdist(chunk, points) <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = NEIGHBOURS) -> tuple[float, float]:
    real, fake = real.double(), fake.double()
    precision = inside_manifold(fake, real, kth_neighbour_radii(real, k)).double().mean()
    recall = inside_manifold(real, fake, kth_neighbour_radii(fake, k)).double().mean()
    return float(precision), float(recall)


@dataclass
class SampleScores:
    fid: float
    kid: float
    kid_std: float
    kid_subset_size: int
    precision: float
    recall: float
    neighbours: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def score_features(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> SampleScores:
    kid, kid_std, size = kernel_distance(real, fake, seed)
    precision, recall = precision_recall(real, fake)
    return SampleScores(frechet_distance(real, fake), kid, kid_std, size, precision, recall, NEIGHBOURS)

"""Mutual Information Gap (Chen et al. 2018), the histogram version of disentanglement_lib.

For each factor: the gap between the two code dimensions that share the most information with it, divided by
the factor's entropy; MIG is the mean over factors. Codes are discretized into ``num_bins`` histogram bins per
dimension (disentanglement_lib's default, 20), not estimated as continuous entropies as in the paper, so even a
perfect code of a factor with more levels than bins scores below 1 (log 20 / log 40 = 0.81 for 40 orientations).
"""

from __future__ import annotations

import numpy as np

from vae_cli.evaluation.disentanglement.information import entropy, histogram_discretize, mutual_information_matrix


def mig(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict[str, float | list[float]]:
    """MIG of ``codes [n, D]`` against ``factors [n, F]``; also the gap of each factor (``per_factor``)."""
    info = mutual_information_matrix(histogram_discretize(codes, num_bins), factors)
    h = np.array([entropy(factors[:, k]) for k in range(factors.shape[1])])
    top = np.sort(info, axis=0)[::-1]
    second = top[1] if top.shape[0] > 1 else np.zeros(top.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = np.where(h > 0, (top[0] - second) / h, np.nan)  # a constant factor has nothing to disentangle
    return {"mig": float(np.nanmean(gaps)), "per_factor": gaps.tolist()}

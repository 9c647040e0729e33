"""Histogram discretization and the discrete entropies and mutual informations of MIG (natural logarithms).

As disentanglement_lib's ``_histogram_discretize``: each code dimension gets ``num_bins`` equal-width bins over
its own range in the sample (``np.histogram`` edges, the last dropped, then ``np.digitize``), so the result depends
on the sample's extremes; a constant dimension falls into one bin and carries no information.
"""

from __future__ import annotations

import numpy as np


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """``[n, D]`` codes -> ``[n, D]`` bin numbers, per dimension."""
    out = np.empty(codes.shape, dtype=np.int64)
    for d in range(codes.shape[1]):
        edges = np.histogram(codes[:, d], num_bins)[1][:-1]
        out[:, d] = np.digitize(codes[:, d], edges)
    return out


def entropy(labels: np.ndarray) -> float:
    """Entropy (nats) of the empirical distribution of one discrete variable."""
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information (nats) of two discrete variables' joint empirical distribution (plug-in estimate)."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def mutual_information_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``[D, F]``: the mutual information of each discrete code dimension with each factor."""
    return np.array(
        [
            [mutual_information(codes[:, d], factors[:, k]) for k in range(factors.shape[1])]
            for d in range(codes.shape[1])
        ]
    )

"""Codes of observations drawn from the ground truth: what every metric starts from."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vae_cli.factors import FactorData

# A representation maps uint8 observations [N, C, H, W] to codes [N, D] (float).
Representation = Callable[[np.ndarray], np.ndarray]


def codes_and_factors(
    data: FactorData, represent: Representation, n: int, rng: np.random.Generator, batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` observations drawn from ``data``: their codes ``[n, D]`` (float64) and factors ``[n, F]`` (int64)."""
    codes, factors = [], []
    for start in range(0, n, batch_size):
        f = data.sample_factors(min(batch_size, n - start), rng)
        codes.append(np.asarray(represent(data.observations(f, rng)), dtype=np.float64))
        factors.append(f)
    return np.concatenate(codes), np.concatenate(factors)

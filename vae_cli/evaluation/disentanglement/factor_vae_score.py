"""FactorVAE score (Kim & Mnih 2018), as disentanglement_lib.

Each vote: draw a factor k, a batch of ``batch_size`` observations that all share one value of k, and the code
dimension whose variance over the batch, divided by its variance over the data, is smallest; a majority-vote
classifier (each dimension -> the factor it was most often the vote of) is read off ``num_train`` votes, and its
accuracy on ``num_eval`` fresh votes is the score. Only dimensions whose variance over the data
(``num_variance_estimate`` observations) is above zero can be voted for; with none the score is 0.

disentanglement_lib indexes its votes by the position among the active dimensions; here they are indexed by the
code dimension itself (the same accuracy, and a vote matrix one can read).
"""

from __future__ import annotations

import numpy as np

from vae_cli.evaluation.disentanglement.sampling import Representation, codes_and_factors
from vae_cli.factors import FactorData

# Votes whose observations are rendered and encoded together (batch_size observations each).
VOTES_PER_CHUNK = 64


def votes(
    data: FactorData,
    represent: Representation,
    n: int,
    batch_size: int,
    global_var: np.ndarray,
    active: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """``[F, D]`` counts: how often factor k's fixed batches voted for dimension d."""
    counts = np.zeros((data.num_factors, len(global_var)), dtype=np.int64)
    active_dims = np.flatnonzero(active)
    for start in range(0, n, VOTES_PER_CHUNK):
        m = min(VOTES_PER_CHUNK, n - start)
        ks = rng.integers(0, data.num_factors, m)
        factors = np.concatenate([data.sample_with_fixed(batch_size, int(k), rng) for k in ks])
        codes = np.asarray(represent(data.observations(factors, rng)), dtype=np.float64).reshape(m, batch_size, -1)
        local = codes.var(axis=1, ddof=1)[:, active_dims] / global_var[active_dims]
        np.add.at(counts, (ks, active_dims[np.argmin(local, axis=1)]), 1)
    return counts


def factor_vae_score(
    data: FactorData,
    represent: Representation,
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
) -> dict[str, float | int | list[list[int]]]:
    codes, _ = codes_and_factors(data, represent, num_variance_estimate, rng)
    global_var = codes.var(axis=0, ddof=1)
    active = global_var > 0.0
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0, "votes": []}
    train = votes(data, represent, num_train, batch_size, global_var, active, rng)
    classifier = np.argmax(train, axis=0)  # each dimension -> the factor it votes for most
    dims = np.arange(train.shape[1])
    evaluation = votes(data, represent, num_eval, batch_size, global_var, active, rng)
    return {
        "train_accuracy": float(train[classifier, dims].sum() / train.sum()),
        "eval_accuracy": float(evaluation[classifier, dims].sum() / evaluation.sum()),
        "num_active_dims": int(active.sum()),
        "votes": train.tolist(),
    }

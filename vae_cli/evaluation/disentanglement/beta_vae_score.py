"""BetaVAE score (Higgins et al. 2017), as disentanglement_lib.

Each point: draw a factor k and two batches of ``batch_size`` observations, pairwise sharing the value of k
(the other factors drawn anew); the point's features are the mean absolute difference of the pairs' codes and its
label is k. A logistic regression (scikit-learn's defaults) is fit on ``num_train`` points; the score is its
accuracy on ``num_eval`` fresh ones.
"""

from __future__ import annotations

import warnings

import numpy as np

from vae_cli.evaluation.disentanglement.sampling import Representation
from vae_cli.factors import FactorData

POINTS_PER_CHUNK = 64


def points(
    data: FactorData, represent: Representation, n: int, batch_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for start in range(0, n, POINTS_PER_CHUNK):
        m = min(POINTS_PER_CHUNK, n - start)
        ks = rng.integers(0, data.num_factors, m)
        first = [data.sample_factors(batch_size, rng) for _ in range(m)]
        second = [data.sharing(f, int(k), rng) for f, k in zip(first, ks, strict=True)]
        factors = np.concatenate([*first, *second])
        codes = np.asarray(represent(data.observations(factors, rng)), dtype=np.float64)
        a, b = codes[: m * batch_size].reshape(m, batch_size, -1), codes[m * batch_size :].reshape(m, batch_size, -1)
        features.append(np.abs(a - b).mean(axis=1))
        labels.append(ks)
    return np.concatenate(features), np.concatenate(labels)


def beta_vae_score(
    data: FactorData,
    represent: Representation,
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    seed: int = 0,
) -> dict[str, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x, y = points(data, represent, num_train, batch_size, rng)
    x_eval, y_eval = points(data, represent, num_eval, batch_size, rng)
    if len(np.unique(y)) < 2:
        return {"train_accuracy": 1.0, "eval_accuracy": 1.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(random_state=seed).fit(x, y)
    return {"train_accuracy": float(model.score(x, y)), "eval_accuracy": float(model.score(x_eval, y_eval))}

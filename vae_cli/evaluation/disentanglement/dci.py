"""DCI (Eastwood & Williams 2018): Disentanglement, Completeness, Informativeness, as disentanglement_lib.

One gradient-boosted tree classifier per factor predicts it from all code dimensions (scikit-learn's
``GradientBoostingClassifier`` with its defaults); its feature importances form the column of that factor in the
importance matrix ``R [D, F]``. Informativeness is the classifiers' accuracy (train and held-out test).

- disentanglement of code d: 1 - H_F(R[d, :] / sum) (entropy with base F, the number of factors); the score is
  their mean weighted by each code's share of the total importance;
- completeness of factor k: 1 - H_D(R[:, k] / sum) (base D, the number of codes), weighted by factor importance.
The bases are the trap: swapping them (as some ports do) changes both numbers whenever D != F.
"""

from __future__ import annotations

import numpy as np


def normalized_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy (log base ``base``) of each row of non-negative weights, normalized to sum 1 (all-zero: uniform)."""
    p = np.asarray(p, dtype=np.float64) + 1e-11  # disentanglement_lib's epsilon: an all-zero row is uniform
    p = p / p.sum(axis=1, keepdims=True)
    return -(p * np.log(p)).sum(axis=1) / np.log(base)


def disentanglement(importance: np.ndarray) -> float:
    """Importance-weighted mean over codes of 1 - H_F(row); ``importance`` is ``[D, F]``."""
    if importance.shape[1] < 2:
        return 1.0
    per_code = 1.0 - normalized_entropy(importance, importance.shape[1])
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float((per_code * weights.sum(axis=1) / weights.sum()).sum())


def completeness(importance: np.ndarray) -> float:
    """Importance-weighted mean over factors of 1 - H_D(column)."""
    if importance.shape[0] < 2:
        return 1.0
    per_factor = 1.0 - normalized_entropy(importance.T, importance.shape[0])
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float((per_factor * weights.sum(axis=0) / weights.sum()).sum())


def importance_matrix(
    train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray, test_factors: np.ndarray, seed: int
) -> tuple[np.ndarray, float, float]:
    """``R [D, F]`` from one gradient-boosted classifier per factor, and their mean train and test accuracies."""
    from sklearn.ensemble import GradientBoostingClassifier

    d, f = train_codes.shape[1], train_factors.shape[1]
    importance = np.zeros((d, f))
    train_acc, test_acc = [], []
    for k in range(f):
        if len(np.unique(train_factors[:, k])) < 2:  # nothing to predict: no importance, perfectly informative
            train_acc.append(1.0)
            test_acc.append(1.0)
            continue
        model = GradientBoostingClassifier(random_state=seed)
        model.fit(train_codes, train_factors[:, k])
        importance[:, k] = np.abs(model.feature_importances_)
        train_acc.append(float(np.mean(model.predict(train_codes) == train_factors[:, k])))
        test_acc.append(float(np.mean(model.predict(test_codes) == test_factors[:, k])))
    return importance, float(np.mean(train_acc)), float(np.mean(test_acc))


def dci(
    train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray, test_factors: np.ndarray, seed: int = 0
) -> dict[str, float | list[list[float]]]:
    importance, train_acc, test_acc = importance_matrix(train_codes, train_factors, test_codes, test_factors, seed)
    return {
        "disentanglement": disentanglement(importance),
        "completeness": completeness(importance),
        "informativeness_train": train_acc,
        "informativeness_test": test_acc,
        "importance": importance.tolist(),
    }

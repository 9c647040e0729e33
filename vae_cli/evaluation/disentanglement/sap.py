"""SAP score (Kumar et al. 2018), as disentanglement_lib.

For each code dimension d and factor k a score S[d, k] of how well d alone predicts k; SAP is the mean over
factors of the gap between the best and the second-best dimension.

- discrete factors (the reference default): S is the held-out accuracy of a linear SVM
  (``LinearSVC(C=0.01, class_weight="balanced")``) fit on dimension d alone. A one-feature linear classifier this
  strongly regularized separates few ordered levels: even a perfect code of a 10-level factor scores S ~ 0.3, so
  SAP stays far below 1 on the grids of dSprites-like data (it ranks models, it is not an absolute scale);
- ``continuous=True``: S is the squared correlation of d and k on the training codes (the R^2 of a linear fit),
  which a perfect code scores 1 on; disentanglement_lib's own identity test uses this variant.
"""

from __future__ import annotations

import warnings

import numpy as np


def squared_correlations(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``[D, F]`` squared Pearson correlations (0 where a dimension or factor is constant)."""
    c = codes - codes.mean(axis=0)
    f = factors - factors.mean(axis=0)
    cov = c.T @ f / max(1, len(codes) - 1)
    var_c, var_f = c.var(axis=0, ddof=1), f.var(axis=0, ddof=1)
    denominator = np.outer(var_c, var_f)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((var_c[:, None] > 1e-12) & (var_f[None, :] > 0), cov**2 / denominator, 0.0)


def score_matrix(
    train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray, test_factors: np.ndarray
) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    d, f = train_codes.shape[1], train_factors.shape[1]
    scores = np.zeros((d, f))
    for i in range(d):
        x, x_test = train_codes[:, i : i + 1], test_codes[:, i : i + 1]
        for k in range(f):
            y, y_test = train_factors[:, k], test_factors[:, k]
            if len(np.unique(y)) < 2:
                continue  # one level: every dimension predicts it, no gap
            if np.ptp(x) == 0:  # a constant dimension predicts the majority level
                values, counts = np.unique(y, return_counts=True)
                scores[i, k] = float(np.mean(y_test == values[np.argmax(counts)]))
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = LinearSVC(C=0.01, class_weight="balanced").fit(x, y)
            scores[i, k] = float(np.mean(model.predict(x_test) == y_test))
    return scores


def sap(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    continuous: bool = False,
) -> dict[str, float | list[list[float]]]:
    if continuous:
        scores = squared_correlations(train_codes, train_factors.astype(np.float64))
    else:
        scores = score_matrix(train_codes, train_factors, test_codes, test_factors)
    ordered = np.sort(scores, axis=0)
    gap = ordered[-1] - ordered[-2] if scores.shape[0] > 1 else ordered[-1]
    return {"sap": float(np.mean(gap)), "scores": scores.tolist()}

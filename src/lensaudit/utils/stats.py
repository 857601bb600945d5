"""The one ROC AUC implementation of the package (training's validation AUC and evaluation both use it).

``roc_auc`` is the Mann-Whitney statistic with ties counted one half, equal to
``sklearn.metrics.roc_auc_score`` (tested). It lives here, below every stage, so that training
(which comes before evaluation) and evaluation compute the same number.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from lensaudit.errors import LensauditError


class MetricError(LensauditError, ValueError):
    """Inputs a metric cannot be computed from (for example a single class)."""


def check_labels_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """(boolean labels, float64 scores) after checking shapes, finiteness and 0/1 labels; MetricError otherwise."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise MetricError(f"labels {y.shape} and scores {s.shape} must be 1-d and of equal length")
    if not np.isfinite(s).all():
        raise MetricError(f"{int((~np.isfinite(s)).sum())} non-finite score(s)")
    if not np.isin(y, (0, 1)).all():
        raise MetricError("labels must be 0 or 1")
    return y.astype(bool), s


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve; ``MetricError`` if only one class is present."""
    y, s = check_labels_scores(labels, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise MetricError(f"AUC needs both classes (positives {n_pos}, negatives {n_neg})")
    r = rankdata(s)  # average ranks: ties count one half
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc_or_nan(labels, scores) -> float:
    """:func:`roc_auc`, or NaN when only one class is present (e.g. a validation split without positives)."""
    y = np.asarray(labels)
    return roc_auc(y, scores) if len(np.unique(y)) == 2 else float("nan")

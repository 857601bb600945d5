"""Metric functions with explicit inputs (arrays in, numbers or arrays out), scikit-learn style.

``roc_auc`` is the Mann-Whitney statistic with ties counted one half (equal to
``sklearn.metrics.roc_auc_score``); ``pr_auc`` is average precision (step-wise, as
``sklearn.metrics.average_precision_score``). Proportions carry Wilson score intervals.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from lensaudit.artifacts.operating import at_or_above, threshold_at_fpr
from lensaudit.utils.stats import MetricError, check_labels_scores, roc_auc

__all__ = ["MetricError", "roc_auc", "pr_auc", "wilson_interval", "confusion_at", "threshold_at_fpr",
           "threshold_at_top_fraction", "precision_at_prevalence", "calibration"]


def pr_auc(labels, scores) -> float:
    """Average precision: sum over recall steps of precision at each distinct threshold."""
    y, s = check_labels_scores(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise MetricError("average precision needs at least one positive")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def wilson_interval(k, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for k successes in n trials (vectorised; NaN where n = 0)."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = norm.ppf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
        lo, hi = centre - half, centre + half
    # exact at the edges (rounding would leave 1e-17 above 0 or below 1): k = 0 gives lo = 0, k = n gives hi = 1
    lo = np.where(n > 0, np.where(k <= 0, 0.0, np.clip(lo, 0, 1)), np.nan)
    hi = np.where(n > 0, np.where(k >= n, 1.0, np.clip(hi, 0, 1)), np.nan)
    return lo, hi


def confusion_at(labels, scores, threshold: float) -> dict[str, int]:
    """Counts with "predicted lens" meaning score >= threshold (lensaudit's one rule, :data:`~lensaudit.artifacts.operating.RULE`)."""
    y, s = check_labels_scores(labels, scores)
    pred = at_or_above(s, threshold)
    return {"tp": int((pred & y).sum()), "fp": int((pred & ~y).sum()), "fn": int((~pred & y).sum()),
            "tn": int((~pred & ~y).sum())}


def threshold_at_top_fraction(scores, fraction: float) -> float:
    """Threshold that selects the top ``fraction`` of all scores (score >= t)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    k = max(int(np.ceil(fraction * len(s))), 1)
    return float(s[k - 1])


def precision_at_prevalence(recall, fpr, prevalence: float):
    """Precision in a survey where a fraction ``prevalence`` of galaxies are lenses."""
    recall, fpr = np.asarray(recall, float), np.asarray(fpr, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return recall * prevalence / (recall * prevalence + fpr * (1 - prevalence))


def calibration(labels, probs, n_bins: int = 10) -> dict:
    """ECE and MCE over equal-frequency bins, and the reliability curve; MetricError for one class."""
    y, p = check_labels_scores(labels, probs)
    if (p < 0).any() or (p > 1).any():
        raise MetricError("probabilities must lie in [0, 1]")
    if y.all() or (~y).all():
        raise MetricError("calibration needs both classes")
    order = np.argsort(p, kind="mergesort")
    bins = np.array_split(order, min(n_bins, len(p)))
    rows = []
    for b in bins:
        if len(b):
            rows.append((float(p[b].mean()), float(y[b].mean()), len(b), int(y[b].sum())))
    conf, acc, cnt, k = map(np.array, zip(*rows, strict=True))
    gap = np.abs(acc - conf)
    lo, hi = wilson_interval(k, cnt)
    return {"ece": float(np.sum(cnt * gap) / cnt.sum()), "mce": float(gap.max()),
            "curve": {"mean_probability": conf.tolist(), "fraction_positive": acc.tolist(), "count": cnt.tolist(),
                      "fraction_positive_lo95": lo.tolist(), "fraction_positive_hi95": hi.tolist()}}

"""Vectorised, seeded bootstrap intervals.

Stratified bootstrap of the AUC (positives and negatives resampled separately) without
materialising resamples: the AUC of a resample depends only on how many resampled positives sit
at each distinct positive score and how many resampled negatives fall below or level with each
of those scores. Those counts are multinomial over 2K+1 cells (K distinct positive scores), so
each replicate costs O(K) instead of O(N) and 10,000 replicates on 150,000 predictions take
seconds. Exact in distribution; written by hand because no library bootstraps this way.

Block bootstrap (``groups``, e.g. HEALPix pixels): whole groups are resampled, so spatially
correlated objects move together; each replicate is a weighted AUC, O(N) per replicate.
"""

from __future__ import annotations

import numpy as np

from lensaudit.evaluate.metrics import MetricError
from lensaudit.utils.stats import check_labels_scores

LEVELS = (0.68, 0.95)


def percentile_interval(samples: np.ndarray, levels=LEVELS) -> dict[str, list[float]]:
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    out = {}
    for lv in levels:
        lo, hi = np.percentile(s, [50 * (1 - lv), 50 * (1 + lv)]) if s.size else (np.nan, np.nan)
        out[f"ci{int(round(lv * 100))}"] = [float(lo), float(hi)]
    return out


def _cells(pos: np.ndarray, neg: np.ndarray):
    """Distinct positive scores u (K), positive counts per u, negative counts in the 2K+1 cells
    (below u_1, equal u_1, between u_1 and u_2, equal u_2, ..., above u_K)."""
    u, pos_counts = np.unique(pos, return_counts=True)
    lo = np.searchsorted(neg_sorted := np.sort(neg), u, side="left")
    hi = np.searchsorted(neg_sorted, u, side="right")
    eq = hi - lo
    cells = np.empty(2 * len(u) + 1, dtype=np.int64)
    cells[0] = lo[0]
    cells[1::2] = eq
    cells[2:-1:2] = lo[1:] - hi[:-1]
    cells[-1] = len(neg) - hi[-1]
    return u, pos_counts, cells


def _cell_bootstrap(labels, scores, n_boot: int, seed: int, chunk: int, stat, what: str) -> np.ndarray:
    """Draw (positive counts per distinct positive score, negative counts per cell) per replicate; apply ``stat``."""
    y, s = check_labels_scores(labels, scores)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        raise MetricError(f"bootstrap {what} needs both classes")
    _, pc, cells = _cells(pos, neg)
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for lo in range(0, n_boot, chunk):
        r = min(chunk, n_boot - lo)
        c = rng.multinomial(pos.size, pc / pos.size, size=r).astype(np.float64)      # (r, K)
        m = rng.multinomial(neg.size, cells / neg.size, size=r).astype(np.float64)   # (r, 2K+1)
        out[lo : lo + r] = stat(c, m)
    return out


def _auc_from_counts(c: np.ndarray, m: np.ndarray) -> np.ndarray:
    K = c.shape[1]
    below = np.cumsum(m, axis=1)[:, 0 : 2 * K : 2]                          # negatives below u_k
    eq = m[:, 1::2]                                                         # negatives level with u_k
    return (c * (below + 0.5 * eq)).sum(axis=1) / (c.sum(axis=1) * m.sum(axis=1))


def bootstrap_auc(labels, scores, n_boot: int = 2000, seed: int = 0, chunk: int = 500) -> np.ndarray:
    """``n_boot`` AUC values of stratified bootstrap resamples (positives, negatives separately)."""
    return _cell_bootstrap(labels, scores, n_boot, seed, chunk, _auc_from_counts, "AUC")


def weighted_auc(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUC with per-row multiplicities; ``w`` is (R, N) (one row per replicate), ties count one half."""
    order = np.argsort(s, kind="mergesort")
    s_o, y_o = s[order], y[order]
    w = w[:, order]
    _, start = np.unique(s_o, return_index=True)
    wn = np.where(~y_o, w, 0.0)
    wp = np.where(y_o, w, 0.0)
    gn = np.add.reduceat(wn, start, axis=1)                                   # negatives per tie group
    gp = np.add.reduceat(wp, start, axis=1)
    below = np.cumsum(gn, axis=1) - gn
    num = (gp * (below + 0.5 * gn)).sum(axis=1)
    den = gp.sum(axis=1) * gn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def bootstrap_auc_blocks(labels, scores, groups, n_boot: int = 1000, seed: int = 0, chunk: int = 50) -> np.ndarray:
    """AUC of block-bootstrap resamples: whole groups (e.g. HEALPix pixels) drawn with replacement."""
    y, s = check_labels_scores(labels, scores)
    g_uni, g_idx = np.unique(np.asarray(groups), return_inverse=True)
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for lo in range(0, n_boot, chunk):
        r = min(chunk, n_boot - lo)
        draws = rng.integers(0, g_uni.size, size=(r, g_uni.size))
        counts = np.stack([np.bincount(d, minlength=g_uni.size) for d in draws]).astype(np.float64)
        out[lo : lo + r] = weighted_auc(y, s, counts[:, g_idx])
    return out


def bootstrap_proportion(k: int, n: int, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Resampled proportions k*/n for a stratified bootstrap (k* ~ Binomial(n, k/n))."""
    if n <= 0:
        return np.full(n_boot, np.nan)
    return np.random.default_rng(seed).binomial(n, k / n, size=n_boot) / n


def bootstrap_precision(tp: int, n_pos: int, fp: int, n_neg: int, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Resampled precision TP*/(TP*+FP*) with positives and negatives resampled separately."""
    rng = np.random.default_rng(seed)
    tps = rng.binomial(n_pos, tp / n_pos, n_boot) if n_pos else np.zeros(n_boot)
    fps = rng.binomial(n_neg, fp / n_neg, n_boot) if n_neg else np.zeros(n_boot)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tps / (tps + fps)


def bootstrap_recall_at_fpr(labels, scores, fpr: float, n_boot: int = 2000, seed: int = 0,
                            chunk: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Recall at a target FPR with the threshold re-derived in every stratified resample.

    The threshold of a resample sits just above its (k+1)-th highest negative, k = floor(fpr * n_neg)
    (as :func:`lensaudit.evaluate.metrics.threshold_at_fpr`). Only the top of the negative
    distribution matters, so resampled negatives are drawn as multinomial counts over the top
    distinct negative scores plus one cell for the rest, and positives as counts over their distinct
    scores. Returns (recall samples, threshold samples: the score just below the selected ones); NaN
    where the threshold fell below the cells kept (vanishingly rare with the margin used). At FPR 1
    every negative is selected (the threshold is the lowest resampled negative, as in threshold_at_fpr).
    """
    y, s = check_labels_scores(labels, scores)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        raise MetricError("recall at FPR needs both classes")
    n_p, n_n = pos.size, neg.size
    k = int(np.floor(fpr * n_n))
    v, cnt = np.unique(neg, return_counts=True)
    v, cnt = v[::-1], cnt[::-1]                                              # descending
    need = 20 * (k + 1) + 100
    m = int(min(np.searchsorted(np.cumsum(cnt), need) + 1, v.size))
    cells = np.r_[cnt[:m], n_n - cnt[:m].sum()].astype(np.float64)
    u, pc = np.unique(pos, return_counts=True)                               # ascending
    rng = np.random.default_rng(seed)
    rec, thr = np.empty(n_boot), np.empty(n_boot)
    for lo in range(0, n_boot, chunk):
        r = min(chunk, n_boot - lo)
        cn = rng.multinomial(n_n, cells / n_n, size=r)[:, :m]
        if k >= n_n:  # FPR 1: every negative selected, the threshold is the lowest one (kept: m covers all)
            last = m - 1 - np.argmax(cn[:, ::-1] > 0, axis=1)
            ok = np.ones(r, bool)
            t = np.nextafter(v[last], -np.inf)                               # scores >= the lowest negative
        else:
            first = np.argmax(np.cumsum(cn, axis=1) >= k + 1, axis=1)      # cell holding the (k+1)-th highest
            ok = np.cumsum(cn, axis=1)[:, -1] >= k + 1
            t = np.where(ok, v[first], np.nan)
        c = rng.multinomial(n_p, pc / n_p, size=r)
        cum = np.cumsum(c, axis=1)
        pos_idx = np.searchsorted(u, np.nan_to_num(t, nan=np.inf), side="right")  # levels <= t are not selected
        below = np.where(pos_idx > 0, np.take_along_axis(cum, np.clip(pos_idx - 1, 0, None)[:, None], 1)[:, 0], 0)
        rec[lo : lo + r] = np.where(ok, (n_p - below) / n_p, np.nan)
        thr[lo : lo + r] = t
    return rec, thr


def bootstrap_ratio_blocks(k_per_group: np.ndarray, n_per_group: np.ndarray, n_boot: int = 1000,
                           seed: int = 0) -> np.ndarray:
    """Block bootstrap of a pooled proportion sum(k)/sum(n): groups (e.g. HEALPix pixels) drawn with replacement."""
    k = np.asarray(k_per_group, dtype=np.float64)
    n = np.asarray(n_per_group, dtype=np.float64)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(k.size, np.full(k.size, 1.0 / k.size), size=n_boot).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ k) / (w @ n)


def _ap_from_counts(c: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Average precision from positive counts per distinct positive score (R, K, ascending) and negative
    counts in the 2K+1 cells of :func:`_cells` (R, 2K+1). Recall steps happen only at positive scores;
    at u_k every row scoring >= u_k is selected (negatives level with u_k included), as in scikit-learn."""
    tp = np.cumsum(c[:, ::-1], axis=1)[:, ::-1]                            # positives >= u_k
    neg_ge = np.cumsum(m[:, ::-1], axis=1)[:, ::-1]                        # negatives in cells from index j up
    fp = neg_ge[:, 1::2]                                                   # from cell E_k upward
    n_p = c.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(c > 0, tp / np.maximum(tp + fp, 1), 0.0)          # levels with no resampled positive add nothing
        return (c / n_p[:, None] * prec).sum(axis=1)


def bootstrap_ap(labels, scores, n_boot: int = 2000, seed: int = 0, chunk: int = 500) -> np.ndarray:
    """``n_boot`` average-precision values of stratified bootstrap resamples (same cells as :func:`bootstrap_auc`)."""
    return _cell_bootstrap(labels, scores, n_boot, seed, chunk, _ap_from_counts, "AP")

"""Overall metrics of one evaluated split, each with its count and intervals.

ROC AUC (stratified and pixel-block bootstrap), PR AUC, recall/FPR/precision at probability
thresholds, at thresholds giving target FPRs (also with the threshold re-derived per resample)
and at the top fraction, precision at deployment prevalences, and calibration. Every resample
draws from its own named seed stream (:mod:`lensaudit.utils.seeds`), so adding a metric never
moves another's interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.artifacts import healpix_column
from lensaudit.artifacts.operating import at_or_above
from lensaudit.evaluate.bootstrap import (
    bootstrap_ap,
    bootstrap_auc,
    bootstrap_auc_blocks,
    bootstrap_precision,
    bootstrap_proportion,
    bootstrap_ratio_blocks,
    bootstrap_recall_at_fpr,
    percentile_interval,
)
from lensaudit.evaluate.config import EvalConfig
from lensaudit.evaluate.metrics import (
    MetricError,
    calibration,
    confusion_at,
    pr_auc,
    precision_at_prevalence,
    roc_auc,
    threshold_at_fpr,
    threshold_at_top_fraction,
    wilson_interval,
)
from lensaudit.evaluate.result import (
    AucEntry,
    Calibration,
    CalibrationCurve,
    HighScoreCalibration,
    Interval,
    OverallMetrics,
    PrAucEntry,
    Proportion,
    Reestimated,
    TargetFprMetrics,
    ThresholdMetrics,
    TopFractionMetrics,
)
from lensaudit.utils.seeds import derive_seed


def stream(cfg: EvalConfig, *keys: str | int | float) -> int:
    """The seed of one resampling purpose (``evaluate.<keys>``) under the evaluation's seed."""
    return derive_seed(cfg.seed, "evaluate", *[str(k) if isinstance(k, float) else k for k in keys])


def interval(samples: np.ndarray) -> Interval:
    return Interval(**percentile_interval(samples))


def proportion(k: int, n: int, cfg: EvalConfig, seed: int) -> Proportion:
    """k of n with its Wilson 95 percent interval and a binomial bootstrap interval."""
    if not n:
        return Proportion(value=None, k=int(k), n=0)
    lo, hi = wilson_interval(k, n)
    return Proportion(value=k / n, k=int(k), n=int(n), wilson95=[float(lo), float(hi)],
                      bootstrap=interval(bootstrap_proportion(k, n, cfg.n_boot, seed)))


def auc_entry(y: np.ndarray, s: np.ndarray, cfg: EvalConfig, groups: np.ndarray | None = None,
              what: str = "overall") -> AucEntry:
    """ROC AUC with stratified (and, given HEALPix ``groups``, block) bootstrap intervals; or 'insufficient'."""
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos < cfg.min_count or n_neg < cfg.min_count:
        return AucEntry(value=None, n_pos=n_pos, n_neg=n_neg, status="insufficient")
    e = AucEntry(value=roc_auc(y, s), n_pos=n_pos, n_neg=n_neg,
                 bootstrap=interval(bootstrap_auc(y, s, cfg.n_boot, stream(cfg, "auc", what))))
    if groups is not None and cfg.block_bootstrap and len(np.unique(groups)) >= 5:
        e.block_bootstrap = interval(bootstrap_auc_blocks(y, s, groups, min(cfg.n_boot, 1000),
                                                          stream(cfg, "auc.blocks", what)))
    return e


def threshold_metrics(y: np.ndarray, s: np.ndarray, t: float, cfg: EvalConfig, key: str,
                      groups: np.ndarray | None = None) -> dict:
    """Recall, FPR and precision at threshold ``t`` (their resampling streams named by ``key``)."""
    c = confusion_at(y, s, t)
    n_pos, n_neg = c["tp"] + c["fn"], c["fp"] + c["tn"]
    prec = bootstrap_precision(c["tp"], n_pos, c["fp"], n_neg, cfg.n_boot, stream(cfg, key, "precision"))
    recall, fpr = (c["tp"] / n_pos if n_pos else np.nan), (c["fp"] / n_neg if n_neg else np.nan)
    sel = c["tp"] + c["fp"]
    out = {"threshold": float(t), "recall": proportion(c["tp"], n_pos, cfg, stream(cfg, key, "recall")),
           "fpr": proportion(c["fp"], n_neg, cfg, stream(cfg, key, "fpr")),
           "precision": Proportion(value=c["tp"] / sel if sel else None, k=c["tp"], n=sel,
                                   wilson95=[float(v) for v in wilson_interval(c["tp"], sel)] if sel else None,
                                   bootstrap=interval(prec)),
           "precision_at_prevalence": {str(pi): float(precision_at_prevalence(recall, fpr, pi))
                                       for pi in cfg.prevalences}}
    out.update(block_proportions(y, at_or_above(s, t), groups, cfg, key))
    return out


def block_proportions(y: np.ndarray, sel: np.ndarray, groups, cfg: EvalConfig, key: str) -> dict:
    """Recall and FPR intervals from resampling whole HEALPix pixels (spatially correlated rows move together)."""
    if groups is None or not cfg.block_bootstrap or len(np.unique(groups)) < 5:
        return {}
    g_uni, g_idx = np.unique(groups, return_inverse=True)
    out = {}
    for name, cls in (("recall", 1), ("fpr", 0)):
        m = y == cls
        k = np.bincount(g_idx[m & sel], minlength=g_uni.size)
        n = np.bincount(g_idx[m], minlength=g_uni.size)
        out[f"{name}_block_bootstrap"] = interval(bootstrap_ratio_blocks(k, n, min(cfg.n_boot, 2000),
                                                                         stream(cfg, key, name, "blocks")))
    return out


def _calibration(y: np.ndarray, p: np.ndarray, cfg: EvalConfig) -> Calibration:
    try:
        cal = calibration(y, p, cfg.calibration_bins)
    except MetricError as exc:
        return Calibration(status=str(exc))
    hi = p > cfg.high_score
    if len(np.unique(y[hi])) == 2:
        c_hi = calibration(y[hi], p[hi], max(2, cfg.calibration_bins // 2))
        high = HighScoreCalibration(above=cfg.high_score, n=int(hi.sum()), ece=c_hi["ece"], mce=c_hi["mce"],
                                    curve=CalibrationCurve(**c_hi["curve"]))
    else:
        high = HighScoreCalibration(above=cfg.high_score, n=int(hi.sum()), status="single class")
    rng = np.random.default_rng(stream(cfg, "calibration"))
    eces, mces = [], []
    for _ in range(min(cfg.n_boot, 300)):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].any() and not y[idx].all():
            c = calibration(y[idx], p[idx], cfg.calibration_bins)
            eces.append(c["ece"])
            mces.append(c["mce"])
    return Calibration(ece=cal["ece"], mce=cal["mce"], curve=CalibrationCurve(**cal["curve"]), n=int(len(y)),
                       ece_bootstrap=interval(np.array(eces)), mce_bootstrap=interval(np.array(mces)), high_score=high)


def overall_metrics(df: pd.DataFrame, cfg: EvalConfig) -> OverallMetrics:
    """Every overall metric of the joined table ``df`` (label, probability, logit[, healpix_*])."""
    y, p, s = df["label"].to_numpy(int), df["probability"].to_numpy(float), df["logit"].to_numpy(float)
    hp = healpix_column(df.columns)
    groups = df[hp].to_numpy() if hp else None
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    try:
        pr = PrAucEntry(value=pr_auc(y, s), n_pos=n_pos, n_neg=n_neg, n_boot=cfg.n_boot,
                        bootstrap=interval(bootstrap_ap(y, s, cfg.n_boot, stream(cfg, "pr_auc"))))
    except MetricError as exc:
        pr = PrAucEntry(value=None, status=str(exc))
    at_p = [ThresholdMetrics(**threshold_metrics(y, p, t, cfg, f"p>={t}", groups)) for t in cfg.thresholds]
    at_fpr = []
    for f in cfg.target_fprs:
        if f * n_neg < 1:
            at_fpr.append(TargetFprMetrics(target_fpr=f, status="insufficient",
                                           reason=f"{n_neg} negatives cannot resolve FPR {f}"))
            continue
        key = f"fpr={f}"
        e = TargetFprMetrics(target_fpr=f, **threshold_metrics(y, s, threshold_at_fpr(s[y == 0], f), cfg, key, groups))
        rec, thr = bootstrap_recall_at_fpr(y, s, f, cfg.n_boot, stream(cfg, key, "reestimated"))
        e.recall_threshold_reestimated = Reestimated(bootstrap=interval(rec), threshold_bootstrap=interval(thr),
                                                     note="threshold re-derived from each resample's negatives")
        at_fpr.append(e)
    t_top = threshold_at_top_fraction(s, cfg.top_fraction)
    top = TopFractionMetrics(fraction=cfg.top_fraction, **threshold_metrics(y, s, t_top, cfg, "top"))
    return OverallMetrics(n_pos=n_pos, n_neg=n_neg, roc_auc=auc_entry(y, s, cfg, groups), pr_auc=pr,
                          at_probability=at_p, at_target_fpr=at_fpr, at_top_fraction=top,
                          calibration=_calibration(y, p, cfg))

"""Stratified rates: metrics per tier, Tractor type, z-exposure bin, PSF size, depth and EBV bins,
FPR per confuser category, and failure tables (arrays and tables in, tables out)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from lensaudit.artifacts.operating import at_or_above
from lensaudit.evaluate.config import EvalConfig
from lensaudit.evaluate.metrics import confusion_at, wilson_interval
from lensaudit.evaluate.overall import auc_entry
from lensaudit.survey.photometry import depth_to_mag5

#: Manifest columns (or derived bins) evaluated per stratum.
STRATA = ("tier", "type", "nobs_z_bin", "psfsize_r_bin", "depth_r_bin", "ebv_bin")


def _bin(values: np.ndarray, edges: tuple[float, ...], unit: str) -> np.ndarray:
    labels = [f"<{edges[0]}{unit}"] + [f"{a}-{b}{unit}" for a, b in zip(edges[:-1], edges[1:], strict=True)] + [f">={edges[-1]}{unit}"]
    return np.asarray(labels, dtype=object)[np.searchsorted(np.asarray(edges), values, side="right")]


def bin_order(label: str) -> float:
    """Sort key of a :func:`_bin` label in the order of its edges: "<a" first, "a-b" by a, ">=b" by b."""
    m = re.match(r"^(<|>=)?(-?\d+(?:\.\d*)?)", str(label))
    if m is None:
        return np.inf
    return -np.inf if m.group(1) == "<" else float(m.group(2))


def add_bins(df: pd.DataFrame, cfg: EvalConfig) -> pd.DataFrame:
    df = df.copy()
    if "psfsize_r" in df:
        df["psfsize_r_bin"] = _bin(df["psfsize_r"].to_numpy(float), cfg.psfsize_edges_arcsec, "arcsec")
    if "psfdepth_r" in df:
        with np.errstate(divide="ignore", invalid="ignore"):
            df["depth_r_mag"] = depth_to_mag5(df["psfdepth_r"].to_numpy(float))
        df["depth_r_bin"] = _bin(np.nan_to_num(df["depth_r_mag"].to_numpy(), nan=0.0), cfg.depth_edges_mag, "mag")
    if "ebv" in df:
        df["ebv_bin"] = _bin(df["ebv"].to_numpy(float), cfg.ebv_edges_mag, "mag")
    return df


def stratify(df: pd.DataFrame, col: str, cfg: EvalConfig) -> pd.DataFrame:
    """One row per stratum value and threshold: counts, recall and FPR with Wilson intervals, AUC with
    bootstrap interval, or 'insufficient' below ``min_count``. For ``tier`` positives (A, B) give recall
    and negatives (N1, N2) give FPR against their own pool."""
    rows = []
    y_all, s_all = df["label"].to_numpy(int), df["logit"].to_numpy(float)
    for val, g in df.groupby(col, sort=True):
        y, p, s = g["label"].to_numpy(int), g["probability"].to_numpy(float), g["logit"].to_numpy(float)
        n_pos, n_neg = int(y.sum()), int((1 - y).sum())
        if col == "tier" and n_pos:  # tier positives against every negative
            yy, ss = np.r_[y[y == 1], y_all[y_all == 0]], np.r_[s[y == 1], s_all[y_all == 0]]
        else:
            yy, ss = y, s
        auc = (auc_entry(yy, ss, cfg, what=f"{col}={val}").model_dump() if len(np.unique(yy)) == 2
               else {"value": None, "status": "single class"})
        for t in cfg.thresholds:
            c = confusion_at(y, p, t)
            r_lo, r_hi = wilson_interval(c["tp"], n_pos)
            f_lo, f_hi = wilson_interval(c["fp"], n_neg)
            ok_pos, ok_neg = n_pos >= cfg.min_count, n_neg >= cfg.min_count
            rows.append({"stratum": col, "value": str(val), "threshold": t, "n_pos": n_pos, "n_neg": n_neg,
                         "recall": c["tp"] / n_pos if ok_pos else np.nan,
                         "recall_lo95": float(r_lo) if ok_pos else np.nan, "recall_hi95": float(r_hi) if ok_pos else np.nan,
                         "fpr": c["fp"] / n_neg if ok_neg else np.nan,
                         "fpr_lo95": float(f_lo) if ok_neg else np.nan, "fpr_hi95": float(f_hi) if ok_neg else np.nan,
                         "auc": auc.get("value") if auc.get("value") is not None else np.nan,
                         "auc_lo95": auc["bootstrap"]["ci95"][0] if auc.get("bootstrap") else np.nan,
                         "auc_hi95": auc["bootstrap"]["ci95"][1] if auc.get("bootstrap") else np.nan,
                         "status": "ok" if (ok_pos or ok_neg) else "insufficient"})
    return pd.DataFrame(rows)


def confuser_fpr(df: pd.DataFrame, cfg: EvalConfig) -> pd.DataFrame:
    neg = df[df["label"] == 0].copy()
    if "confuser_category" not in neg:
        return pd.DataFrame()
    neg["confuser_category"] = neg["confuser_category"].replace("", "none")
    rows = []
    for cat, g in neg.groupby("confuser_category"):
        for t in cfg.thresholds:
            k, n = int(at_or_above(g["probability"], t).sum()), len(g)
            lo, hi = wilson_interval(k, n)
            ok = n >= cfg.min_count
            rows.append({"confuser_category": cat, "threshold": t, "n_neg": n, "n_above": k,
                         "fpr": k / n if ok else np.nan, "fpr_lo95": float(lo) if ok else np.nan,
                         "fpr_hi95": float(hi) if ok else np.nan, "status": "ok" if ok else "insufficient"})
    return pd.DataFrame(rows)


def failure_tables(df: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """Highest-scoring negatives and lowest-scoring positives per Tractor type, with their metadata."""
    parts = []
    for _, g in df.groupby("type"):
        parts.append(g[g.label == 0].nlargest(n, "probability").assign(failure="high_scoring_negative"))
        parts.append(g[g.label == 1].nsmallest(n, "probability").assign(failure="low_scoring_positive"))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return out.drop(columns=[c for c in ("features",) if c in out])

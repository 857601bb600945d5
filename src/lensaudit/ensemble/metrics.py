"""Diversity, uncertainty and yield metrics of an ensemble (arrays and frames in, tables out).

Every proportion carries its Wilson 95 percent interval; correlations carry a percentile bootstrap
interval over objects. Ties are broken by row order (the caller sorts rows by id), so every table is
deterministic.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from lensaudit.artifacts.operating import at_or_above
from lensaudit.errors import InputError
from lensaudit.evaluate.metrics import wilson_interval
from lensaudit.utils.seeds import rng


def proportion_row(k: int, n: int) -> dict:
    """k of n as a table row: k, n, value and its Wilson 95 percent interval (NaN when n is 0)."""
    if n == 0:
        return {"k": int(k), "n": 0, "value": np.nan, "lo95": np.nan, "hi95": np.nan}
    lo, hi = wilson_interval(k, n)
    return {"k": int(k), "n": int(n), "value": k / n, "lo95": float(lo), "hi95": float(hi)}


def _pearson_cols(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching columns of (n, B) arrays."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=0) / den, np.nan)


def correlations(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int, *keys: str | int) -> dict:
    """Pearson and Spearman (rank) correlation of two score vectors, each with a bootstrap 95 percent interval
    (resampling objects; the stream is named by ``keys`` under ``seed``)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = x.size
    out: dict = {"n": int(n)}
    if n < 3:
        return out | {k: np.nan for k in ("pearson", "pearson_lo95", "pearson_hi95", "spearman", "spearman_lo95",
                                          "spearman_hi95")}
    rx, ry = rankdata(x), rankdata(y)
    idx = rng(seed, "ensemble.correlation", *keys).integers(0, n, size=(n, n_boot))
    for name, a, b in (("pearson", x, y), ("spearman", rx, ry)):
        out[name] = float(_pearson_cols(a[:, None], b[:, None])[0])
        if name == "spearman":  # rank again inside each resample: the resample's own Spearman
            bs = _pearson_cols(rankdata(x[idx], axis=0), rankdata(y[idx], axis=0))
        else:
            bs = _pearson_cols(a[idx], b[idx])
        bs = bs[np.isfinite(bs)]
        out[f"{name}_lo95"], out[f"{name}_hi95"] = ((float(np.percentile(bs, 2.5)), float(np.percentile(bs, 97.5)))
                                                    if bs.size else (np.nan, np.nan))
    return out


def pairwise_correlations(logits: pd.DataFrame, strata: pd.Series | None = None, n_boot: int = 1000,
                          seed: int = 0, min_count: int = 10) -> pd.DataFrame:
    """Pearson (of logits) and Spearman correlation of every pair of member columns, over all rows and per
    stratum (strata with fewer than ``min_count`` rows are left out)."""
    cols = list(logits.columns)
    if len(cols) < 2:
        raise InputError("pairwise correlations need two or more members")
    groups = [("all", np.ones(len(logits), bool))]
    if strata is not None:
        s = strata.astype("string").fillna("none").to_numpy()
        groups += [(str(v), s == v) for v in sorted(set(s))]
    rows = []
    for (name, m), (a, b) in itertools.product(groups, itertools.combinations(cols, 2)):
        if m.sum() < min_count:
            continue
        c = correlations(logits[a].to_numpy()[m], logits[b].to_numpy()[m], n_boot, seed, name, a, b)
        rows.append({"stratum": name, "member_a": a, "member_b": b, **c})
    return pd.DataFrame(rows)


def unanimous(probs: np.ndarray, threshold: float) -> np.ndarray:
    """True where every member is on the same side of ``threshold`` (probability >= threshold is a detection)."""
    det = at_or_above(probs, threshold)
    return det.all(axis=1) | (~det).all(axis=1)


def disagreement_table(probs: pd.DataFrame, labels: np.ndarray, threshold: float,
                       strata: pd.Series | None = None) -> pd.DataFrame:
    """Fraction of objects on which the members disagree at ``threshold`` (not unanimous), overall and per
    label and stratum, and per member pair."""
    p = probs.to_numpy(float)
    y = np.asarray(labels).astype(int)
    dis = ~unanimous(p, threshold)
    s = (strata.astype("string").fillna("none").to_numpy() if strata is not None
         else np.full(len(y), "all", dtype=object))
    rows = []
    for st in (["all"] + sorted(set(s)) if strata is not None else ["all"]):
        ms = np.ones(len(y), bool) if st == "all" else s == st
        for lab, ml in (("all", np.ones(len(y), bool)), ("lens", y == 1), ("non-lens", y == 0)):
            m = ms & ml
            rows.append({"stratum": st, "label": lab, "pair": "all members", **proportion_row(int(dis[m].sum()), int(m.sum()))})
    det = at_or_above(p, threshold)
    for a, b in itertools.combinations(range(p.shape[1]), 2):
        d = det[:, a] != det[:, b]
        rows.append({"stratum": "all", "label": "all", "pair": f"{probs.columns[a]} vs {probs.columns[b]}",
                     **proportion_row(int(d.sum()), len(d))})
    return pd.DataFrame(rows)


def set_aside_order(uncertainty: np.ndarray) -> np.ndarray:
    """Row order from most to least uncertain (ties: earlier rows first)."""
    return np.lexsort((np.arange(len(uncertainty)), -np.asarray(uncertainty, float)))


def selective_curve(labels: np.ndarray, score: np.ndarray, uncertainty: np.ndarray, threshold: float,
                    fractions) -> pd.DataFrame:
    """Recall and precision at ``threshold`` on the objects kept after setting aside the most uncertain
    ``fraction`` (for human inspection), and the fraction of lenses set aside with them."""
    y = np.asarray(labels).astype(int)
    s = np.asarray(score, float)
    if not (y.size == s.size == np.asarray(uncertainty).size):
        raise InputError("selective curve: labels, score and uncertainty differ in length")
    order = set_aside_order(uncertainty)
    rows = []
    for f in fractions:
        n_out = int(np.floor(f * y.size))
        keep = np.ones(y.size, bool)
        keep[order[:n_out]] = False
        det = at_or_above(s, threshold)
        tp, pos, sel = int((det & keep & (y == 1)).sum()), int((keep & (y == 1)).sum()), int((det & keep).sum())
        r, pr = proportion_row(tp, pos), proportion_row(tp, sel)
        lens_out = proportion_row(int(((~keep) & (y == 1)).sum()), int((y == 1).sum()))
        rows.append({"set_aside": float(f), "n_set_aside": n_out, "n_kept": int(keep.sum()),
                     "recall": r["value"], "recall_lo95": r["lo95"], "recall_hi95": r["hi95"],
                     "precision": pr["value"], "precision_lo95": pr["lo95"], "precision_hi95": pr["hi95"],
                     "lenses_set_aside": lens_out["value"]})
    return pd.DataFrame(rows)


def top_k_mask(score: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest scores (ties: earlier rows first), as a mask."""
    s = np.asarray(score, float)
    order = np.lexsort((np.arange(s.size), -s))
    m = np.zeros(s.size, bool)
    m[order[: min(k, s.size)]] = True
    return m


def top_k_yield(score: np.ndarray, targets: dict[str, np.ndarray], ks) -> pd.DataFrame:
    """Recall of each target set (e.g. Tier-A candidates, true lenses) within the top-K list, per K."""
    rows = []
    for k in ks:
        top = top_k_mask(score, k)
        for name, t in targets.items():
            t = np.asarray(t, bool)
            pr = proportion_row(int((top & t).sum()), int(t.sum()))
            rows.append({"k": int(k), "target": name, "found": pr.pop("k"), **pr})
    return pd.DataFrame(rows)


def unique_finds(member_scores: pd.DataFrame, list_score: np.ndarray, target: np.ndarray, k: int) -> dict:
    """Of the targets in a top-``k`` list, how many are in the top-``k`` of exactly one member (and which),
    and how many in no member's top-``k``."""
    t = np.asarray(target, bool)
    in_list = top_k_mask(list_score, k) & t
    tops = np.column_stack([top_k_mask(member_scores[c].to_numpy(), k) for c in member_scores.columns])
    n_members = tops.sum(axis=1)
    out = {"k": int(k), "targets_in_list": int(in_list.sum()),
           "found_by_one_member": int((in_list & (n_members == 1)).sum()),
           "found_by_no_member": int((in_list & (n_members == 0)).sum())}
    for j, c in enumerate(member_scores.columns):
        out[f"only_{c}"] = int((in_list & (n_members == 1) & tops[:, j]).sum())
    return out

"""Mock survey only: metrics against the truth table (true recall against Einstein radius, arc
brightness and seeing; the fraction of Tier-A/B labels that are not lenses; the AUC of an oracle
that scores each object by its true arc S/N, the ceiling next to the model's). Truth is for
measuring, never for fitting: nothing here feeds back into a threshold or a model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.evaluate.config import EvalConfig
from lensaudit.evaluate.metrics import wilson_interval
from lensaudit.evaluate.overall import auc_entry, proportion, stream
from lensaudit.evaluate.result import TruthSummary


def truth_metrics(df: pd.DataFrame, truth: pd.DataFrame, cfg: EvalConfig) -> tuple[TruthSummary, pd.DataFrame]:
    """True recall vs Einstein radius, arc brightness and seeing (a table), and wrong Tier-A/B labels."""
    t = truth.copy()
    t["id"] = t["id"].astype(str)
    lenses = t[t["kind"] == "lens"].set_index("id")
    d = df.copy()
    d["true_lens"] = d["id"].isin(lenses.index)
    out = {"n_true_lenses_scored": int(d["true_lens"].sum())}
    b = d[d["tier"] == "B"]
    if len(b):
        k = int((~b["true_lens"]).sum())
        out["tier_b_wrong_fraction"] = proportion(k, len(b), cfg, stream(cfg, "truth", "tier_b_wrong"))
    a = d[d["tier"] == "A"]
    if len(a):
        out["tier_a_wrong_fraction"] = proportion(int((~a["true_lens"]).sum()), len(a), cfg,
                                                 stream(cfg, "truth", "tier_a_wrong"))
    if "arc_snr" in lenses and "label" in d:
        # the ceiling the truth allows: an oracle that scores every object by its true arc S/N
        oracle = d["id"].map(lenses["arc_snr"]).fillna(0.0).to_numpy(float)
        y = d["label"].to_numpy(int)
        out["oracle_auc"] = auc_entry(y, oracle, cfg, what="oracle")
        sel = (y == 0) | (d["tier"] == "A").to_numpy()
        out["oracle_auc_tier_a"] = auc_entry(y[sel], oracle[sel], cfg, what="oracle.tier_a")
    tl = d[d["true_lens"]].join(lenses[["theta_e", "arc_rmag"]], on="id")
    rows = []
    quantities = [("theta_e", (0.5, 1.0, 1.5, 2.0, 3.0)), ("arc_rmag", (19, 20, 21, 22, 23, 24, 26))]
    if "psfsize_r" in tl:
        quantities.append(("psfsize_r", (0.0, *cfg.psfsize_edges_arcsec, 5.0)))
    for col, edges in quantities:
        bins = pd.cut(tl[col], edges)
        for iv, g in tl.groupby(bins, observed=True):
            for th in cfg.thresholds:
                k, n = int((g["probability"] >= th).sum()), len(g)
                lo, hi = wilson_interval(k, n)
                rows.append({"quantity": col, "bin": str(iv), "threshold": th, "n": n, "k": k,
                             "true_recall": k / n if n >= cfg.min_count else np.nan,
                             "lo95": float(lo) if n >= cfg.min_count else np.nan,
                             "hi95": float(hi) if n >= cfg.min_count else np.nan,
                             "status": "ok" if n >= cfg.min_count else "insufficient"})
    return TruthSummary(**out), pd.DataFrame(rows)

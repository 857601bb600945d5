"""Evaluation figures (matplotlib, Agg): ROC and PR with bootstrap bands, reliability diagram,
FPR by confuser category, recall and FPR versus PSF size and depth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import EvalDir
from lensaudit.evaluate.overall import stream
from lensaudit.evaluate.result import EvaluationResult
from lensaudit.evaluate.strata import bin_order
from lensaudit.utils.display import pyplot
from lensaudit.utils.display import save_figure as _save


def _curves(y, s, rng, n_boot: int, grid: np.ndarray):
    """ROC (TPR on an FPR grid) and PR (precision on a recall grid) for the data and for resamples."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    def one(yy, ss):
        fpr, tpr, _ = roc_curve(yy, ss)
        prec, rec, _ = precision_recall_curve(yy, ss)
        return np.interp(grid, fpr, tpr), np.interp(grid, rec[::-1], prec[::-1])

    base = one(y, s)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    boots = []
    for _ in range(n_boot):
        idx = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        boots.append(one(y[idx], s[idx]))
    b = np.array(boots)  # (n_boot, 2, grid)
    return base, np.percentile(b, [2.5, 97.5], axis=0)


def write_figures(df: pd.DataFrame, tables: dict, res: EvaluationResult, out: Path, cfg) -> list[str]:
    plt = pyplot()
    names = []
    y, s = df["label"].to_numpy(int), df["logit"].to_numpy(float)
    grid = np.linspace(0, 1, 201)
    (roc, pr), band = _curves(y, s, np.random.default_rng(stream(cfg, "figures.curves")), 200, grid)
    o = res.overall
    fig, ax = plt.subplots(1, 2, figsize=(9, 4))
    ax[0].fill_between(grid, band[0, 0], band[1, 0], alpha=0.3, label="95% bootstrap")
    ax[0].plot(grid, roc, label=f"AUC {o.roc_auc.value if o.roc_auc.value is not None else float('nan'):.3f}")
    ax[0].plot([0, 1], [0, 1], ":", color="grey")
    ax[0].set(xlabel="false-positive rate", ylabel="recall (TPR)", title=f"ROC ({o.n_pos} pos, {o.n_neg} neg)")
    ax[0].legend(loc="lower right")
    ax[1].fill_between(grid, band[0, 1], band[1, 1], alpha=0.3, label="95% bootstrap")
    ax[1].plot(grid, pr, label=f"AP {o.pr_auc.value if o.pr_auc.value is not None else float('nan'):.3f}")
    ax[1].set(xlabel="recall", ylabel="precision", title="precision-recall")
    ax[1].legend(loc="lower left")
    names.append(_save(fig, EvalDir(out).figure("roc_pr")))
    cal = o.calibration
    if cal.curve is not None:
        c = cal.curve
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        yerr = np.abs(np.array([c.fraction_positive_lo95, c.fraction_positive_hi95], dtype=float)
                      - np.array(c.fraction_positive))
        ax.errorbar(c.mean_probability, c.fraction_positive, yerr=yerr, fmt="o-", label=f"ECE {cal.ece:.3f}")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set(xlabel="mean predicted probability", ylabel="fraction of lenses", title="reliability (equal-count bins)")
        ax.legend()
        names.append(_save(fig, EvalDir(out).figure("reliability")))
    cf = tables.get("confuser_fpr")
    if cf is not None and len(cf):
        t0 = cf[cf.threshold == cfg.thresholds[0]]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        x = np.arange(len(t0))
        err = np.nan_to_num(np.abs(t0[["fpr_lo95", "fpr_hi95"]].to_numpy().T - t0["fpr"].to_numpy()))
        ax.bar(x, np.nan_to_num(t0["fpr"].to_numpy()), yerr=err, capsize=3)
        ax.set_xticks(x, [f"{c}\n(n={n})" for c, n in zip(t0.confuser_category, t0.n_neg, strict=True)], fontsize=7)
        ax.set(ylabel=f"FPR at p >= {cfg.thresholds[0]}", title="false positives by confuser category")
        names.append(_save(fig, EvalDir(out).figure("fpr_by_confuser")))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("strata_psfsize_r_bin", "strata_depth_r_bin"), strict=True):
        t = tables.get(key)
        if t is None or not len(t):
            ax.set_axis_off()
            continue
        t = t[t.threshold == cfg.thresholds[0]]
        t = t.iloc[np.argsort([bin_order(v) for v in t.value], kind="stable")]     # bins in edge order
        x = np.arange(len(t))
        for col, lab in (("recall", "recall"), ("fpr", "FPR")):
            v = t[col].to_numpy()
            err = np.nan_to_num(np.abs(t[[f"{col}_lo95", f"{col}_hi95"]].to_numpy().T - v))
            ax.errorbar(x, v, yerr=err, fmt="o-", capsize=3, label=lab)
        ax.set_xticks(x, [f"{v}\n{a}/{b}" for v, a, b in zip(t.value, t.n_pos, t.n_neg, strict=True)], fontsize=6)
        ax.set(title=key.replace("strata_", "").replace("_bin", "") + f" (p >= {cfg.thresholds[0]}; n_pos/n_neg)",
               ylabel="rate (95% Wilson interval)")
        ax.legend(fontsize=7)
    names.append(_save(fig, EvalDir(out).figure("metrics_vs_conditions")))
    return names

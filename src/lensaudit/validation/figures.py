"""Figures of the validation matrix: a universes x families heatmap of the closure error with its interval, and
the gate statistic against the absolute closure error with its rank correlation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.artifacts import ValidationDir
from lensaudit.utils.display import pyplot, save_figure


def heatmap(cells: pd.DataFrame, summary: dict, path) -> str:
    """Mean Delta over seeds per universe (rows) and family (columns); each cell also prints the range of the
    seeds' 95 percent intervals and the majority verdict."""
    plt = pyplot()
    us = list(dict.fromkeys(cells["universe"]))
    fs = list(dict.fromkeys(cells["family"]))
    m = np.full((len(us), len(fs)), np.nan)
    text = {}
    for p in summary["per_universe_family"]:
        i, j = us.index(p["universe"]), fs.index(p["family"])
        m[i, j] = p["delta_mean"]
        g = cells[(cells["universe"] == p["universe"]) & (cells["family"] == p["family"])]
        text[i, j] = (f"{p['delta_mean']:+.3f}\n[{g['delta_lo95'].min():+.2f}, {g['delta_hi95'].max():+.2f}]\n"
                      f"{p['majority_verdict']} {p['seed_agreement']:.0%}")
    lim = max(0.05, float(np.nanmax(np.abs(m))) if np.isfinite(m).any() else 0.05)
    fig, ax = plt.subplots(figsize=(1.9 * len(fs) + 2, 1.1 * len(us) + 1.6), constrained_layout=True)
    im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
    for (i, j), t in text.items():
        ax.text(j, i, t, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(fs)), fs)
    ax.set_yticks(range(len(us)), us)
    fig.colorbar(im, ax=ax, label="Delta = C_inj - C_true (mean over seeds)")
    ax.set_title(f"Closure error per universe and family (tolerance +-{summary['tolerance']:g}); "
                 "text: mean, range of 95% intervals, majority gate verdict and its seed agreement", fontsize=8)
    return save_figure(fig, path)


def scatter(cells: pd.DataFrame, summary: dict, path) -> str:
    """Gate statistic against |Delta| per cell, planted control marked, with the Spearman rank correlation."""
    plt = pyplot()
    rc = summary["rank_correlation"]
    stat = rc["statistic"]
    fig, ax = plt.subplots(figsize=(6.2, 4.4), constrained_layout=True)
    for fam, g in cells.groupby("family", sort=False):
        mk = "x" if g["planted"].iat[0] else "o"
        ax.errorbar(g[stat], g["delta"].abs(), yerr=g["delta_se"], fmt=mk, ms=5, capsize=2,
                    label=fam + (" (planted)" if g["planted"].iat[0] else ""))
    ax.axhline(summary["tolerance"], color="k", lw=0.8, ls="--", label=f"tolerance {summary['tolerance']:g}")
    ax.set_xlabel(f"gate statistic: {stat} (computed without truth)")
    ax.set_ylabel("|Delta| (closure, from the truth)")
    rho = "n/a" if rc["rho"] is None else f"{rc['rho']:.2f} (p {rc['p']:.2g}, {rc['n']} cells, {rc['cells']})"
    ax.set_title(f"Spearman rank correlation {rho}", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def validation_figures(cells: pd.DataFrame, summary: dict, vd: ValidationDir) -> dict[str, str]:
    vd.figures.mkdir(parents=True, exist_ok=True)
    return {"heatmap": heatmap(cells, summary, vd.figure("closure_heatmap")),
            "scatter": scatter(cells, summary, vd.figure("gate_vs_closure"))}


__all__ = ["heatmap", "scatter", "validation_figures"]

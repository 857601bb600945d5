"""Figures of an ensemble run: member score correlations, selective classification, yield at budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import EnsembleDir
from lensaudit.utils.display import pyplot, save_figure


def correlation_heatmaps(corr: pd.DataFrame, groups: dict[str, list[str]], path: Path) -> str:
    """Pearson correlation of logits (all audited objects) for the baseline and each definition's members."""
    plt = pyplot()
    gs = [g for g in groups if g != "all"]
    fig, axes = plt.subplots(1, len(gs), figsize=(3.6 * len(gs) + 0.8, 3.3), squeeze=False, constrained_layout=True)
    im = None
    for ax, g in zip(axes[0], gs, strict=True):
        names = ["baseline", *groups[g]]
        c = corr[(corr["group"] == g) & (corr["stratum"] == "all")]
        m = np.eye(len(names))
        for r in c.itertuples():
            i, j = names.index(r.member_a), names.index(r.member_b)
            m[i, j] = m[j, i] = r.pearson
        im = ax.imshow(m, vmin=0.5, vmax=1, cmap="magma")  # member correlations sit high; 0.5 keeps them apart
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if m[i, j] > 0.8 else "white")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(f"{g}: Pearson r of logits", fontsize=9)
    fig.colorbar(im, ax=axes[0, -1], shrink=0.8)
    return save_figure(fig, path)


def selective_curves(sel: pd.DataFrame, path: Path) -> str:
    """Recall and precision on the kept objects as the most uncertain fraction is set aside."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for (scorer, unc), g in sel.groupby(["scorer", "uncertainty"], sort=False):
        ls = "--" if scorer == "baseline" else "-"
        for ax, q in zip(axes, ("recall", "precision"), strict=True):
            x = 100 * g["set_aside"].to_numpy(float)
            ax.plot(x, g[q].to_numpy(float), ls=ls, marker="o", ms=3, label=f"{scorer} ({unc})")
    for ax, q in zip(axes, ("recall", "precision"), strict=True):
        ax.set_xlabel("most uncertain objects set aside (percent)")
        ax.set_ylabel(f"{q} on the kept objects")
        ax.set_ylim(0, 1.02)
    axes[1].legend(fontsize=6, loc="lower right")
    return save_figure(fig, path)


def yield_curves(yields: pd.DataFrame, path: Path) -> str:
    """Fraction of each target set inside the top-K list, per scorer, with Wilson 95 percent bars."""
    plt = pyplot()
    ts = list(dict.fromkeys(yields["target"]))
    fig, axes = plt.subplots(1, len(ts), figsize=(3.8 * len(ts), 3.4), squeeze=False, constrained_layout=True)
    scorers = list(dict.fromkeys(yields["scorer"]))
    show = [s for s in scorers if s == "baseline" or s.startswith(("average_", "gate_", "meta_"))]
    for ax, t in zip(axes[0], ts, strict=True):
        for i, s in enumerate(show):
            g = yields[(yields["target"] == t) & (yields["scorer"] == s)]
            k = g["k"].to_numpy(float) * (1 + 0.015 * (i - len(show) / 2))  # spread the bars apart
            v = g["value"].to_numpy(float)
            ax.errorbar(k, v, yerr=[v - g["lo95"].to_numpy(float), g["hi95"].to_numpy(float) - v], marker="o", ms=3,
                        capsize=2, lw=1.5 if s == "baseline" else 1, ls="--" if s == "baseline" else "-", label=s)
        ax.set_xscale("log")
        ax.set_xlabel("inspection budget K (top-K list)")
        ax.set_ylabel(f"fraction of {t} found")
        ax.set_ylim(0, 1.02)
    axes[0, 0].legend(fontsize=6)
    return save_figure(fig, path)


def write_figures(tables: dict[str, pd.DataFrame], groups: dict[str, list[str]], cfg, ed: EnsembleDir) -> list[str]:
    ed.figures.mkdir(parents=True, exist_ok=True)
    return [correlation_heatmaps(tables["correlations"], groups, ed.figure("correlations")),
            selective_curves(tables["selective"], ed.figure("selective")),
            yield_curves(tables["yield"], ed.figure("yield"))]

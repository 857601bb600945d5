"""Figures of a selection-function run: completeness heatmaps theta_E x PSF per depth bin, marginal
curves with Jeffreys 68 percent bands per family, and completeness against source size and concentration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import SelectionRunDir
from lensaudit.artifacts.operating import headline
from lensaudit.selection.function import SelectionFunction
from lensaudit.utils.display import pyplot, save_figure

LABELS = {"theta_e": "Einstein radius theta_E (arcsec)", "psf_fwhm": "r-band PSF FWHM (arcsec)",
          "depth": "r-band 5-sigma depth (AB mag)", "arc_mag": "lensed arc r magnitude (AB)",
          "src_r_half_arcsec": "source half-light radius (arcsec)", "src_concentration": "source concentration 5 log(r80/r20)",
          "beta_frac": "source offset beta / theta_E"}


def heatmap(sf: SelectionFunction, threshold: str, path: Path) -> str:
    """theta_E x PSF completeness per depth bin, marginalised (pooled) over arc magnitude."""
    plt = pyplot()
    t = sf.table[sf.table["threshold"] == threshold]
    g = t.groupby(["i_theta_e", "i_psf_fwhm", "i_depth"])[["k", "n"]].sum().reset_index()
    nd = sf.grid.shape[2]
    fig, axes = plt.subplots(1, nd, figsize=(3.2 * nd + 1, 3.4), squeeze=False, constrained_layout=True)
    e = sf.grid.edges
    for j in range(nd):
        ax = axes[0, j]
        m = np.full(sf.grid.shape[:2], np.nan)
        sel = g[g["i_depth"] == j]
        ok = sel["n"] >= sf.meta.get("min_count", 1)
        m[sel["i_theta_e"][ok], sel["i_psf_fwhm"][ok]] = (sel["k"] / sel["n"])[ok]
        im = ax.pcolormesh(e["psf_fwhm"], e["theta_e"], m, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"depth {e['depth'][j]:g}-{e['depth'][j + 1]:g} mag", fontsize=9)
        ax.set_xlabel(LABELS["psf_fwhm"])
        if j == 0:
            ax.set_ylabel(LABELS["theta_e"])
    fig.colorbar(im, ax=axes[0, -1], label=f"completeness ({threshold})")
    fig.suptitle(f"{sf.meta.get('family')}: completeness, pooled over arc magnitude (grey: no or too few injections)",
                 fontsize=9)
    return save_figure(fig, path)


def marginal_curves(marg: pd.DataFrame, threshold: str, path: Path) -> str:
    plt = pyplot()
    qs = [q for q in LABELS if q in set(marg["quantity"])]
    fig, axes = plt.subplots(1, len(qs), figsize=(3.0 * len(qs), 3.0), squeeze=False, constrained_layout=True)
    for ax, q in zip(axes[0], qs, strict=True):
        for fam, g in marg[(marg["quantity"] == q) & (marg["threshold"] == threshold)].groupby("family", sort=False):
            x = (g["lo"] + g["hi"]) / 2 if q in ("theta_e", "psf_fwhm", "depth", "arc_mag") else g["median"]
            ax.plot(np.asarray(x, float), g["completeness"].to_numpy(float), marker="o", ms=3, label=fam)
            ax.fill_between(np.asarray(x, float), g["lo68"].to_numpy(float), g["hi68"].to_numpy(float), alpha=0.25)
        ax.set_xlabel(LABELS[q], fontsize=8)
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel(f"completeness ({threshold}), 68% Jeffreys band")
    axes[0, 0].legend(fontsize=7)
    return save_figure(fig, path)


def selection_figures(rd: SelectionRunDir, families: list[str], marg: pd.DataFrame) -> list[str]:
    """The heatmap of each family and the marginal curves, at the run's headline operating point."""
    rd.figures.mkdir(parents=True, exist_ok=True)
    names = []
    for f in families:
        sf = SelectionFunction.load(rd.selection_function(f))
        names.append(heatmap(sf, headline(sf.thresholds), rd.heatmap(f)))
    names.append(marginal_curves(marg, headline(marg["threshold"].unique()), rd.marginals_figure))
    return names


__all__ = ["heatmap", "marginal_curves", "selection_figures"]

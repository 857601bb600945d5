"""Selection functions of the baseline and of each ensemble on the *same* injections.

One selection run (:func:`lensaudit.selection.run.run_selection`) injects every source once and scores
each injected cutout with the baseline and with every member (``extra_checkpoints``); the combinations
are formed per injection exactly as for real objects (an injection's domain is its host's). Because the
detections are paired, a difference between two scorers is tested per cell with the exact McNemar test
(injections found by one and missed by the other), not by comparing two independent intervals.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from lensaudit.artifacts import OperatingPoint
from lensaudit.artifacts.operating import by_name, headline
from lensaudit.config import load_config
from lensaudit.ensemble import combine
from lensaudit.ensemble.domains import own_member
from lensaudit.evaluate.metrics import wilson_interval
from lensaudit.utils.display import pyplot, save_figure

log = logging.getLogger(__name__)


def mcnemar_p(found_a: np.ndarray, found_b: np.ndarray) -> float:
    """Exact two-sided McNemar p-value of paired detections (1 when no injection is found by only one)."""
    a, b = np.asarray(found_a, bool), np.asarray(found_b, bool)
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_table(recs: pd.DataFrame, scores: dict[str, np.ndarray], ops: list[OperatingPoint], cells: np.ndarray,
                 min_count: int) -> pd.DataFrame:
    """Per scorer (against ``baseline``), operating point and cell (and ``all``): completeness of both, the paired
    counts and the McNemar p-value."""
    base = scores["baseline"]
    rows = []
    for op in ops:
        fb = op.detected(base)
        for name, s in scores.items():
            if name == "baseline":
                continue
            fs = op.detected(s)
            for cell in ["all", *np.unique(cells)]:
                m = np.ones(len(recs), bool) if cell == "all" else cells == cell
                n = int(m.sum())
                if n < min_count:
                    continue
                kb, ks = int(fb[m].sum()), int(fs[m].sum())
                lo, hi = wilson_interval(ks, n)
                rows.append({"scorer": name, "threshold": op.name, "cell": str(cell), "n": n,
                             "completeness_baseline": kb / n, "completeness": ks / n, "lo95": float(lo),
                             "hi95": float(hi), "diff": (ks - kb) / n,
                             "only_this": int((fs[m] & ~fb[m]).sum()), "only_baseline": int((fb[m] & ~fs[m]).sum()),
                             "mcnemar_p": mcnemar_p(fs[m], fb[m])})
    return pd.DataFrame(rows)


def injection_scores(recs: pd.DataFrame, groups: dict[str, list[str]], host_domains: pd.DataFrame,
                     defs: dict, gate_weight: float,
                     meta_paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """Baseline, members and every combination for each injection (its domain is its host's)."""
    from lensaudit.train.meta import apply_meta

    out = {"baseline": recs["probability"].to_numpy(float)}
    for n in dict.fromkeys(n for names in groups.values() for n in names):
        out[n] = recs[f"probability_{n}"].to_numpy(float)
    ids = pd.Series(np.arange(len(recs)).astype(str))
    for g, names in groups.items():
        p = np.column_stack([recs[f"probability_{n}"].to_numpy(float) for n in names])
        out[f"average_{g}"] = combine.average(p)
        if g in defs:  # a definition's own members (not 'all'): gate by the host's domain
            own = own_member(recs["host_id"].astype(str).map(host_domains[g]), defs[g])
            out[f"gate_{g}"] = combine.domain_gate(p, own, gate_weight)
        if g in meta_paths:
            preds = {n: pd.DataFrame({"id": ids, "logit": recs[f"logit_{n}"].to_numpy(float)}) for n in names}
            out[f"meta_{g}"] = apply_meta(meta_paths[g], preds, pd.DataFrame({"id": ids, "label": 1}))[
                "probability"].to_numpy()
    return out


def compare_selection(cfg, baseline: Path, members: dict[str, Path], groups: dict[str, list[str]],
                      host_domains: pd.DataFrame, defs: dict, meta_paths: dict[str, Path],
                      out: Path) -> dict:
    """Run the injections (resumable) and write the comparison table (CSV and Parquet) and a figure per family
    into the ensemble folder ``out`` (:class:`EnsembleDir`)."""
    from lensaudit.artifacts import EnsembleDir, write_table
    from lensaudit.inject.records import read_injections
    from lensaudit.selection.config import SelectionConfig
    from lensaudit.selection.grid import Grid
    from lensaudit.selection.run import run_selection

    ed = EnsembleDir(out)
    sc = cfg.selection
    base = load_config(sc.config, SelectionConfig)
    fams = tuple(f for f in base.families if sc.families is None or f.name in sc.families)
    if not fams:
        from lensaudit.errors import InputError

        raise InputError(f"ensemble selection: none of families {list(sc.families)} is in {sc.config}")
    upd = {"checkpoint": str(baseline), "extra_checkpoints": {n: str(p) for n, p in members.items()},
           "out": str(ed.selection_run.root), "features": False, "families": fams}
    if sc.n_per_cell:
        upd["n_per_cell"] = sc.n_per_cell
    if Path(base.checkpoint).resolve() != Path(baseline).resolve():
        upd["negatives_predictions"] = None  # those scores belong to another model
    scfg = SelectionConfig.model_validate({**base.model_dump(), **upd})
    summary = run_selection(scfg)
    grid = Grid(scfg.grid)
    ops = [OperatingPoint.fixed(p) for p in scfg.thresholds.probability]   # the same on every scorer
    tables, figs = [], []
    for f in fams:
        recs = read_injections(scfg.out, f.name, summary["config_tag"])
        scores = injection_scores(recs, groups, host_domains, defs, cfg.combine.gate_weight, meta_paths)
        t = paired_table(recs, scores, ops, recs["cell"].to_numpy(), scfg.min_count).assign(family=f.name)
        tables.append(t)
        figs.append(difference_maps(recs, scores, by_name(ops, headline([op.name for op in ops])), grid,
                                    scfg.min_count, f.name, ed.selection_diff_figure(f.name)))
    table = pd.concat(tables, ignore_index=True)
    ed.tables.mkdir(parents=True, exist_ok=True)
    table.to_csv(ed.table("selection_compare"), index=False)
    write_table(table, ed.table("selection_compare", "parquet"))
    return {"families": [f.name for f in fams], "config_tag": summary["config_tag"], "figures": figs,
            "n_injections": {k: v["n_injections"] for k, v in summary["families"].items()}}


def difference_maps(recs: pd.DataFrame, scores: dict[str, np.ndarray], op: OperatingPoint, grid, min_count: int,
                    family: str, path: Path) -> str:
    """Completeness difference (scorer - baseline) over theta_E x PSF FWHM, pooled over depth and arc magnitude;
    cells where the paired McNemar test gives p < 0.05 are starred."""
    plt = pyplot()
    names = [n for n in scores if n != "baseline" and n.startswith(("average_", "gate_", "meta_"))]
    it, ip = recs["i_theta_e"].to_numpy(int), recs["i_psf_fwhm"].to_numpy(int)
    e = grid.edges
    nt, npf = len(e["theta_e"]) - 1, len(e["psf_fwhm"]) - 1
    fb = op.detected(scores["baseline"])
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols + 1, 3.0 * rows + 0.4), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    im = None
    for ax, n in zip(axes.flat, names, strict=False):
        fs = op.detected(scores[n])
        d = np.full((nt, npf), np.nan)
        for a in range(nt):
            for b in range(npf):
                m = (it == a) & (ip == b)
                if m.sum() >= min_count:
                    d[a, b] = fs[m].mean() - fb[m].mean()
                    if mcnemar_p(fs[m], fb[m]) < 0.05:
                        ax.text((e["psf_fwhm"][b] + e["psf_fwhm"][b + 1]) / 2, (e["theta_e"][a] + e["theta_e"][a + 1]) / 2,
                                "*", ha="center", va="center", fontsize=12)
        im = ax.pcolormesh(e["psf_fwhm"], e["theta_e"], d, vmin=-0.3, vmax=0.3, cmap="RdBu")
        ax.set_title(n, fontsize=9)
        ax.set_xlabel("r-band PSF FWHM (arcsec)", fontsize=8)
    for r in range(rows):
        axes[r, 0].set_ylabel("theta_E (arcsec)")
    fig.colorbar(im, ax=axes[:, -1].tolist(), label=f"completeness - baseline ({op.name})")
    fig.suptitle(f"{family}: completeness difference against the baseline on the same injections "
                 "(* paired McNemar p < 0.05, per cell)", fontsize=10)
    return save_figure(fig, path)

"""The closure test (mock only): does an injection family's measured selection function predict the
true completeness of the mock's real (true) lenses?

Truth is for measuring, never for fitting: nothing here changes a family, a prior or a threshold.

Per true lens outside the training split (inside the grid): its cell of the 4-D grid; the family's
completeness in that cell is the *prediction* for that lens. Lenses whose cell holds fewer than
``min_count`` injections are left out of both sides (reported as coverage). Per bin of (theta_E x
arc magnitude), and per marginal bin of theta_E, arc magnitude, PSF FWHM and depth: the true
completeness k/n of the lenses (Jeffreys 68 percent interval) against the mean prediction over the
same lenses (its variance from the cells' binomial variances), their difference and z, and a
chi-square over the (theta_E x arc magnitude) bins.

Two ways: ``raw`` (the injections as drawn) and ``reweighted``: injections weighted within every cell
to the true lenses' distribution of parameters that are **not** grid axes - beta / theta_E, the arc's
g - r colour and the host's r magnitude - through a density ratio from a logistic classifier
(true lenses vs injections, on those standardised parameters and their squares), so that a prior
mismatch is separated from a realism failure.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.stats import chi2
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from lensaudit.artifacts import OperatingPoint, SplitRule
from lensaudit.artifacts.kinds import TRUE_LENSES
from lensaudit.artifacts.operating import HEADLINE, headline
from lensaudit.selection.grid import AXES, Grid
from lensaudit.selection.intervals import jeffreys_interval

log = logging.getLogger(__name__)

#: Non-grid parameters the reweighting matches (true-lens table column, injection-record column).
REWEIGHT = {"beta_frac": ("beta_frac", "beta_frac"), "arc_g_r": ("arc_g_r", "arc_g_r"),
            "host_mag_r": ("host_mag_r", "host_mag_r")}
#: Columns of the true-lens table per grid axis.
TRUE_AXES = {"theta_e": "theta_e", "psf_fwhm": "psfsize_r", "depth": "depth_r", "arc_mag": "arc_mag_r"}
INJ_AXES = {"theta_e": "theta_e", "psf_fwhm": "host_psfsize_r", "depth": "host_depth_r", "arc_mag": "arc_mag_r"}


def density_ratio_weights(true_x: np.ndarray, inj_x: np.ndarray, clip_quantile: float = 0.99, seed: int = 0) -> np.ndarray:
    """Weights of injections that turn their distribution of ``inj_x`` into that of ``true_x``: p / (1 - p) of
    a logistic classifier (true = 1) on standardised features and their squares, clipped at a quantile, mean 1."""
    t, i = np.asarray(true_x, float), np.asarray(inj_x, float)
    ok_t, ok_i = np.isfinite(t).all(1), np.isfinite(i).all(1)
    w = np.ones(len(i))
    if ok_t.sum() < 5 or ok_i.sum() < 5:
        return w
    sc = StandardScaler().fit(np.vstack([t[ok_t], i[ok_i]]))
    feats = lambda a: np.hstack([sc.transform(a), sc.transform(a) ** 2])  # noqa: E731
    x = np.vstack([feats(t[ok_t]), feats(i[ok_i])])
    y = np.r_[np.ones(ok_t.sum()), np.zeros(ok_i.sum())]
    clf = LogisticRegression(C=1.0, max_iter=5000, class_weight="balanced", random_state=seed).fit(x, y)
    p = clf.predict_proba(feats(i[ok_i]))[:, 1]
    r = p / np.clip(1 - p, 1e-9, None)
    r = np.minimum(r, np.quantile(r, clip_quantile))
    w[ok_i] = r
    w[~ok_i] = np.median(r)
    return w / w.mean()


def cell_completeness(inj: pd.DataFrame, det: np.ndarray, weights: np.ndarray, grid: Grid) -> pd.DataFrame:
    """Per 4-D cell: n, weighted completeness, its variance (binomial with the effective count) and n_eff."""
    cell = inj["cell"].to_numpy(np.int64)
    nc = grid.n_cells
    n = np.bincount(cell, minlength=nc)
    sw = np.bincount(cell, weights=weights, minlength=nc)
    sw2 = np.bincount(cell, weights=weights**2, minlength=nc)
    sk = np.bincount(cell, weights=weights * det, minlength=nc)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = sk / sw
        n_eff = sw**2 / sw2
        lo, hi = jeffreys_interval(np.clip(c * n_eff, 0, n_eff), n_eff, 0.68)
        var = ((hi - lo) / 2) ** 2
    return pd.DataFrame({"cell": np.arange(nc), "n": n, "n_eff": n_eff, "c": c, "var": var})


def _compare(true: pd.DataFrame, keys: list[str], min_true: int) -> pd.DataFrame:
    rows = []
    for key, g in true.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        n, k = len(g), int(g["det"].sum())
        lo, hi = jeffreys_interval(k, n, 0.68)
        m = g.groupby("cell").agg(m=("cell", "size"), c=("c_pred", "first"), var=("var_pred", "first"))
        pred = float((m["m"] * m["c"]).sum() / n)
        sd_pred = float(np.sqrt(((m["m"] / n) ** 2 * m["var"]).sum()))
        c_true = k / n
        sd_true = float((hi - lo) / 2)
        diff = c_true - pred
        z = diff / np.hypot(sd_true, sd_pred) if n >= min_true and np.hypot(sd_true, sd_pred) > 0 else np.nan
        rows.append({**{f"bin_{a.removeprefix('i_')}": int(v) for a, v in zip(keys, key, strict=True)}, "n_true": n, "k_true": k,
                     "c_true": c_true, "true_lo68": float(lo), "true_hi68": float(hi), "c_pred": pred,
                     "sd_pred": sd_pred, "diff": diff, "z": z})
    return pd.DataFrame(rows)


def closure_test(true: pd.DataFrame, inj: pd.DataFrame, grid: Grid, ops: list[OperatingPoint], min_count: int = 10,
                 min_true: int = 5, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-bin table, summary table) for one family at each operating point; ``true`` needs the columns of
    :data:`TRUE_AXES`, :data:`REWEIGHT` and ``probability``; ``inj`` a selection run's records."""
    t = true.copy()
    bins = {a: grid.bin_of(a, t[TRUE_AXES[a]]) for a in AXES}
    inside = np.all([b >= 0 for b in bins.values()], axis=0)
    t = t[inside].copy()
    for a in AXES:
        t[f"i_{a}"] = bins[a][inside]
    t["cell"] = np.ravel_multi_index(tuple(t[f"i_{a}"].to_numpy() for a in AXES), grid.shape) if len(t) else []
    inj = inj.copy()
    inj["arc_g_r"] = inj["arc_mag_g"] - inj["arc_mag_r"]
    w_rw = density_ratio_weights(t[[c for c, _ in REWEIGHT.values()]].to_numpy(float),
                                 inj[[c for _, c in REWEIGHT.values()]].to_numpy(float), seed=seed)
    per_bin, summary = [], []
    for op in ops:
        det_inj = op.detected(inj["probability"]).astype(float)
        t["det"] = op.detected(t["probability"])
        for mode, w in (("raw", np.ones(len(inj))), ("reweighted", w_rw)):
            cc = cell_completeness(inj, det_inj, w, grid).set_index("cell")
            tt = t.assign(c_pred=cc["c"].reindex(t["cell"]).to_numpy(), var_pred=cc["var"].reindex(t["cell"]).to_numpy(),
                          n_cell=cc["n"].reindex(t["cell"]).to_numpy())
            covered = tt[(tt["n_cell"] >= min_count) & np.isfinite(tt["c_pred"])]
            parts = {"theta_e x arc_mag": ["i_theta_e", "i_arc_mag"], "theta_e": ["i_theta_e"], "arc_mag": ["i_arc_mag"],
                     "psf_fwhm": ["i_psf_fwhm"], "depth": ["i_depth"]}
            z = np.zeros(0)
            for q, keys in parts.items():
                tab = _compare(covered, keys, min_true)
                if len(tab):
                    for k in keys:                   # bin centres in the axis' units, beside the bin index
                        a = k.removeprefix("i_")
                        tab[f"{a}_centre"] = grid.centres(a)[tab[f"bin_{a}"].to_numpy(int)]
                    per_bin.append(tab.assign(quantity=q, mode=mode, threshold=op.name))
                    if q == "theta_e x arc_mag":
                        z = tab["z"].to_numpy(float)
            z = z[np.isfinite(z)]
            overall = _compare(covered.assign(all=0), ["all"], 1)
            summary.append({"mode": mode, "threshold": op.name, "n_true_in_grid": int(len(t)),
                            "n_true_covered": int(len(covered)), "chi2": float((z**2).sum()), "dof": int(len(z)),
                            "p_value": float(chi2.sf((z**2).sum(), len(z))) if len(z) else np.nan,
                            "c_true": float(overall["c_true"].iat[0]) if len(overall) else np.nan,
                            "c_pred": float(overall["c_pred"].iat[0]) if len(overall) else np.nan,
                            "diff": float(overall["diff"].iat[0]) if len(overall) else np.nan,
                            "z": float(overall["z"].iat[0]) if len(overall) else np.nan})
    return (pd.concat(per_bin, ignore_index=True) if per_bin else pd.DataFrame()), pd.DataFrame(summary)


def mock_true_lenses(survey_dir, rule: SplitRule, splits=("val", "test")) -> pd.DataFrame:
    """The mock's true lenses in ``splits`` (mock only): truth parameters, the catalog's r-band PSF FWHM and
    depth from the sweeps, the split by the manifest's split rule (:class:`SplitRule`: every position has one),
    and the non-grid parameters of :data:`REWEIGHT`. A true lens the sweeps do not hold is an exclusion, counted
    in ``attrs["excluded"]`` with its reason, never a silent drop."""
    from lensaudit.artifacts import MockSurveyDir, object_id, read_table
    from lensaudit.survey.photometry import depth_to_mag5
    from lensaudit.survey.sweepio import read_sweep

    md = MockSurveyDir(survey_dir)
    truth = read_table(md.truth, "truth table")
    lenses = truth[truth["kind"] == "lens"].copy()
    lenses["split"] = rule.split_of(lenses["ra"].to_numpy(), lenses["dec"].to_numpy())
    n_all = len(lenses)
    lenses = lenses[lenses["split"].isin(list(splits))]
    sw = pd.concat([read_sweep(p, ("BRICKNAME", "OBJID", "PSFSIZE_R", "PSFDEPTH_R"))
                    for p in sorted(md.sweeps.glob("*.fits"))], ignore_index=True)
    sw["id"] = object_id(sw["BRICKNAME"].astype(str).to_numpy(), sw["OBJID"].to_numpy())
    found = lenses["id"].isin(set(sw["id"]))
    excluded = {"not in the sweeps": int((~found).sum())}
    if excluded["not in the sweeps"]:
        log.warning("%d true lens(es) of splits %s are not in the mock's sweeps: excluded from closure, counted",
                    excluded["not in the sweeps"], list(splits))
    lenses = lenses[found].merge(sw[["id", "PSFSIZE_R", "PSFDEPTH_R"]], on="id", how="left")
    out = pd.DataFrame({"id": lenses["id"].astype(str), "ra": lenses["ra"], "dec": lenses["dec"], "split": lenses["split"],
                        "tier": lenses["tier"].fillna(""), "theta_e": lenses["theta_e"], "arc_mag_r": lenses["arc_mag_r"],
                        "arc_mag_g": lenses["arc_mag_g"], "arc_snr": lenses["arc_snr"],
                        "psfsize_r": lenses["PSFSIZE_R"].astype(float),
                        "depth_r": depth_to_mag5(lenses["PSFDEPTH_R"].to_numpy(float)),
                        "beta_frac": np.hypot(lenses["src_x"], lenses["src_y"]) / lenses["theta_e"],
                        "arc_g_r": lenses["arc_mag_g"] - lenses["arc_mag_r"], "host_mag_r": lenses["rmag"]})
    out = out.reset_index(drop=True)
    out.attrs.update({"n_true_lenses": n_all, "n_in_splits": int(found.size), "excluded": excluded})
    return out


def score_mock_true_lenses(survey_dir, manifest, checkpoint, out, splits=("val", "test")) -> pd.DataFrame:
    """Mock only: :func:`mock_true_lenses` (split by ``manifest``'s split rule), their cutouts fetched from the
    loopback mock into the output's store (resumable) and scored with ``checkpoint``; writes the true-lens table.
    A lens whose cutout cannot be fetched or scored is an exclusion counted in the table's metadata."""
    from lensaudit.artifacts import TrueLensesDir, read_manifest_metadata, write_artifact_table
    from lensaudit.artifacts.kinds import TRUE_LENSES
    from lensaudit.cutouts import CutoutStore
    from lensaudit.cutouts.mockfetch import fetch_from_mock
    from lensaudit.train.score import score_manifest

    td = TrueLensesDir(out)
    with td.lock("true-lens scoring"):
        rule = SplitRule.from_metadata(read_manifest_metadata(manifest), f"manifest {manifest}")
        t = mock_true_lenses(survey_dir, rule, splits)
        store = CutoutStore(td.store, create=True)
        have = set(store.ids().astype(str))
        todo = t[~t["id"].isin(have)][["id", "ra", "dec"]]
        if len(todo):
            fetch_from_mock(todo, store, survey_dir)
        sc = score_manifest(checkpoint, t[["id"]], CutoutStore(td.store), on_missing="skip")
        excluded = {**t.attrs["excluded"], "no cutout": int((~t["id"].isin(set(sc["id"]))).sum())}
        attrs = {**t.attrs, "excluded": excluded}
        t = t.merge(sc[["id", "logit", "probability"]], on="id", how="inner")
        write_artifact_table(t, td.table, TRUE_LENSES, meta={"splits": list(splits), **attrs})
        t.attrs.update(attrs)
        return t


def run_closure(run_dir, true_lenses, out, realism=None, min_true: int = 5, seed: int = 0):
    """The closure test for every family of a selection run; writes the per-bin and summary tables and a figure
    into ``out`` (:class:`ClosureDir`); returns (per-bin, summary)."""
    from lensaudit.artifacts import (
        ClosureDir,
        SelectionRunDir,
        check_predictions,
        read_artifact_table,
        read_doc,
        write_artifact_table,
    )
    from lensaudit.artifacts.kinds import CLOSURE_BINS, CLOSURE_SUMMARY, OPERATING_POINTS, REALISM, SELECTION_SUMMARY
    from lensaudit.inject.records import read_injections
    from lensaudit.selection.function import SelectionFunction

    rd, cd = SelectionRunDir(run_dir), ClosureDir(out)
    cd.root.mkdir(parents=True, exist_ok=True)
    with cd.lock("closure test"):
        summary = read_doc(rd.summary, SELECTION_SUMMARY)
        ops = [OperatingPoint.from_dict(d, str(rd.operating_points))
               for d in read_doc(rd.operating_points, OPERATING_POINTS)["points"]]
        t = read_artifact_table(true_lenses, TRUE_LENSES, external_ok=True)   # a truth table may come from elsewhere
        t = check_predictions(t, f"true lenses {true_lenses}", require=("id", "probability"))
        gate = read_artifact_table(realism, REALISM).set_index(REALISM.c.family) if realism else None
        bins, summ = [], []
        for fam in summary["families"]:
            sf = SelectionFunction.load(rd.selection_function(fam))
            inj = read_injections(rd, fam, summary["config_tag"])
            b, s = closure_test(t, inj, sf.grid, ops, sf.meta.get("min_count", 10), min_true, seed)
            s.insert(0, "family", fam)
            s["planted"] = bool(sf.meta.get("planted", False))
            has = gate is not None and fam in gate.index
            s["gate_probe_auc"] = float(gate.loc[fam, REALISM.c.probe_auc]) if has else np.nan
            s["gate_verdict"] = gate.loc[fam, REALISM.c.verdict] if has else ""
            bins.append(b.assign(family=fam))
            summ.append(s)
        per_bin = pd.concat(bins, ignore_index=True)
        summary_t = pd.concat(summ, ignore_index=True)
        write_artifact_table(per_bin, cd.bins, CLOSURE_BINS)
        write_artifact_table(summary_t, cd.summary, CLOSURE_SUMMARY)
        summary_t.to_csv(cd.summary_csv, index=False)
        closure_figure(per_bin, cd.figure, headline(summary_t["threshold"].unique()))
        return per_bin, summary_t


def closure_figure(per_bin: pd.DataFrame, path, threshold: str = HEADLINE) -> str:
    """True against injection-predicted completeness per marginal bin, raw and reweighted, per family."""
    from lensaudit.selection.figures import LABELS
    from lensaudit.utils.display import pyplot, save_figure

    plt = pyplot()
    qs = ["theta_e", "arc_mag", "psf_fwhm", "depth"]
    d = per_bin[per_bin["threshold"] == threshold]
    fams = list(dict.fromkeys(d["family"]))
    fig, axes = plt.subplots(2, len(qs), figsize=(3.3 * len(qs), 6.2), squeeze=False, constrained_layout=True)
    for row, mode in enumerate(("raw", "reweighted")):
        for ax, q in zip(axes[row], qs, strict=True):
            g0 = d[(d["quantity"] == q) & (d["mode"] == mode)]
            x0 = None
            for j, fam in enumerate(fams):
                g = g0[g0["family"] == fam].sort_values(f"{q}_centre")
                x = g[f"{q}_centre"].to_numpy(float)
                step = float(np.min(np.diff(np.unique(g0[f"{q}_centre"])))) if g0[f"{q}_centre"].nunique() > 1 else 1.0
                ax.errorbar(x + 0.04 * step * (j + 1), g["c_pred"].to_numpy(float), yerr=g["sd_pred"].to_numpy(float),
                            fmt="o-", ms=3, label=fam)
                x0 = g if x0 is None else x0
            if x0 is not None:
                ct = x0["c_true"].to_numpy(float)
                ax.errorbar(x0[f"{q}_centre"].to_numpy(float), ct,
                            yerr=np.vstack([ct - x0["true_lo68"].to_numpy(float), x0["true_hi68"].to_numpy(float) - ct]),
                            fmt="s", color="k", ms=5, label="true (mock lenses)")
            ax.set_xlabel(LABELS[q], fontsize=8)
            ax.set_ylim(0, 1)
            ax.set_title(f"{mode}", fontsize=8)
        axes[row, 0].set_ylabel(f"completeness ({threshold})")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Closure: true completeness of the mock's lenses (black) against each family's prediction", fontsize=9)
    return save_figure(fig, path)


def format_closure(summary: pd.DataFrame, threshold: str = HEADLINE) -> str:
    s = summary[summary["threshold"] == threshold]
    lines = [f"closure at {threshold}: true completeness of the mock's lenses against each family's prediction",
             f"{'family':<12} {'mode':<11} {'true':>6} {'pred':>6} {'diff':>7} {'z':>6} {'chi2/dof':>10} {'p':>7} "
             f"{'gate AUC':>9}"]
    for r in s.to_dict("records"):
        gate = f"{r['gate_probe_auc']:.3f}" if "gate_probe_auc" in r and pd.notna(r.get("gate_probe_auc")) else "-"
        lines.append(f"{r['family'] + (' *' if r.get('planted') else ''):<12} {r['mode']:<11} {r['c_true']:>6.3f} "
                     f"{r['c_pred']:>6.3f} {r['diff']:>+7.3f} {r['z']:>6.2f} {r['chi2']:>6.1f}/{r['dof']:<3d} "
                     f"{r['p_value']:>7.3f} {gate:>9}")
    lines.append("reweighted: injections weighted to the true lenses' beta/theta_E, arc g-r and host r magnitude "
                 "(not grid axes); * planted family")
    return "\n".join(lines)


__all__ = ["REWEIGHT", "TRUE_AXES", "cell_completeness", "closure_figure", "closure_test", "density_ratio_weights",
           "format_closure", "mock_true_lenses", "run_closure", "score_mock_true_lenses"]

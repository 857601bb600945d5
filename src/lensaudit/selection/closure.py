"""The closure test (mock only): does an injection family's measured selection function predict the
true completeness of the mock's real (true) lenses?

Truth is for measuring, never for fitting: nothing here changes a family, a prior, a weight or a threshold.
The test is stated before it is run.

* **Common support.** Each true lens outside the training split is placed in its cell of the 4-D grid (theta_E,
  PSF FWHM, depth, lensed arc r magnitude). Lenses whose cell holds fewer than ``min_count`` injections are
  left out of both sides (reported as coverage).
* **Primary statistic**, one per family and operating point: the overall completeness difference
  Delta = C_inj - C_true over the covered lenses, where C_inj is the mean over the lenses of their cells'
  injection-measured completeness and C_true the fraction of them detected. Its interval is a Poisson bootstrap
  (:func:`closure_bootstrap`) that resamples, jointly in every replicate, the true lenses (the truth's binomial
  noise and its population), the injections (their binomial noise) and, for a family drawing from a finite
  stamp library, the stamps (every injection of a stamp shares its weight: the library's finite size). The
  detector is fixed (its training seed is not resampled: the audit is of this detector). The true side's variance
  is at least the Jeffreys posterior's (a bin where all lenses are detected has no bootstrap variance). Reported:
  Delta, its
  bootstrap sd, 95 percent interval Delta +- 1.96 sd, z = Delta / sd with its two-sided normal p-value, and
  ``mde80`` = 2.80 sd, the smallest |Delta| the test detects with 80 percent power at 5 percent (two-sided).
* **Secondary**: per bin of theta_E x arc magnitude, bins merged in order (theta_E, then magnitude) until each
  holds at least ``min_true`` covered lenses; per bin Delta and z from the same replicates; chi-square = sum of
  z^2 with one degree of freedom per merged bin (no weight or prior is fitted, so none is lost). And per
  marginal bin of each axis, for the figure.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm

from lensaudit.artifacts import OperatingPoint, SplitRule
from lensaudit.artifacts.kinds import TRUE_LENSES
from lensaudit.artifacts.operating import HEADLINE, headline
from lensaudit.selection.grid import AXES, Grid
from lensaudit.selection.intervals import jeffreys_interval

log = logging.getLogger(__name__)

#: Columns of the true-lens table per grid axis.
TRUE_AXES = {"theta_e": "theta_e", "psf_fwhm": "psfsize_r", "depth": "depth_r", "arc_mag": "arc_mag_r"}
INJ_AXES = {"theta_e": "theta_e", "psf_fwhm": "host_psfsize_r", "depth": "host_depth_r", "arc_mag": "arc_mag_r"}
#: z for a two-sided 5 percent test plus z for 80 percent power: the minimum detectable effect in sds.
MDE80_SIGMAS = float(norm.ppf(0.975) + norm.ppf(0.80))
_AX = list(AXES)


def merge_bins(counts: np.ndarray, min_count: int) -> np.ndarray:
    """Group labels for consecutive bins (in the given order) merged until each group holds at least
    ``min_count``; a short last group joins the one before it. Bins with a count of zero join their neighbours."""
    c = np.asarray(counts, np.int64)
    lab = np.zeros(len(c), np.int64)
    g, acc = 0, 0
    for i, n in enumerate(c):
        lab[i] = g
        acc += n
        if acc >= min_count and i < len(c) - 1:
            g, acc = g + 1, 0
    if g > 0 and acc < min_count:
        lab[lab == g] = g - 1
    return lab


def place_lenses(true: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """The true lenses inside the grid with their bin per axis (``i_<axis>``) and flat ``cell``."""
    bins = {a: grid.bin_of(a, true[TRUE_AXES[a]]) for a in AXES}
    inside = np.all([b >= 0 for b in bins.values()], axis=0)
    t = true[inside].copy()
    for a in AXES:
        t[f"i_{a}"] = bins[a][inside]
    t["cell"] = (np.ravel_multi_index(tuple(t[f"i_{a}"].to_numpy() for a in AXES), grid.shape) if len(t)
                 else np.zeros(0, np.int64))
    return t


def closure_bootstrap(lens_cell: np.ndarray, lens_det: np.ndarray, inj_cell: np.ndarray, inj_det: np.ndarray,
                      n_cells: int, n_boot: int = 1000, seed: int = 0, stamp_ids: np.ndarray | None = None,
                      groups: np.ndarray | None = None, block: int = 100) -> dict[str, np.ndarray]:
    """Point estimates and Poisson-bootstrap replicates of C_inj, C_true and Delta = C_inj - C_true, overall and
    per lens group (``groups``: an integer label per lens, e.g. a merged bin).

    Each replicate draws a Poisson(1) weight per true lens, per injection and, with ``stamp_ids`` (one per
    injection), per stamp (multiplying its injections' weights). Cell completeness = weighted detections over
    weights; a lens whose cell has no weight in a replicate drops out of that replicate. Returns ``point`` and
    ``boot`` arrays of shape (1 + n_groups, 3) and (n_boot, 1 + n_groups, 3): columns C_inj, C_true, Delta; row 0
    overall."""
    lc, ld = np.asarray(lens_cell, np.int64), np.asarray(lens_det, float)
    ic, idt = np.asarray(inj_cell, np.int64), np.asarray(inj_det, float)
    grp = np.zeros(0, np.int64) if groups is None else np.asarray(groups, np.int64)
    ng = int(grp.max()) + 1 if len(grp) else 0
    rows = np.ones((1 + ng, len(lc)), bool)                                      # row 0: every lens
    if ng:
        rows[1:] = grp[None] == np.arange(ng)[:, None]

    def estimate(v_l: np.ndarray, u_i: np.ndarray) -> np.ndarray:
        """(..., 1 + ng, 3) for lens weights v_l (R, n_l) and injection weights u_i (R, n_i)."""
        r = len(v_l)
        flat = (np.arange(r)[:, None] * n_cells + ic[None]).ravel()
        sw = np.bincount(flat, u_i.ravel(), r * n_cells).reshape(r, n_cells)
        sk = np.bincount(flat, (u_i * idt[None]).ravel(), r * n_cells).reshape(r, n_cells)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = sk / sw
        pred = c[:, lc]                                                          # (R, n_l)
        ok = np.isfinite(pred)
        v = np.where(ok, v_l, 0.0)
        out = np.empty((r, len(rows), 3))
        for j, m in enumerate(rows):
            w = v[:, m]
            tot = w.sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, j, 0] = (w * np.nan_to_num(pred[:, m])).sum(1) / tot
                out[:, j, 1] = (w * ld[None, m]).sum(1) / tot
        out[..., 2] = out[..., 0] - out[..., 1]
        return out

    point = estimate(np.ones((1, len(lc))), np.ones((1, len(ic))))[0]
    g = np.random.default_rng(seed)
    sid = None
    if stamp_ids is not None:
        _, sid = np.unique(np.asarray(stamp_ids), return_inverse=True)
    boots = []
    for lo in range(0, n_boot, block):
        r = min(block, n_boot - lo)
        v = g.poisson(1.0, (r, len(lc))).astype(float)
        u = g.poisson(1.0, (r, len(ic))).astype(float)
        if sid is not None:
            u = u * g.poisson(1.0, (r, int(sid.max()) + 1))[:, sid]
        boots.append(estimate(v, u))
    boot = np.concatenate(boots) if boots else np.zeros((0, len(rows), 3))
    return {"point": point, "boot": boot}


def _delta_summary(point: np.ndarray, boot: np.ndarray, k: int, n: int) -> dict[str, float]:
    """Delta with its sd, interval, z, p and MDE from bootstrap replicates; the true side's variance is at least
    the Jeffreys posterior's for k of n (a bin where every lens is detected has no bootstrap variance, but its
    completeness is not known exactly)."""
    ok = np.isfinite(boot[:, 2])
    d = boot[ok, 2]
    var = float(np.var(d, ddof=1)) if len(d) > 1 else float("nan")
    if n > 0 and len(d) > 1:
        lo, hi = jeffreys_interval(k, n, 0.68)
        var += max(0.0, float((hi - lo) / 2) ** 2 - float(np.var(boot[ok, 1], ddof=1)))
    sd = float(np.sqrt(var))
    lo, hi = point[2] - norm.ppf(0.975) * sd, point[2] + norm.ppf(0.975) * sd
    z = float(point[2] / sd) if sd > 0 else float("nan")
    return {"c_inj": float(point[0]), "c_true": float(point[1]), "diff": float(point[2]), "se": sd,
            "lo95": float(lo), "hi95": float(hi), "z": z,
            "p_value": float(2 * norm.sf(abs(z))) if np.isfinite(z) else float("nan"), "mde80": MDE80_SIGMAS * sd}


def closure_test(true: pd.DataFrame, inj: pd.DataFrame, grid: Grid, ops: list[OperatingPoint], min_count: int = 10,
                 min_true: int = 10, n_boot: int = 1000, seed: int = 0,
                 stamp_ids: np.ndarray | None = None, marginal_bins: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-bin table, summary table) for one family at each operating point: the primary statistic and the
    secondary tests of the module docstring. ``true`` needs the columns of :data:`TRUE_AXES` and ``probability``;
    ``inj`` a selection run's records; ``stamp_ids`` (one per injection) turns on the library bootstrap.
    ``marginal_bins=False`` leaves out the per-axis marginal rows of the per-bin table (the figure's; each has its
    own replicates, four fifths of the time): for repeated tests (size and power studies) that read the summary.
    The summary and the merged-bin rows are the same either way (their replicates come first, from their own seed)."""
    t = place_lenses(true, grid)
    cell_n = np.bincount(inj["cell"].to_numpy(np.int64), minlength=grid.n_cells)
    covered = t[cell_n[t["cell"].to_numpy(np.int64)] >= min_count].copy() if len(t) else t
    # merged (theta_E x arc magnitude) bins: consecutive in (theta_E, magnitude) order
    key = covered["i_theta_e"].to_numpy() * grid.shape[_AX.index("arc_mag")] + covered["i_arc_mag"].to_numpy()
    n2 = grid.shape[_AX.index("theta_e")] * grid.shape[_AX.index("arc_mag")]
    merged = merge_bins(np.bincount(key, minlength=n2), min_true)
    covered["merged_bin"] = merged[key] if len(covered) else np.zeros(0, np.int64)
    marg = {a: covered[f"i_{a}"].to_numpy() for a in AXES}
    per_bin, summary = [], []
    for op in ops:
        det_inj = op.detected(inj["probability"]).astype(float)
        det_true = op.detected(covered["probability"]).astype(float) if len(covered) else np.zeros(0)
        sd = int(seed) + 7919 * len(summary)
        res = closure_bootstrap(covered["cell"].to_numpy(), det_true, inj["cell"].to_numpy(), det_inj, grid.n_cells,
                                n_boot, sd, stamp_ids, covered["merged_bin"].to_numpy())
        overall = _delta_summary(res["point"][0], res["boot"][:, 0], int(det_true.sum()), len(det_true))
        zs = []
        for j in range(1, res["point"].shape[0]):
            sel = covered["merged_bin"].to_numpy() == j - 1
            k = int(det_true[sel].sum())
            row = _delta_summary(res["point"][j], res["boot"][:, j], k, int(sel.sum()))
            lo, hi = jeffreys_interval(k, int(sel.sum()), 0.68)
            zs.append(row["z"])
            cells = np.unique(key[sel])
            te, am = np.divmod(cells, grid.shape[_AX.index("arc_mag")])
            per_bin.append({"quantity": "theta_e x arc_mag", "bin": j - 1, "threshold": op.name,
                            "theta_e_lo": float(grid.edges["theta_e"][te.min()]),
                            "theta_e_hi": float(grid.edges["theta_e"][te.max() + 1]),
                            "arc_mag_lo": float(grid.edges["arc_mag"][am.min()]),
                            "arc_mag_hi": float(grid.edges["arc_mag"][am.max() + 1]),
                            "n_true": int(sel.sum()), "k_true": k, "true_lo68": float(lo), "true_hi68": float(hi),
                            **row})
        for a in AXES:   # marginal bins of every axis (the figure), from their own replicates
            if not len(covered) or not marginal_bins:
                break
            r2 = closure_bootstrap(covered["cell"].to_numpy(), det_true, inj["cell"].to_numpy(), det_inj,
                                   grid.n_cells, min(n_boot, 300), sd + 1 + _AX.index(a), stamp_ids, marg[a])
            cen = grid.centres(a)
            for b in np.unique(marg[a]):
                sel = marg[a] == b
                k = int(det_true[sel].sum())
                lo, hi = jeffreys_interval(k, int(sel.sum()), 0.68)
                per_bin.append({"quantity": a, "bin": int(b), "threshold": op.name, f"{a}_centre": float(cen[b]),
                                "n_true": int(sel.sum()), "k_true": k, "true_lo68": float(lo), "true_hi68": float(hi),
                                **_delta_summary(r2["point"][b + 1], r2["boot"][:, b + 1], k, int(sel.sum()))})
        z = np.asarray(zs, float)
        z = z[np.isfinite(z)]
        summary.append({"threshold": op.name, "n_true_in_grid": int(len(t)), "n_true_covered": int(len(covered)),
                        **overall, "n_boot": int(n_boot), "library_bootstrap": stamp_ids is not None,
                        "n_stamps": int(len(np.unique(stamp_ids))) if stamp_ids is not None else 0,
                        "chi2": float((z**2).sum()), "dof": int(len(z)),
                        "chi2_p": float(chi2.sf((z**2).sum(), len(z))) if len(z) else float("nan")})
    return pd.DataFrame(per_bin), pd.DataFrame(summary)


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
    sw = sw[sw["id"].isin(lenses["id"])]            # the lenses' rows first: a hash of the few ids, not of every row
    found = lenses["id"].isin(sw["id"])
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
    loopback mock into the output's store (resumable) and scored with ``checkpoint`` (any model
    :func:`lensaudit.scoring.load_scorer` reads); writes the true-lens table.
    A lens whose cutout cannot be fetched or scored is an exclusion counted in the table's metadata."""
    from lensaudit.artifacts import TrueLensesDir, read_manifest_metadata, write_artifact_table
    from lensaudit.artifacts.kinds import TRUE_LENSES
    from lensaudit.cutouts import CutoutStore
    from lensaudit.cutouts.mockfetch import fetch_from_mock
    from lensaudit.scoring import score_manifest

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


def run_closure(run_dir, true_lenses, out, realism=None, min_true: int = 10, seed: int = 0, n_boot: int = 1000):
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
            stamps = inj["stamp"].to_numpy() if sf.meta.get("kind") == "stamps" and "stamp" in inj else None
            b, s = closure_test(t, inj, sf.grid, ops, sf.meta.get("min_count", 10), min_true, n_boot, seed, stamps)
            s.insert(0, "family", fam)
            s["planted"] = bool(sf.meta.get("planted", False))
            has = gate is not None and fam in gate.index
            R = REALISM.c
            s["gate_probe_auc"] = float(gate.loc[fam, R.probe_auc]) if has else np.nan
            s["gate_p"] = float(gate.loc[fam, R.permutation_p]) if has else np.nan
            s["gate_verdict"] = gate.loc[fam, R.verdict] if has else ""
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
    """True against injection-predicted completeness per marginal bin of each axis, per family."""
    from lensaudit.selection.figures import LABELS
    from lensaudit.utils.display import pyplot, save_figure

    plt = pyplot()
    qs = ["theta_e", "arc_mag", "psf_fwhm", "depth"]
    d = per_bin[per_bin["threshold"] == threshold]
    fams = list(dict.fromkeys(d["family"]))
    fig, axes = plt.subplots(1, len(qs), figsize=(3.3 * len(qs), 3.4), squeeze=False, constrained_layout=True)
    for ax, q in zip(axes[0], qs, strict=True):
        g0 = d[d["quantity"] == q]
        x0 = None
        step = float(np.min(np.diff(np.unique(g0[f"{q}_centre"])))) if g0[f"{q}_centre"].nunique() > 1 else 1.0
        for j, fam in enumerate(fams):
            g = g0[g0["family"] == fam].sort_values(f"{q}_centre")
            x = g[f"{q}_centre"].to_numpy(float)
            ax.errorbar(x + 0.04 * step * (j + 1), g["c_inj"].to_numpy(float), yerr=g["se"].to_numpy(float),
                        fmt="o-", ms=3, label=fam)
            x0 = g if x0 is None else x0
        if x0 is not None:
            ct = x0["c_true"].to_numpy(float)
            ax.errorbar(x0[f"{q}_centre"].to_numpy(float), ct,
                        yerr=np.vstack([ct - x0["true_lo68"].to_numpy(float), x0["true_hi68"].to_numpy(float) - ct]),
                        fmt="s", color="k", ms=5, label="true (mock lenses)")
        ax.set_xlabel(LABELS[q], fontsize=8)
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel(f"completeness ({threshold})")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Closure: true completeness of the mock's lenses (black) against each family's prediction "
                 "(error bars: bootstrap sd)", fontsize=9)
    return save_figure(fig, path)


def format_closure(summary: pd.DataFrame, threshold: str = HEADLINE) -> str:
    s = summary[summary["threshold"] == threshold]
    lines = [f"closure at {threshold}: Delta = injection-predicted minus true completeness of the mock's lenses "
             f"(common support)",
             f"{'family':<12} {'true':>6} {'inj':>6} {'Delta [95%]':>22} {'z':>6} {'MDE80':>6} {'chi2/dof':>10} "
             f"{'p':>7} {'gate':>6}"]
    for r in s.to_dict("records"):
        gate = r.get("gate_verdict") or "-"
        lines.append(f"{r['family'] + (' *' if r.get('planted') else ''):<12} {r['c_true']:>6.3f} {r['c_inj']:>6.3f} "
                     f"{r['diff']:>+7.3f} [{r['lo95']:+.3f}, {r['hi95']:+.3f}] {r['z']:>6.2f} {r['mde80']:>6.3f} "
                     f"{r['chi2']:>6.1f}/{r['dof']:<3d} {r['chi2_p']:>7.3f} {gate:>6}")
    lines.append("interval: bootstrap of true lenses, injections and (stamp families) stamps; MDE80: smallest |Delta| "
                 "detected with 80% power; chi2 over theta_E x arc magnitude bins merged to >= 10 true lenses; "
                 "* planted family")
    return "\n".join(lines)


__all__ = ["INJ_AXES", "MDE80_SIGMAS", "TRUE_AXES", "closure_bootstrap", "closure_figure", "closure_test",
           "format_closure", "merge_bins", "mock_true_lenses", "place_lenses", "run_closure",
           "score_mock_true_lenses"]

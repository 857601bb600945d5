"""``lensaudit report RUN_DIR``: the audit report of a run directory, as one self-contained HTML page.

A run directory holds one folder per stage, named as ``lensaudit demo`` names them: ``catalog/``,
``fetch/store``, ``train/``, ``score/``, ``evaluate/``, ``selection/`` (``run/``, ``realism/``,
``closure/``, ``true_lenses/``), ``samples/store`` (real DR10 sample cutouts), ``mock/survey``. A real
DR10 audit writes its stages into the same names. What is missing is shown as missing, with the
command that produces it, never as an empty plot. Outputs: ``report/index.html``, ``report/figures/``
(every figure also as a PNG) and ``report/tables/`` (key tables as CSV and LaTeX).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import (
    RULE,
    ArtifactError,
    OperatingPoint,
    ReportDir,
    Run,
    SplitRule,
    ValidationDir,
    read_artifact_table,
    read_doc,
    read_manifest,
    read_manifest_metadata,
)
from lensaudit.artifacts.kinds import (
    CLOSURE_SUMMARY,
    ENSEMBLE,
    MARGINALS,
    OPERATING_POINTS,
    REALISM,
    REALISM_DOC,
    REALISM_LENSES,
    SELECTION_SUMMARY,
    VALIDATION_CELLS,
    VALIDATION_MATRIX,
)
from lensaudit.artifacts.operating import by_name, headline
from lensaudit.report.html import Section, esc, figure, fmt, fmt_p, interval, page, table
from lensaudit.report.tables import write_tables
from lensaudit.utils.display import image_grid, pyplot, save_figure
from lensaudit.utils.io import atomic_write_text
from lensaudit.utils.provenance import git_commit

log = logging.getLogger(__name__)
_R = Run("RUN")   # the commands that produce a missing stage, spelled with the run folder's own layout
HOW = {
    "catalog": f"<code>lensaudit catalog build --config CONFIG --out {_R.catalog.root}</code>",
    "fetch": f"<code>lensaudit cutouts fetch --manifest {_R.manifest} --store {_R.store}</code>",
    "train": f"<code>lensaudit train --config CONFIG --out {_R.train.root}</code>",
    "score": f"<code>lensaudit score --checkpoint {_R.train.best} --features --out {_R.predictions} ...</code>",
    "evaluate": f"<code>lensaudit evaluate --preds {_R.predictions} --out {_R.evaluation.root} ...</code>",
    "selection": f"<code>lensaudit selection run --config CONFIG --out {_R.selection.root}</code>",
    "realism": f"<code>lensaudit realism --config CONFIG --out {_R.realism.root}</code>",
    "closure": f"mock only: <code>lensaudit selection mock-true-lenses ... --out {_R.true_lenses.root}</code> then "
               f"<code>lensaudit selection closure --run {_R.selection.root} --out {_R.closure.root} ...</code>",
    "ensemble": f"<code>lensaudit ensemble run --config configs/ensemble/demo.yaml --out {_R.ensemble.root}</code> "
                "(domain models; then rebuild this report with <code>lensaudit report RUN</code>)",
    "samples": (f"<code>lensaudit cutouts import --store {_R.samples_store} "
                "\"$(lensaudit reference path dr10_sample_cutouts)\"</code>"),
}


def _json(p: Path):
    return json.loads(p.read_text()) if p.is_file() else None


def _ci(d: dict | None, key: str = "bootstrap", level: str = "ci95") -> tuple:
    if not d or d.get("value") is None:
        return None, None, None
    ci = (d.get(key) or {}).get(level) or d.get("wilson95") or [None, None]
    return d["value"], ci[0], ci[1]


# ------------------------------------------------------------------ data
def section_data(run: Run, figs: Path, tables: dict) -> Section:
    s = Section("data", "Data")
    cut = _json(run.catalog.cutflow)
    if cut is None:
        s.missing.append(("catalog", HOW["catalog"]))
        return s
    tot = cut["total"]
    order = cut["order"]
    rows, prev = [], None
    for k in order:
        n = tot.get(k)
        if k == "rows_in":
            rows.append({"step": "sweep rows read", "rows removed": "", "rows left": n})
            prev = n
        elif k == "rows_eligible":
            rows.append({"step": "eligible for the training set", "rows removed": "", "rows left": n})
        else:
            prev = prev - n if prev is not None and n is not None else prev
            rows.append({"step": f"cut: {k}", "rows removed": n, "rows left": prev})
    cf = pd.DataFrame(rows)
    tables["cutflow"] = cf
    s.add("<h3>Cut flow</h3>" + table(cf, "Rows removed by each cut of the published protocol, in the order applied "
                                          f"({esc(run.catalog.cutflow.relative_to(run.root))}). Counts, no intervals: these are exact."))
    mpath = run.manifest
    if not mpath.is_file():
        s.missing.append(("catalog manifest", HOW["catalog"]))
        return s
    m = read_manifest(mpath, require=("id", "ra", "dec", "label", "tier", "split", "type"))
    try:   # a manifest written by catalog build carries its split rule and sampling; any other, not
        meta = read_manifest_metadata(mpath)
        hp = f"nside {SplitRule.from_metadata(meta, f'manifest {mpath}').nside}, NESTED"
    except ArtifactError:
        meta, hp = {}, "split rule not recorded in this manifest"
    n_pos, n_neg = int((m["label"] == 1).sum()), int((m["label"] == 0).sum())
    ratio = f"{n_neg / n_pos:.1f}:1" if n_pos else "no positives"
    counts = m.assign(cls=np.where(m["label"] == 1, "lens " + m["tier"].astype(str), "non-lens " + m["tier"].astype(str)))
    ct = counts.pivot_table(index="split", columns="cls", values="id", aggfunc="count", fill_value=0).reset_index()
    tables["strata_counts"] = ct
    s.add("<h3>Training set by split and class</h3>" + table(ct, "Positives by grading tier (A confident, B probable) "
                                                             "and negatives (N1 stratified random galaxies, N2 hard "
                                                             "confusers) per HEALPix split."))
    tt = m.pivot_table(index="type", columns="label", values="id", aggfunc="count", fill_value=0).reset_index()
    tt.columns = ["Tractor type", "negatives", "positives"][: len(tt.columns)]
    conf = (f"; the configured ratio per stratum is {meta['sampling']['ratio']}:1"
            if (meta.get("sampling") or {}).get("ratio") else "")
    s.add(table(tt, f"By Tractor morphological type: the negatives follow the positives' type mix ({n_neg:,} negatives "
                    f"to {n_pos:,} positives, {ratio} overall{conf})."))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for sp, col in (("train", "#9db4c9"), ("val", "#d1495b"), ("test", "#2e7d32")):
        g = m[m["split"] == sp]
        g = g.sample(min(len(g), 8000), random_state=0) if len(g) > 8000 else g
        ax.scatter(g["ra"], g["dec"], s=2, c=col, label=f"{sp} ({(m['split'] == sp).sum():,})")
    ax.set_xlabel("RA (deg)")
    ax.set_ylabel("Dec (deg)")
    ax.invert_xaxis()
    ax.legend(markerscale=5, fontsize=8)
    f = save_figure(fig, figs / "split_map.png")
    s.add(figure(figs / f, "Every manifest row on the sky, coloured by split. Splits are whole HEALPix pixels "
                           f"({hp}), so no object near a test object trains the model.",
                 "Spatial splits"))
    store = run.store
    if store.is_dir():
        from lensaudit.cutouts import CutoutStore

        st = CutoutStore(store)
        have = set(st.ids().astype(str))
        for title, sel, what in (("Tier A positives", (m["label"] == 1) & (m["tier"] == "A"), "confident lenses"),
                                 ("Tier B positives", (m["label"] == 1) & (m["tier"] == "B"), "probable lenses"),
                                 ("N1 negatives", m["tier"] == "N1", "stratified random galaxies"),
                                 ("N2 negatives", m["tier"] == "N2", "hard confusers (rings, spirals, mergers)")):
            ids = [i for i in m.loc[sel & m["split"].isin(["val", "test"]), "id"].astype(str).sort_values() if i in have][:8]
            if ids:
                name = "gallery_" + title.split()[0].lower() + "_" + title.split()[1].lower() + ".png"
                image_grid(list(st.get(ids)), ids, figs / name, ncol=8, crop=60)
                s.add(figure(figs / name, f"Eight {what} of the validation and test splits (g, r, z as blue, green, "
                                          "red; asinh stretch; central 60 x 60 pixels, 15.7 arcsec).", title))
        real = run.samples_store
        if real.is_dir():
            rs = CutoutStore(real)
            rid = sorted(rs.ids().astype(str))[:8]
            mid = [i for i in m.loc[m["tier"] == "N1", "id"].astype(str).sort_values() if i in have][: len(rid)]
            image_grid(list(rs.get(rid)) + list(st.get(mid)), [f"DR10 {i}" for i in rid] + [f"mock {i}" for i in mid],
                       figs / "real_vs_mock.png", ncol=max(len(rid), 1), crop=60)
            s.add(figure(figs / "real_vs_mock.png", "Top row: real DR10 sample cutouts; bottom row: mock galaxies "
                                                    "drawn the same way. Noise, PSF and colours should look alike; "
                                                    "`lensaudit mock check` measures it.", "Real DR10 beside mock"))
        else:
            s.missing.append(("samples", HOW["samples"]))
    else:
        s.missing.append(("fetch (cutout store)", HOW["fetch"]))
    return s


# ------------------------------------------------------------------ sources
def _stamps_family(run: Run):
    """(selection config, the stamps family's config) of the run's selection, or (config, None)."""
    from lensaudit.config import load_config
    from lensaudit.selection.config import SelectionConfig

    if not run.selection.config.is_file():
        return None, None
    cfg = load_config(run.selection.config, SelectionConfig)
    return cfg, next((f for f in cfg.families if f.kind == "stamps"), None)


def section_sources(run: Run, figs: Path, tables: dict) -> Section:
    s = Section("sources", "Source galaxies")

    lib_path = run.xdf.library
    if not lib_path.is_file():
        s.missing.append(("XDF library", f"<code>lensaudit sources build-xdf --out {_R.xdf.root}</code>"))
        return s
    rep = _json(run.xdf.report) or {}
    s.add(f"<p>Real galaxies cut from the Hubble eXtreme Deep Field (the display image scikit-image ships): "
          f"{rep.get('n_stamps', '?')} galaxies of {rep.get('n_detected', '?')} detections (half A "
          f"{(rep.get('halves') or {}).get('A', '?')}, half B {(rep.get('halves') or {}).get('B', '?')}, split by a hash "
          f"of each id); display stretch undone with the measured gamma {fmt(rep.get('gamma'))} (literature-slope range "
          f"{esc(', '.join(fmt(g) for g in rep.get('gamma_for_literature_range', [])))}); pixel scale "
          f"{fmt(rep.get('pixscale_arcsec'))} arcsec (+-{fmt(100 * (rep.get('pixscale_rel_uncertainty') or 0))} "
          f"percent, from the field's size); effective resolution {fmt(rep.get('effective_fwhm_arcsec'))} arcsec FWHM. "
          "Cuts: " + esc("; ".join(f"{k} {v}" for k, v in (rep.get("rejected") or {}).items())) + ".</p>")
    cfg, fam = _stamps_family(run)
    from lensaudit.cutouts import CutoutStore

    store = CutoutStore(run.store) if run.store.is_dir() else None
    if fam is not None and store is not None and run.selection.summary.is_file():
        from lensaudit.inject import InjectionEngine, build_family
        from lensaudit.inject.records import read_injections

        recs = read_injections(run.selection, fam.name)
        bright = recs[recs["arc_mag_r"] < 21.5].sort_values("theta_e")
        pick = bright.iloc[np.linspace(0, len(bright) - 1, min(8, len(bright))).astype(int)] if len(bright) else bright
        if len(pick):
            family = build_family(fam)
            lib = family.library
            eng = InjectionEngine(family, cfg.engine)
            pcols = [c for c in pick.columns if c in _PARAM_COLUMNS or c.startswith("stamp")]
            hosts = store.get(list(pick["host_id"]))
            img, _ = eng.inject(hosts, pick[["host_psfsize_g", "host_psfsize_r", "host_psfsize_z"]].to_numpy(float),
                                pick[pcols])
            unlensed = [lib.images[int(k)] for k in pick["stamp"]]
            image_grid(unlensed + list(img), [str(lib.meta["ID"].iat[int(k)])[4:] for k in pick["stamp"]]
                       + [f"tE {t:.1f} r {m:.1f}" for t, m in zip(pick["theta_e"], pick["arc_mag_r"], strict=True)],
                       figs / "xdf_lensed.png", ncol=len(pick), crop=48)
            s.add(figure(figs / "xdf_lensed.png", f"Top: galaxies of the XDF library's half used by the {esc(fam.name)} "
                                                   f"family ({esc(fam.stamp_library)}), unlensed ({fmt(lib.pixscale)} "
                                                   "arcsec pixels, 8.8 arcsec across). Bottom: the same galaxies lensed "
                                                   "into DR10-like cutouts of the audited hosts (central 48 pixels, "
                                                   "12.6 arcsec), as the selection run injected them.",
                         "Real galaxies, unlensed and lensed"))
    md = run.mock
    if md.survey_json.is_file():
        from lensaudit.mock.render import mock_source_images

        ids, srcs, real = mock_source_images(md.root, 8)
        image_grid([src.image for src in srcs], [f"{'XDF' if real else 'procedural'} {i[-6:]}" for i in ids],
                   figs / "mock_sources.png", ncol=8)
        s.add(figure(figs / "mock_sources.png", "The mock universe's own lensed sources, unlensed (source plane, "
                                                "each on its own grid): "
                     + ("XDF galaxies of the other half." if real else
                        "procedural galaxies (discs with textures, knots, arms, bulges, dust), drawn by the mock's "
                        "generator: a different hand from the injected real galaxies above."), "The mock's sources"))
        s.add(_tier_a_diagnosis(md, tables))
    return s


def _tier_a_diagnosis(md, tables: dict) -> str:
    """Mock only: why the Tier-A true lenses look as they do (truth read for this description, nothing fitted)."""
    from lensaudit.artifacts import read_table

    t = read_table(md.truth, "truth table")
    lens = t[t["kind"] == "lens"].copy()
    if not len(lens) or "tier" not in lens:
        return ""
    b = pd.read_parquet(md.bricks)
    col = "psfsize_true_r" if "psfsize_true_r" in b else "psfsize_r"
    fw = b[col].to_numpy(float)[lens["brick_idx"].to_numpy(int)]
    lens["theta_e_over_fwhm"] = lens["theta_e"].to_numpy(float) / fw
    rows = []
    for tier, g in lens.groupby(lens["tier"].fillna("").replace("", "not catalogued")):
        rows.append({"tier": tier, "lenses": len(g), "theta_E median (arcsec)": g["theta_e"].median(),
                     "theta_E / FWHM median": g["theta_e_over_fwhm"].median(),
                     "arc r median (AB)": g["arc_mag_r"].median(), "host r median (AB)": g["rmag"].median(),
                     "magnification median": g["mu_r"].median() if "mu_r" in g else np.nan})
    d = pd.DataFrame(rows)
    tables["mock_tiers"] = d
    a = d[d["tier"] == "A"]
    if not len(a):
        return table(d, "Mock only, from the truth table: the true lenses by grading tier.", digits=2)
    a = a.iloc[0]
    ratio = a["theta_E / FWHM median"]
    dm = a["arc r median (AB)"] - a["host r median (AB)"]
    return ("<h3>What the mock's Tier-A lenses look like, and why</h3>" + table(
        d, f"Mock only, from the truth table (read for this description, nothing fitted): the Tier-A lenses have "
           f"Einstein radii of {ratio:.2f} times the seeing FWHM (median) and arcs {abs(dm):.1f} mag "
           f"{'fainter' if dm > 0 else 'brighter'} than their hosts. Where theta_E is within about 1.5 FWHM, rings and "
           "arcs blend with the host into a broadened, bluer blob rather than a separated arc; the mock's grader counts "
           "the arc's peak S/N against the noise and a fraction of the host light, so a bright ring on top of its host "
           "passes as confident, while a person grading needs a visibly separated, tangentially elongated arc. "
           "Compare the Tier-A gallery of the data section: where it shows compact blobs, the mock's Tier A is more "
           "permissive than a human grader, its catalogued lenses easier than real Tier-A candidates.", digits=2))


# ------------------------------------------------------------------ training
def section_training(run: Run, figs: Path, tables: dict) -> Section:
    s = Section("training", "Training")
    mj = run.train.metrics_log
    if not mj.is_file():
        s.missing.append(("train", HOW["train"]))
        return s
    h = pd.DataFrame([json.loads(line) for line in mj.read_text().splitlines() if line.strip()])
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    a1.plot(h["epoch"] + 1, h["train_loss"], label="train")
    a1.plot(h["epoch"] + 1, h["val_loss"], label="validation")
    a1.set_xlabel("epoch")
    a1.set_ylabel("binary cross-entropy")
    a1.legend()
    a2.plot(h["epoch"] + 1, h["val_auc"], color="#d1495b")
    a2.set_xlabel("epoch")
    a2.set_ylabel("validation ROC AUC")
    f = save_figure(fig, figs / "training_curves.png")
    best = h.loc[h["val_auc"].idxmax()]
    s.add(figure(figs / f, f"Loss and validation AUC per epoch. The best epoch ({int(best['epoch']) + 1}, AUC "
                           f"{best['val_auc']:.3f}) is kept as {run.train.best.name}; a validation loss that rises while the "
                           "training loss falls would mean over-fitting.", "Training curves"))
    info = _json(run.train.run_info) or {}
    rec = {"git commit": info.get("git_commit"), "config sha256": (info.get("config_sha256") or "")[:16],
           "seeds": json.dumps(info.get("seeds", {})), "torch": (info.get("versions") or {}).get("torch"),
           "epochs": len(h), "best epoch": int(best["epoch"]) + 1, "best val AUC": float(best["val_auc"]),
           "mean samples/s": float(h["train_samples_per_s"].mean()) if "train_samples_per_s" in h else None}
    s.add("<h3>Run record</h3>" + table(pd.DataFrame({"field": list(rec), "value": [fmt(v) for v in rec.values()]}),
                                        raw_html=("value",)))
    return s


# ------------------------------------------------------------------ performance
def section_performance(run: Run, figs: Path, tables: dict) -> Section:
    s = Section("performance", "Performance")
    m = _json(run.evaluation.metrics)
    if m is None:
        s.missing.append(("evaluate", HOW["evaluate"]))
        return s
    o = m["overall"]
    rows = [{"metric": "ROC AUC", "value [95% bootstrap]": interval(*_ci(o["roc_auc"])), "n": f"{o['n_pos']} / {o['n_neg']}"},
            {"metric": "PR AUC (average precision)", "value [95% bootstrap]": interval(*_ci(o["pr_auc"])),
             "n": f"{o['n_pos']} / {o['n_neg']}"}]
    prev_rows = []
    for e in o.get("at_probability", []):
        t = e["threshold"]
        for k in ("recall", "fpr", "precision"):
            rows.append({"metric": f"{k} at p >= {t:g}", "value [95% bootstrap]": interval(*_ci(e[k])),
                         "n": f"{e[k].get('k')}/{e[k].get('n')}"})
        for prev, v in (e.get("precision_at_prevalence") or {}).items():
            prev_rows.append({"threshold": f"p >= {t:g}", "deployment prevalence": float(prev), "precision": v})
    cal = o.get("calibration") or {}
    for k, name in (("ece", "expected calibration error"), ("mce", "maximum calibration error")):
        if cal.get(k) is not None:
            ci = (cal.get(f"{k}_bootstrap") or {}).get("ci95") or [None, None]
            rows.append({"metric": name, "value [95% bootstrap]": interval(cal[k], *ci, digits=4), "n": str(cal.get("n", ""))})
    ov = pd.DataFrame(rows)
    tables["performance"] = ov
    s.add(f"<h3>Split {esc(m.get('split'))}: headline numbers</h3>" + table(
        ov, "Positives / negatives in n. Intervals: stratified bootstrap, positives and negatives resampled apart.",
        raw_html=("value [95% bootstrap]",)))
    if prev_rows:
        pr = pd.DataFrame(prev_rows)
        tables["precision_at_prevalence"] = pr
        s.add(table(pr, "Precision in a survey where this fraction of galaxies are lenses (recall and FPR of the "
                        "validation split re-weighted): at 1e-3 to 1e-4 most candidates above these thresholds are "
                        "false positives, which is why visual inspection follows any search.", digits=4))
    tiers = run.evaluation.strata("tier")
    if tiers.is_file():
        t = pd.read_parquet(tiers)
        tt = pd.DataFrame({"tier": t["value"], "threshold": [f"p >= {x:g}" for x in t["threshold"]],
                           "positives / negatives": [f"{a} / {b}" for a, b in zip(t["n_pos"], t["n_neg"], strict=True)],
                           "recall [95%]": [interval(*v) for v in zip(t["recall"], t["recall_lo95"], t["recall_hi95"],
                                                                      strict=True)],
                           "FPR [95%]": [interval(*v, digits=4) for v in zip(t["fpr"], t["fpr_lo95"], t["fpr_hi95"],
                                                                            strict=True)],
                           "AUC [95%]": [interval(*v) for v in zip(t["auc"], t["auc_lo95"], t["auc_hi95"], strict=True)],
                           "status": t["status"]})
        tables["tiers"] = tt
        s.add("<h3>By tier</h3>" + table(tt, "Recall of Tier A (confident) and Tier B (probable) lenses, each against "
                                             "all negatives; FPR of N1 (random) and N2 (confuser) negatives. Intervals: "
                                             "Wilson for recall and FPR, bootstrap for AUC.",
                                         raw_html=("recall [95%]", "FPR [95%]", "AUC [95%]")))
    caps = {"roc_pr": ("ROC and precision-recall", "Curves with 68 and 95 percent bootstrap bands; the area gap "
                                                        "between the curves' bands is the uncertainty to quote."),
            "reliability": ("Reliability", "Observed lens fraction against predicted probability with Wilson "
                                               "intervals; points on the diagonal mean probabilities can be read as "
                                               "frequencies at this prevalence."),
            "metrics_vs_conditions": ("Metrics against observing conditions", "Recall and FPR per PSF-size and "
                                          "depth bin with intervals: a fall in recall in bad seeing or shallow data "
                                          "is a selection effect to correct for."),
            "fpr_by_confuser": ("False positives by confuser category", "FPR per N2 confuser class with Wilson "
                                    "intervals: which look-alikes the detector mistakes for lenses."),
            "gallery_high_scoring_negative": ("Failures: highest-scoring negatives", "Non-lenses the model scores "
                                                  "highest, with Grad-CAM; look for shared morphology (rings, arms)."),
            "gallery_low_scoring_positive": ("Failures: lowest-scoring positives", "Catalogued lenses the model "
                                                 "misses; faint or small arcs point to a detectability limit.")}
    for name, (title, cap) in caps.items():
        p = run.evaluation.figure(name)
        if p.is_file():
            s.add(figure(p, cap, title))
    return s


# ------------------------------------------------------------------ selection function
def _model_note(summ: dict) -> str:
    """Which model scored the run (a checkpoint, an ONNX or TorchScript file, or the offline exchange's scores)."""
    m = summ.get("model")
    if not m:
        return ""
    what = {"checkpoint": "lensaudit checkpoint", "onnx": "ONNX model", "torchscript": "TorchScript model",
            "exchange": "scores from the offline exchange"}.get(m.get("kind"), str(m.get("kind")))
    return f" Scored by: {esc(what)} <code>{esc(Path(str(m.get('path'))).name)}</code> (SHA-256 {esc(str(m.get('sha256'))[:12])})."


def section_selection(run: Run, figs: Path, tables: dict) -> Section:
    s = Section("selection", "Selection function")
    d = run.selection
    summ = read_doc(d.summary, SELECTION_SUMMARY, missing_ok=True)
    if summ is None:
        s.missing.append(("selection", HOW["selection"]))
        return s
    ops = [OperatingPoint.from_dict(x, str(d.operating_points))
           for x in read_doc(d.operating_points, OPERATING_POINTS)["points"]]
    head = headline([op.name for op in ops])
    hop = by_name(ops, head)
    rows = []
    for fam, v in summ["families"].items():
        for th, c in v["marginal"].items():
            rows.append({"family": fam, "operating point": th, "k / n": f"{c['k']:,} / {c['n']:,}",
                         "completeness [95% Jeffreys]": interval(c["completeness"], c["lo95"], c["hi95"])})
    sel = pd.DataFrame(rows)
    tables["selection_marginal"] = sel
    s.add(f"<p class=\"note\">{summ['n_hosts']:,} hosts (negatives of the audited splits, undiscovered lenses "
          f"among them as on the sky: no truth is read), {summ['cells']} grid cells per family.{_model_note(summ)}</p>")
    s.add("<h3>Completeness over the whole grid</h3>" + table(
        sel, "Pooled over every injection of the grid (uniform in theta_E and lensed magnitude inside the grid): "
             "compare families, not absolute values; a survey's completeness weights cells by its lens population. "
             f"A detection is {esc(RULE)}; the operating points: "
             + "; ".join(f"{esc(op.name)}: {esc(op.origin)}" for op in ops) + ".",
        raw_html=("completeness [95% Jeffreys]",)))
    for fam in summ["families"]:
        f = d.heatmap(fam)
        if f.is_file():
            s.add(figure(f, f"Completeness at {esc(head)} per (theta_E, PSF FWHM) cell, one panel per depth bin, pooled "
                            "over arc magnitude; grey cells hold too few injections. Completeness should rise with "
                            "theta_E / FWHM: arcs blended with the host's light are hard for any detector.",
                         f"{fam}: theta_E x PSF"))
    if d.config.is_file():
        from lensaudit.config import load_config
        from lensaudit.inject import parameter_table
        from lensaudit.selection.config import SelectionConfig

        scfg = load_config(d.config, SelectionConfig)
        for fam in scfg.families:
            pt = parameter_table(scfg.priors, fam)
            tables[f"priors_{fam.name}"] = pt
            s.add(f"<details><summary>{esc(fam.name)} ({esc(fam.kind)}): {len(pt)} drawn parameters and their priors"
                  "</summary>" + table(pt, "Every parameter this family draws, with its unit, valid range and prior "
                                           "as configured for this run (the grid axes narrow theta_E and the lensed "
                                           "magnitude to each cell).") + "</details>")
    if d.marginals.is_file():
        marg = read_artifact_table(d.marginals, MARGINALS)
        if d.marginals_figure.is_file():
            s.add(figure(d.marginals_figure, f"Completeness at {esc(head)} against each grid axis and against "
                                             "the source's half-light radius, concentration and offset, "
                                             "marginalised over the rest, with 68 percent Jeffreys bands: "
                                             "the source properties the detector selects on.",
                         "Marginal completeness"))
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.2, 3.8))
        g0 = marg[(marg["quantity"] == "arc_mag") & (marg["threshold"] == head)]
        for fam, g in g0.groupby("family", sort=False):
            x = ((g["lo"] + g["hi"]) / 2).to_numpy(float)
            ax.errorbar(x, g["completeness"].to_numpy(float), yerr=np.vstack([
                (g["completeness"] - g["lo95"]).to_numpy(float), (g["hi95"] - g["completeness"]).to_numpy(float)]),
                fmt="o-", ms=3, capsize=2, label=fam)
        ax.set_xlabel("lensed arc r magnitude (AB)")
        ax.set_ylabel(f"completeness at {hop.name} (95% Jeffreys)")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
        fn = save_figure(fig, figs / "completeness_vs_magnitude.png")
        s.add(figure(figs / fn, "Completeness against the lensed arc's r magnitude: the magnitude at which each "
                                "family falls to one half is the detector's depth for lensed arcs.",
                     "Completeness against lensed magnitude"))
        tables["selection_marginals"] = marg[marg["threshold"] == head][
            ["family", "quantity", "lo", "hi", "n", "k", "completeness", "lo95", "hi95"]]
    return s


# ------------------------------------------------------------------ realism
def _matched_gallery(run: Run, figs: Path, real: pd.DataFrame, fam: str, n: int = 6) -> str | None:
    """Real Tier-A lenses and, under each, the family's injection nearest in *measured* arc r magnitude
    (re-rendered from its record: injections are pure functions of their parameters and host)."""
    from lensaudit.config import load_config
    from lensaudit.cutouts import CutoutStore
    from lensaudit.inject import InjectionEngine, build_family
    from lensaudit.inject.records import read_injections
    from lensaudit.selection.config import SelectionConfig

    d = run.selection
    cfg = load_config(d.config, SelectionConfig)
    fams = {f.name: f for f in cfg.families}
    if fam not in fams or not run.store.is_dir():
        return None
    recs = read_injections(d, fam)
    recs = recs[np.isfinite(recs["meas_arc_mag_r"])]
    store = CutoutStore(run.store)
    have = set(store.ids().astype(str))
    real = real[real["id"].isin(have) & np.isfinite(real["meas_arc_mag_r"])].sort_values("meas_arc_mag_r")
    real = real.iloc[:: max(1, len(real) // n)].head(n)
    if not len(real) or not len(recs):
        return None
    pick = [int(np.argmin(np.abs(recs["meas_arc_mag_r"].to_numpy() - m))) for m in real["meas_arc_mag_r"]]
    r = recs.iloc[pick].reset_index(drop=True)
    hosts = store.get(list(r["host_id"]))
    eng = InjectionEngine(build_family(fams[fam]), cfg.engine)
    pcols = [c for c in r.columns if c in _PARAM_COLUMNS or c.startswith("knot") or c.startswith("stamp")]
    img, _ = eng.inject(hosts, r[["host_psfsize_g", "host_psfsize_r", "host_psfsize_z"]].to_numpy(float), r[pcols])
    labels = [f"real r~{m:.1f}" for m in real["meas_arc_mag_r"]] + [f"{fam} r~{m:.1f}" for m in r["meas_arc_mag_r"]]
    name = f"real_vs_{fam}.png"
    image_grid(list(store.get(list(real["id"]))) + list(img), labels, figs / name, ncol=len(real), crop=48)
    return name


_PARAM_COLUMNS = {"index", "family", "seed", "theta_e", "q_lens", "phi_lens", "gamma1", "gamma2", "x0", "y0", "beta_frac",
                  "beta_x", "beta_y", "arc_mag_r_target", "src_mag_r", "g_r", "r_z", "src_phi", "src_re", "src_q", "src_n",
                  "n_knots", "knot_fraction"}


def section_realism(run: Run, figs: Path, tables: dict) -> Section:
    s = Section("realism", "Realism of the injections")
    rp = run.realism.table
    if not rp.is_file():
        why = ((_json(run.stage_record("selection")) or {}).get("summary") or {}).get("realism")
        s.missing.append(("realism", esc(why) if isinstance(why, str) else HOW["realism"]))
        return s
    t = read_artifact_table(rp, REALISM)
    R = REALISM.c
    v = t.assign(**{"probe AUC [95%]": [interval(a, lo, hi) for a, lo, hi in
                                        zip(t[R.probe_auc], t[R.probe_auc_lo95], t[R.probe_auc_hi95], strict=True)],
                    "floors inj / real": [f"{fmt(a)} / {fmt(b)}" for a, b in
                                          zip(t[R.floor_injections], t[R.floor_real_halves], strict=True)],
                    R.verdict: [f'<span class="{"go" if x == "GO" else "nogo"}">{x}</span>' for x in t[R.verdict]]})
    cols = [R.family, R.planted, "probe AUC [95%]", R.permutation_p, R.null_q95, R.auc_mde80, "floors inj / real",
            R.verdict_stability, R.score_shift, R.n_real, R.n_injected, R.verdict]
    tables["realism"] = t[[c for c in t.columns if c != R.rule]]
    feats = (f"Features compared: {esc(t['features_from'].iat[0])}. " if "features_from" in t.columns else "")
    s.add(table(v[cols], feats + "The test, stated before it is run: a logistic probe on the detector's penultimate "
                         "features tries to tell real Tier-A lenses from injections matched to them in arc r magnitude "
                         "<i>measured from the pixels</i> (the same estimator on both; no truth is read). Its null: the "
                         f"probe refitted on permuted labels. {esc(t[R.rule].iat[0])}. null q95: the null's 95th "
                         "percentile; MDE80: the smallest AUC this test detects with 80 percent power. Floors: the probe "
                         "on one population at the same sizes (injections against injections; the real lenses in two "
                         "halves). stability: fraction of 80 percent subsamples of the real lenses giving the same "
                         "verdict. score shift: P(an injection is scored above a real lens of the same measured "
                         "brightness); above 0.5 the family is easier to find. A planted family must be NO-GO.",
                raw_html=("probe AUC [95%]", "verdict")))
    doc = read_doc(run.realism.report, REALISM_DOC, missing_ok=True) or {}
    acc = []
    for fam, det in (doc.get("details") or {}).items():
        for row in det.get("estimator_accuracy", []):
            acc.append({"family": fam, **row})
    if acc:
        a = pd.DataFrame(acc)
        a = a[a["n"] > 0]
        tables["arc_photometry_accuracy"] = a
        s.add(table(a.round(3), "The arc photometry estimator (lensaudit.survey.arcphot: host model from elliptical "
                                "annuli, arc mask at 2 sigma, flux in the mask) validated on each family's injections, "
                                "whose true lensed r magnitude is known: fraction of arcs measured, median offset "
                                "measured - true and its robust scatter (mag) per bin of true magnitude. The same "
                                "estimator measures the real lenses, so its bias is shared; its scatter blurs the "
                                "brightness matching."))
    rl = run.realism.real_lenses
    real = read_artifact_table(rl, REALISM_LENSES) if rl.is_file() else None
    if real is not None and len(real):
        for fam in t["family"]:
            try:
                name = _matched_gallery(run, figs, real, fam)
            except Exception as exc:  # a gallery is an illustration: the report goes on without it
                log.warning("report: no real-vs-%s gallery (%s)", fam, exc)
                name = None
            if name:
                s.add(figure(figs / name, "Top: real Tier-A lenses of the audited splits, by measured arc magnitude; "
                                          f"bottom: the {fam} injection nearest in measured arc magnitude (central 48 "
                                          "pixels).", f"Real against {fam} at matched measured brightness"))
        from lensaudit.inject.records import read_injections

        plt = pyplot()
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
        bins_s = np.logspace(0, 3, 30)
        a1.hist(real["meas_arc_snr_r"].clip(1, None), bins=bins_s, density=True, histtype="stepfilled", color="k",
                alpha=0.25, label="real Tier A")
        a2.hist(real["meas_arc_g_r"], bins=30, range=(-1.0, 2.5), density=True, histtype="stepfilled", color="k",
                alpha=0.25, label="real Tier A")
        for fam in t["family"]:
            r = read_injections(run.selection, fam)
            a1.hist(r["meas_arc_snr_r"].clip(1, None), bins=bins_s, density=True, histtype="step", label=fam)
            a2.hist(r["meas_arc_g_r"], bins=30, range=(-1.0, 2.5), density=True, histtype="step", label=fam)
        a1.set_xscale("log")
        a1.set_xlabel("measured arc S/N (r band, in the arc mask)")
        a1.set_ylabel("density")
        a2.set_xlabel("measured arc g - r (AB mag)")
        a1.legend(fontsize=7)
        f = save_figure(fig, figs / "realism_distributions.png")
        s.add(figure(figs / f, "Measured arc S/N and colour of the real Tier-A lenses (grey) and of each family's "
                               "injections over the whole grid (not brightness-matched), by the same estimator.",
                     "Measured S/N and colour distributions"))
    return s


# ------------------------------------------------------------------ closure
def section_closure(run: Run, figs: Path, tables: dict) -> Section:
    s = Section("closure", "Closure test (mock truth)")
    cp = run.closure.summary
    if not cp.is_file():
        s.missing.append(("closure", HOW["closure"]))
        return s
    c = read_artifact_table(cp, CLOSURE_SUMMARY)
    C = CLOSURE_SUMMARY.c
    head = headline(c[C.threshold].unique())
    c5 = c[c[C.threshold] == head]
    v = c5.assign(**{"Delta [95%]": [interval(a, lo, hi) for a, lo, hi in zip(c5[C.diff], c5[C.lo95], c5[C.hi95],
                                                                               strict=True)]})
    cols = [C.family, C.n_true_covered, C.c_true, C.c_inj, "Delta [95%]", C.p_value, C.mde80, C.chi2, C.dof, C.chi2_p,
            C.gate_verdict]
    tables["closure"] = c5
    s.add(table(v[cols], "The primary statistic, stated before the run: Delta = injection-predicted minus true "
                         f"completeness of the mock's lenses outside the training split, at {esc(head)}, over the lenses "
                         "whose grid cell holds enough injections (n_true_covered). Its interval resamples the true "
                         "lenses, the injections and, for a stamp family, the stamps (library bootstrap); MDE80: the "
                         "smallest |Delta| detected with 80 percent power. Secondary: chi2 over theta_E x magnitude "
                         "bins merged to at least 10 true lenses, one degree of freedom per bin (nothing is fitted). "
                         "Only this section reads the mock's truth; the gate's verdict (computed without it) is beside "
                         "each family.", raw_html=("Delta [95%]",)))
    if run.closure.figure.is_file():
        s.add(figure(run.closure.figure,
                     "Measured (coloured, one per family, bootstrap sd) against true (black, 68 percent Jeffreys) "
                     "completeness per marginal bin. A family that closes within the intervals measures the survey's "
                     "selection; one that misses by more does not, whatever its grid says.",
                     "Measured against true completeness"))
    return s


# ------------------------------------------------------------------ ensembles
def section_ensemble(run: Run, figs: Path, tables: dict) -> Section:
    s = Section("ensemble", "Domain-specialised ensembles")
    d = run.ensemble
    e = read_doc(d.summary, ENSEMBLE, missing_ok=True)
    if e is None:
        s.missing.append(("ensemble", HOW["ensemble"]))
        return s
    rules = "; ".join(f"<b>{esc(k)}</b> on {esc(r['column'])}: {esc(', '.join(r['domains']))}"
                      + (f" (cut {fmt(r['cut'])}, {esc(r.get('cut_from'))})" if "cut" in r else "")
                      for k, r in e["rules"].items())
    s.add(f"<p>One model per domain, trained on that domain's rows only: {rules}. Baseline: the single model "
          f"trained on every domain. Combinations: mean probability (average), the own-domain model weighted "
          f"(gate), and the meta-learner fitted out of fold on the {esc(e['fit_split'])} split. Every number "
          f"below is measured on the {esc(e['audit_split'])} split ({e['n_audit']} objects, {e['n_audit_lenses']} "
          f"lenses) with its 95 percent interval; operating threshold p &ge; {fmt(e['threshold'])}.</p>")
    perf = pd.read_csv(d.table("performance"))
    show = pd.DataFrame({"scorer": perf["scorer"], "kind": perf["kind"],
                         "ROC AUC [95%]": [interval(*r) for r in perf[["auc", "auc_lo95", "auc_hi95"]].to_numpy()],
                         "AUC Tier A [95%]": [interval(*r) for r in
                                              perf[["auc_tier_a", "auc_tier_a_lo95", "auc_tier_a_hi95"]].to_numpy()],
                         "recall [95%]": [interval(*r) for r in perf[["recall", "recall_lo95", "recall_hi95"]].to_numpy()],
                         "FPR [95%]": [interval(*r) for r in perf[["fpr", "fpr_lo95", "fpr_hi95"]].to_numpy()]})
    tables["ensemble_performance"] = perf
    s.add(table(show, "Baseline, members (each on every audited object, its own domain or not) and combinations.",
                raw_html=("ROC AUC [95%]", "AUC Tier A [95%]", "recall [95%]", "FPR [95%]")))
    y = pd.read_csv(d.table("yield"))
    tables["ensemble_yield"] = y
    combos = ["baseline", *e["combinations"]]
    yc = y[y["scorer"].isin(combos)]
    piv = yc.assign(cell=[interval(v, lo, hi) + f" ({int(f)}/{int(n)})" for v, lo, hi, f, n in
                          yc[["value", "lo95", "hi95", "found", "n"]].to_numpy()])
    piv = piv.pivot_table(index=["target", "scorer"], columns="k", values="cell", aggfunc="first", sort=False)
    piv.columns = [f"top {k}" for k in piv.columns]
    piv = piv.reset_index()
    s.add(table(piv, "Yield at a fixed inspection budget: the fraction of each target set inside the top-K list "
                     f"(found / all), for the baseline and each combination (members in "
                     f"{esc(d.table('yield').relative_to(d.root))}).",
                raw_html=tuple(c for c in piv.columns if c.startswith("top "))))
    u = pd.read_csv(d.table("unique_finds"))
    tables["ensemble_unique_finds"] = u
    tgt = "true lenses (mock truth)" if "true lenses (mock truth)" in set(u["target"]) else "lenses (label 1)"
    uu = u[u["target"] == tgt]
    only = [c for c in u.columns if c.startswith("only_")]

    def _cell(r) -> str:
        who = ", ".join(f"{c[5:]} {int(r[c])}" for c in only if pd.notna(r[c]) and r[c] > 0)
        return f"{int(r['targets_in_list'])} / {int(r['found_by_one_member'])}" + (f" ({who})" if who else "") + \
            f" / {int(r['found_by_no_member'])}"

    upiv = uu.assign(cell=[_cell(r) for _, r in uu.iterrows()]).pivot_table(
        index="scorer", columns="k", values="cell", aggfunc="first", sort=False)
    upiv.columns = [f"top {k}" for k in upiv.columns]
    upiv = upiv.reset_index()
    s.add(table(upiv, f"Who found what ({esc(tgt)}): in each combination's top-K list, the targets it holds / how many "
                      "of them are in the top-K of exactly one member (which) / in no member's top-K. Every target "
                      f"in {esc(d.table('unique_finds').relative_to(d.root))}."))
    dis = pd.read_csv(d.table("disagreement"))
    dis = dis[dis["pair"] == "all members"]
    tables["ensemble_disagreement"] = dis
    dshow = pd.DataFrame({"members of": dis["group"], "stratum": dis["stratum"], "objects": dis["label"],
                          "disagree [95%]": [interval(*r) + f" ({int(k)}/{int(n)})" for r, k, n in
                                             zip(dis[["value", "lo95", "hi95"]].to_numpy(), dis["k"], dis["n"],
                                                 strict=True)]})
    s.add(table(dshow, "Disagreement: members on both sides of the threshold, by domain stratum and label.",
                raw_html=("disagree [95%]",)))
    corr = pd.read_csv(d.table("correlations"))
    tables["ensemble_correlations"] = corr
    for f, cap, title in (("correlations", "Pearson correlation of the members' logits with each other and with "
                                          "the baseline (all audited objects; per-stratum values and Spearman "
                                          f"correlations with intervals in {esc(d.table('correlations').relative_to(d.root))}).",
                           "Member score correlations"),
                          ("selective", "Selective classification: recall and precision on the objects kept when "
                                            "the most uncertain fraction is set aside for inspection. Solid: member "
                                            "spread of each combination; dashed: the baseline's own margin and a "
                                            "random order (the reference a useful uncertainty must beat).",
                           "Does disagreement flag unreliable scores?"),
                          ("yield", "Fraction of each target set in the top-K list against K, with Wilson 95 "
                                    "percent intervals; dashed: the baseline.", "Yield at fixed inspection budget")):
        if d.figure(f).is_file():
            s.add(figure(d.figure(f), cap, title))
    sc = d.table("selection_compare")
    if sc.is_file():
        c = pd.read_csv(sc)
        c = c[c["cell"].astype(str) == "all"]
        tables["ensemble_selection"] = c
        top = headline(c["threshold"].unique()) if len(c) else None
        c = c[c["threshold"] == top]
        cshow = pd.DataFrame({"family": c["family"], "scorer": c["scorer"], "threshold": c["threshold"],
                              "injections": c["n"], "completeness [95%]": [interval(*r) for r in
                                                                         c[["completeness", "lo95", "hi95"]].to_numpy()],
                              "baseline": c["completeness_baseline"], "difference": c["diff"],
                              "found only by it": c["only_this"], "only by the baseline": c["only_baseline"],
                              "McNemar p": ["< 0.001" if p < 1e-3 else f"{p:.3f}" for p in c["mcnemar_p"]]})
        s.add(table(cshow, f"Selection function on the same injections ({esc(top)}): completeness of each member and "
                           "combination against the baseline, with the paired (exact McNemar) test of the difference; "
                           f"every threshold and cell in {esc(d.table('selection_compare').relative_to(d.root))}.",
                    raw_html=("completeness [95%]", "McNemar p")))
        for f in (e.get("selection") or {}).get("families", []):
            p = d.selection_diff_figure(f)
            if p.is_file():
                s.add(figure(p, f"{f} injections: completeness of each combination minus the baseline's per theta_E x "
                                "PSF cell (pooled over depth and arc magnitude); starred cells differ at paired p < "
                                "0.05 (per cell, not corrected for the number of cells). Blue: the ensemble finds "
                                "more.", "Where the selection functions differ"))
    elif e.get("selection") is None:
        s.missing.append(("selection-function comparison", "add <code>selection: {config: "
                          f"{_R.selection.config}}}</code> to the ensemble config"))
    return s


# ------------------------------------------------------------------ methods
def methods(run: Run) -> str:
    parts = []
    # the demo's own run record is written after its last stage (this report): the training run's then
    info = _json(run.run_info) or _json(run.train.run_info)
    if info:
        v = info.get("versions", {})
        parts.append(f"<p>Run at {esc(info.get('utc_time'))} from commit <code>{esc(info.get('git_commit'))}</code> "
                     f"on {esc(info.get('platform'))}; seeds {esc(json.dumps(info.get('seeds', {})))}; "
                     f"{esc(', '.join(f'{k} {x}' for k, x in sorted(v.items())))}.</p>")
    for title, p in (("Catalog cuts and sampling", run.catalog.resolved_config),
                     ("Training", run.train.resolved_config),
                     ("Selection function (grid, priors, engine, thresholds)", run.selection.config),
                     ("Ensembles (domains, combinations, budgets)", run.ensemble.resolved_config)):
        if p.is_file():
            parts.append(f"<h3>{esc(title)}</h3><pre>{esc(p.read_text())}</pre>")
    th = read_doc(run.selection.operating_points, OPERATING_POINTS, missing_ok=True)
    if th:
        parts.append(f"<h3>Operating points (a detection is {esc(RULE)})</h3><pre>"
                     + esc(json.dumps(th["points"], indent=1)) + "</pre>")
    m = _json(run.evaluation.metrics)
    if m:
        parts.append("<h3>Evaluation</h3><pre>" + esc(json.dumps(m.get("config", {}), indent=1)) + "</pre>")
    rj = read_doc(run.realism.report, REALISM_DOC, missing_ok=True)
    if rj:
        parts.append("<h3>Realism gate</h3><pre>" + esc(json.dumps(rj.get("config", {}), indent=1)) + "</pre>")
    return "".join(parts) or "<p>No run record found.</p>"


SECTIONS = (section_data, section_sources, section_training, section_performance, section_selection, section_realism, section_closure,
            section_ensemble)


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report/index.html`` (plus figures and tables) for a run directory; returns its path."""
    run = Run(run_dir)
    if not run.root.is_dir():
        from lensaudit.errors import InputError

        raise InputError(f"report: run directory {run.root} not found")
    rep = ReportDir(out) if out else run.report
    figs = rep.figures
    figs.mkdir(parents=True, exist_ok=True)
    tables: dict[str, pd.DataFrame] = {}
    sections = []
    for fn in SECTIONS:
        try:
            sections.append(fn(run, figs, tables))
        except Exception as exc:  # one broken stage output must not hide the rest of the audit
            log.warning("report: section %s failed: %s", fn.__name__, exc)
            sec = Section(fn.__name__.removeprefix("section_"), fn.__name__.removeprefix("section_").title())
            sec.missing.append(("this section", f"could not be built from {run.root}: {esc(exc)}"))
            sections.append(sec)
    info = _json(run.run_info) or {}
    # the demo writes its run_info.json after its last stage (this report): then the commit of this code
    commit = info.get("git_commit") or f"{git_commit()} (of the code writing this report)"
    sub = (f"Run directory <code>{esc(run.root.resolve())}</code>; commit <code>{esc(commit)}</code>. "
           "Every number comes with its interval and count.")
    html_text = page("lensaudit audit report", sub, sections, methods(run))
    atomic_write_text(rep.index, html_text)
    write_tables(tables, rep.tables)
    return rep.index


# ------------------------------------------------------------------ validation (lensaudit validate)
def section_validation(vd: ValidationDir, tables: dict) -> Section:
    """The validation matrix: universes x families heatmap, gate statistic against closure error, agreement."""
    s = Section("validation", "Validation of the instrument (universes x families x seeds)")
    doc = read_doc(vd.matrix, VALIDATION_MATRIX, missing_ok=True)
    if doc is None:
        s.missing.append(("validation", "<code>lensaudit validate --config configs/validation.yaml</code>"))
        return s
    sm, rules = doc["summary"], doc["rules"]
    cells = pd.DataFrame(doc["cells"])
    rc = sm["rank_correlation"]
    uni = "".join(f"<li><b>{esc(u['name'])}</b>: {esc(u['description'])} "
                  f"({fmt(u['truth_diagnostics'].get('n_true_lenses'))} true lenses outside training; "
                  f"{fmt(u['truth_diagnostics'].get('fraction_beyond_beta_prior'))} of them beyond the injection prior's "
                  f"beta/theta_E)</li>" for u in doc["universes"])
    s.add(f"<p>Rules fixed before the run: closure holds when |Delta| &le; {fmt(rules['tolerance'])} at "
          f"{esc(rules['operating_point'])}; the gate agrees when GO and closure holds, or NO-GO and it does not; the "
          f"gate statistic correlated with |Delta| is {esc(rules['gate_statistic'])}"
          f"{' (planted control apart)' if rules['exclude_planted_from_correlation'] else ''}. Universes:</p><ul>{uni}</ul>"
          f"<p><b>Agreement</b> {fmt(sm['agreement'])} of {sm['n_judged']} cells ({fmt(sm['agreement_without_planted'])} "
          f"without the planted control); <b>Spearman</b>({esc(rc['statistic'])}, |Delta|) = {fmt(rc['rho'])} "
          f"(p {fmt_p(rc['p'])}, {rc['n']} cells); planted NO-GO in {fmt(sm['planted_no_go'])} of its cells; closure "
          f"undecided (interval straddles the tolerance) in {fmt(sm['undecided_fraction'])} of cells; median MDE80 of "
          f"Delta {fmt(sm['median_delta_mde80'])}. Without the planted control the gate said GO in "
          f"{fmt(sm['gate_go_fraction'])} of cells and closure held in {fmt(sm['closure_holds_fraction'])}; the score "
          f"shift's signed Spearman correlation with Delta is "
          f"{fmt((sm.get('score_shift_vs_delta') or {}).get('rho'))}.</p>")
    for name, cap in (("closure_heatmap", "Closure error Delta = C_inj - C_true per universe and family, mean over "
                                          "injection seeds; each cell: the range of the seeds' 95 percent intervals, "
                                          "the majority gate verdict and the fraction of seeds agreeing with it."),
                      ("gate_vs_closure", "The gate's statistic (no truth) against the closure error (truth) per cell "
                                          "with its bootstrap sd; the planted control marked x.")):
        if vd.figure(name).is_file():
            s.add(figure(vd.figure(name), cap, name.replace("_", " ")))
    V = VALIDATION_CELLS.c
    show = cells[[V.universe, V.family, V.seed, V.probe_auc, V.gate_p, V.verdict, V.delta, V.delta_lo95, V.delta_hi95,
                  V.delta_mde80, V.closure_holds, V.closure_undecided, V.agrees]]
    tables["validation_cells"] = cells
    yes_no = {True: "yes", False: "no", None: "-"}
    show = show.assign(**{c: [yes_no.get(v if v is None else bool(v), "-") for v in show[c]]
                          for c in (V.closure_holds, V.closure_undecided, V.agrees)})
    s.add(table(show, "Every cell: the gate (probe AUC and its permutation p, verdict) beside the closure's primary "
                      "statistic with its interval and MDE80, whether closure holds and whether the gate agrees."))
    per = pd.DataFrame(sm["per_universe_family"]).drop(columns=["verdicts"])
    tables["validation_per_universe_family"] = per
    s.add(table(per, "Per universe and family over the seeds: Delta (mean, range), the majority verdict and its seed "
                     "agreement, the fraction of seeds where closure holds and where the gate agrees."))
    return s


def build_validation_report(validation_dir: str | Path) -> Path:
    """Write ``<validation>/report/index.html`` (the validation section and its tables); returns its path."""
    vd = ValidationDir(validation_dir)
    tables: dict[str, pd.DataFrame] = {}
    sec = section_validation(vd, tables)
    doc = read_doc(vd.matrix, VALIDATION_MATRIX, missing_ok=True) or {}
    meth = ("<h3>Validation config</h3><pre>" + esc(json.dumps(doc.get("config", {}), indent=1)) + "</pre>"
            "<h3>Runtime (s)</h3><pre>" + esc(json.dumps((doc.get("summary") or {}).get("runtime_s", {}), indent=1))
            + "</pre>")
    html_text = page("lensaudit instrument validation", f"Validation folder <code>{esc(vd.root.resolve())}</code>; "
                     f"commit <code>{esc(git_commit())}</code>.", [sec], meth)
    vd.report.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(vd.report.index, html_text)
    write_tables(tables, vd.report.tables)
    return vd.report.index


__all__ = ["SECTIONS", "build_report", "build_validation_report", "section_validation"]

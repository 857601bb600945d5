"""``lensaudit evaluate``: join predictions to the manifest, compute every metric with an interval
and a count, stratify, check leakage and shortcuts, optionally compare with the mock's truth,
and write ``metrics.json``, Parquet tables and figures."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.evaluate.bootstrap import (
    bootstrap_ap,
    bootstrap_auc,
    bootstrap_auc_blocks,
    bootstrap_precision,
    bootstrap_proportion,
    bootstrap_ratio_blocks,
    bootstrap_recall_at_fpr,
    percentile_interval,
)
from lensaudit.evaluate.config import EvalConfig
from lensaudit.evaluate.leakage import shortcut_gates, split_leakage
from lensaudit.evaluate.metrics import (
    MetricError,
    calibration,
    confusion_at,
    pr_auc,
    precision_at_prevalence,
    roc_auc,
    threshold_at_fpr,
    threshold_at_top_fraction,
    wilson_interval,
)
from lensaudit.survey.photometry import depth_to_mag5
from lensaudit.utils.io import atomic_write_json

log = logging.getLogger(__name__)


class EvaluationInputError(ValueError):
    """Predictions and manifest cannot be evaluated together (the message says which rows)."""


def join_predictions(preds: pd.DataFrame, manifest: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """Inner join on id after checking: no NaN or out-of-range probabilities, no ids outside the manifest,
    every manifest row of the split scored."""
    p = preds.copy()
    p["id"] = p["id"].astype(str)
    if "probability" not in p:
        raise EvaluationInputError("predictions: no 'probability' column")
    bad = p["probability"].isna() | ~p["probability"].between(0, 1)
    if bad.any():
        raise EvaluationInputError(f"predictions: {int(bad.sum())} row(s) with NaN or out-of-range probability, "
                                   f"ids {p.loc[bad, 'id'].head(5).tolist()}")
    if p["id"].duplicated().any():
        raise EvaluationInputError(f"predictions: duplicate ids {p.loc[p['id'].duplicated(), 'id'].head(5).tolist()}")
    m = manifest.copy()
    m["id"] = m["id"].astype(str)
    extra = sorted(set(p["id"]) - set(m["id"]))
    if extra:
        raise EvaluationInputError(f"predictions: {len(extra)} id(s) not in the manifest, e.g. {extra[:5]}")
    if split is not None:
        m = m[m["split"] == split]
        p = p[p["id"].isin(set(m["id"]))]
    missing = sorted(set(m["id"]) - set(p["id"]))
    if missing:
        raise EvaluationInputError(f"predictions: {len(missing)} manifest row(s) of split {split!r} have no score, "
                                   f"e.g. {missing[:5]} (score them, or pass a manifest without them)")
    df = m.merge(p[[c for c in p.columns if c not in m.columns or c == "id"]], on="id", how="inner", validate="one_to_one")
    if not (df["label"] == 1).any():
        raise EvaluationInputError(f"split {split!r} has no positives: nothing to evaluate")
    if "logit" not in df:
        df["logit"] = np.log(np.clip(df["probability"], 1e-12, 1)) - np.log(np.clip(1 - df["probability"], 1e-12, 1))
    return df.reset_index(drop=True)


def _prop(k: int, n: int, cfg: EvalConfig, seed: int) -> dict:
    lo, hi = wilson_interval(k, n)
    d = {"value": k / n if n else None, "k": int(k), "n": int(n), "wilson95": [float(lo), float(hi)] if n else None}
    if n:
        d.update({"bootstrap": percentile_interval(bootstrap_proportion(k, n, cfg.n_boot, seed))})
    return d


def _auc_entry(y: np.ndarray, s: np.ndarray, cfg: EvalConfig, groups=None) -> dict:
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos < cfg.min_count or n_neg < cfg.min_count:
        return {"value": None, "n_pos": n_pos, "n_neg": n_neg, "status": "insufficient"}
    d = {"value": roc_auc(y, s), "n_pos": n_pos, "n_neg": n_neg,
         "bootstrap": percentile_interval(bootstrap_auc(y, s, cfg.n_boot, cfg.seed))}
    if groups is not None and cfg.block_bootstrap and len(np.unique(groups)) >= 5:
        d["block_bootstrap"] = percentile_interval(bootstrap_auc_blocks(y, s, groups, min(cfg.n_boot, 1000), cfg.seed))
    return d


def threshold_metrics(y: np.ndarray, s: np.ndarray, t: float, cfg: EvalConfig, seed: int,
                      groups: np.ndarray | None = None) -> dict:
    c = confusion_at(y, s, t)
    n_pos, n_neg = c["tp"] + c["fn"], c["fp"] + c["tn"]
    prec = bootstrap_precision(c["tp"], n_pos, c["fp"], n_neg, cfg.n_boot, seed)
    recall, fpr = (c["tp"] / n_pos if n_pos else np.nan), (c["fp"] / n_neg if n_neg else np.nan)
    sel = c["tp"] + c["fp"]
    return {"threshold": float(t), "recall": _prop(c["tp"], n_pos, cfg, seed), "fpr": _prop(c["fp"], n_neg, cfg, seed + 1),
            "precision": {"value": c["tp"] / sel if sel else None, "k": c["tp"], "n": sel,
                          "wilson95": [float(v) for v in wilson_interval(c["tp"], sel)] if sel else None,
                          "bootstrap": percentile_interval(prec)},
            "precision_at_prevalence": {str(pi): float(precision_at_prevalence(recall, fpr, pi)) for pi in cfg.prevalences},
            **_block_props(y, s >= t, groups, cfg, seed)}


def _block_props(y: np.ndarray, sel: np.ndarray, groups, cfg: EvalConfig, seed: int) -> dict:
    """Recall and FPR intervals from resampling whole HEALPix pixels (spatially correlated rows move together)."""
    if groups is None or not cfg.block_bootstrap or len(np.unique(groups)) < 5:
        return {}
    g_uni, g_idx = np.unique(groups, return_inverse=True)
    out = {}
    for name, cls in (("recall", 1), ("fpr", 0)):
        m = y == cls
        k = np.bincount(g_idx[m & sel], minlength=g_uni.size)
        n = np.bincount(g_idx[m], minlength=g_uni.size)
        out[f"{name}_block_bootstrap"] = percentile_interval(bootstrap_ratio_blocks(k, n, min(cfg.n_boot, 2000), seed))
    return out


def core_metrics(df: pd.DataFrame, cfg: EvalConfig) -> dict:
    y, p, s = df["label"].to_numpy(int), df["probability"].to_numpy(float), df["logit"].to_numpy(float)
    hp = next((c for c in df.columns if c.startswith("healpix_")), None)
    out = {"n_pos": int(y.sum()), "n_neg": int((1 - y).sum()),
           "roc_auc": _auc_entry(y, s, cfg, df[hp].to_numpy() if hp else None)}
    try:
        ap = pr_auc(y, s)
        out["pr_auc"] = {"value": ap, "n_pos": int(y.sum()), "n_neg": int((1 - y).sum()),
                         "bootstrap": percentile_interval(bootstrap_ap(y, s, cfg.n_boot, cfg.seed + 60)),
                         "n_boot": cfg.n_boot}
    except MetricError as exc:
        out["pr_auc"] = {"value": None, "status": str(exc)}
    groups = df[hp].to_numpy() if hp else None
    out["at_probability"] = [threshold_metrics(y, p, t, cfg, cfg.seed + i, groups) for i, t in enumerate(cfg.thresholds)]
    out["at_target_fpr"] = []
    for i, f in enumerate(cfg.target_fprs):
        n_neg = int((1 - y).sum())
        entry = {"target_fpr": f}
        if f * n_neg < 1:
            entry.update({"status": "insufficient", "reason": f"{n_neg} negatives cannot resolve FPR {f}"})
        else:
            entry.update(threshold_metrics(y, s, threshold_at_fpr(s[y == 0], f), cfg, cfg.seed + 10 + i, groups))
            rec, thr = bootstrap_recall_at_fpr(y, s, f, cfg.n_boot, cfg.seed + 50 + i)
            entry["recall_threshold_reestimated"] = {"bootstrap": percentile_interval(rec),
                                                     "threshold_bootstrap": percentile_interval(thr),
                                                     "note": "threshold re-derived from each resample's negatives"}
        out["at_target_fpr"].append(entry)
    t_top = threshold_at_top_fraction(s, cfg.top_fraction)
    out["at_top_fraction"] = {"fraction": cfg.top_fraction, **threshold_metrics(y, s, t_top, cfg, cfg.seed + 20)}
    try:
        cal = calibration(y, p, cfg.calibration_bins)
        hi = p > cfg.high_score
        cal_hi = calibration(y[hi], p[hi], max(2, cfg.calibration_bins // 2)) if len(np.unique(y[hi])) == 2 else None
        rng = np.random.default_rng(cfg.seed + 40)
        eces, mces = [], []
        for _ in range(min(cfg.n_boot, 300)):
            idx = rng.integers(0, len(y), len(y))
            if y[idx].any() and not y[idx].all():
                c = calibration(y[idx], p[idx], cfg.calibration_bins)
                eces.append(c["ece"])
                mces.append(c["mce"])
        out["calibration"] = {**cal, "n": int(len(y)), "ece_bootstrap": percentile_interval(np.array(eces)),
                              "mce_bootstrap": percentile_interval(np.array(mces)),
                              "high_score": {"above": cfg.high_score, "n": int(hi.sum()),
                                             **(cal_hi or {"status": "single class"})}}
    except MetricError as exc:
        out["calibration"] = {"status": str(exc)}
    return out


def _bin(values: np.ndarray, edges: tuple[float, ...], unit: str) -> np.ndarray:
    labels = [f"<{edges[0]}{unit}"] + [f"{a}-{b}{unit}" for a, b in zip(edges[:-1], edges[1:], strict=True)] + [f">={edges[-1]}{unit}"]
    return np.asarray(labels, dtype=object)[np.searchsorted(np.asarray(edges), values, side="right")]


def add_bins(df: pd.DataFrame, cfg: EvalConfig) -> pd.DataFrame:
    df = df.copy()
    if "psfsize_r" in df:
        df["psfsize_r_bin"] = _bin(df["psfsize_r"].to_numpy(float), cfg.psfsize_edges_arcsec, "arcsec")
    if "psfdepth_r" in df:
        with np.errstate(divide="ignore", invalid="ignore"):
            df["depth_r_mag"] = depth_to_mag5(df["psfdepth_r"].to_numpy(float))
        df["depth_r_bin"] = _bin(np.nan_to_num(df["depth_r_mag"].to_numpy(), nan=0.0), cfg.depth_edges_mag, "mag")
    if "ebv" in df:
        df["ebv_bin"] = _bin(df["ebv"].to_numpy(float), cfg.ebv_edges_mag, "mag")
    return df


STRATA = ("tier", "type", "nobs_z_bin", "psfsize_r_bin", "depth_r_bin", "ebv_bin")


def stratify(df: pd.DataFrame, col: str, cfg: EvalConfig) -> pd.DataFrame:
    """One row per stratum value and threshold: counts, recall and FPR with Wilson intervals, AUC with
    bootstrap interval, or 'insufficient' below ``min_count``. For ``tier`` positives (A, B) give recall
    and negatives (N1, N2) give FPR against their own pool."""
    rows = []
    y_all, s_all = df["label"].to_numpy(int), df["logit"].to_numpy(float)
    for val, g in df.groupby(col, sort=True):
        y, p, s = g["label"].to_numpy(int), g["probability"].to_numpy(float), g["logit"].to_numpy(float)
        n_pos, n_neg = int(y.sum()), int((1 - y).sum())
        if col == "tier" and n_pos:  # tier positives against every negative
            yy, ss = np.r_[y[y == 1], y_all[y_all == 0]], np.r_[s[y == 1], s_all[y_all == 0]]
        else:
            yy, ss = y, s
        auc = _auc_entry(yy, ss, cfg) if len(np.unique(yy)) == 2 else {"value": None, "status": "single class"}
        for t in cfg.thresholds:
            c = confusion_at(y, p, t)
            r_lo, r_hi = wilson_interval(c["tp"], n_pos)
            f_lo, f_hi = wilson_interval(c["fp"], n_neg)
            ok_pos, ok_neg = n_pos >= cfg.min_count, n_neg >= cfg.min_count
            rows.append({"stratum": col, "value": str(val), "threshold": t, "n_pos": n_pos, "n_neg": n_neg,
                         "recall": c["tp"] / n_pos if ok_pos else np.nan,
                         "recall_lo95": float(r_lo) if ok_pos else np.nan, "recall_hi95": float(r_hi) if ok_pos else np.nan,
                         "fpr": c["fp"] / n_neg if ok_neg else np.nan,
                         "fpr_lo95": float(f_lo) if ok_neg else np.nan, "fpr_hi95": float(f_hi) if ok_neg else np.nan,
                         "auc": auc.get("value") if auc.get("value") is not None else np.nan,
                         "auc_lo95": auc["bootstrap"]["ci95"][0] if "bootstrap" in auc else np.nan,
                         "auc_hi95": auc["bootstrap"]["ci95"][1] if "bootstrap" in auc else np.nan,
                         "status": "ok" if (ok_pos or ok_neg) else "insufficient"})
    return pd.DataFrame(rows)


def confuser_fpr(df: pd.DataFrame, cfg: EvalConfig) -> pd.DataFrame:
    neg = df[df["label"] == 0].copy()
    if "confuser_category" not in neg:
        return pd.DataFrame()
    neg["confuser_category"] = neg["confuser_category"].replace("", "none")
    rows = []
    for cat, g in neg.groupby("confuser_category"):
        for t in cfg.thresholds:
            k, n = int((g["probability"] >= t).sum()), len(g)
            lo, hi = wilson_interval(k, n)
            ok = n >= cfg.min_count
            rows.append({"confuser_category": cat, "threshold": t, "n_neg": n, "n_above": k,
                         "fpr": k / n if ok else np.nan, "fpr_lo95": float(lo) if ok else np.nan,
                         "fpr_hi95": float(hi) if ok else np.nan, "status": "ok" if ok else "insufficient"})
    return pd.DataFrame(rows)


def failure_tables(df: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """Highest-scoring negatives and lowest-scoring positives per Tractor type, with their metadata."""
    parts = []
    for t, g in df.groupby("type"):
        parts.append(g[g.label == 0].nlargest(n, "probability").assign(failure="high_scoring_negative"))
        parts.append(g[g.label == 1].nsmallest(n, "probability").assign(failure="low_scoring_positive"))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return out.drop(columns=[c for c in ("features",) if c in out])


def truth_metrics(df: pd.DataFrame, truth: pd.DataFrame, cfg: EvalConfig) -> dict:
    """Mock survey only: true recall vs Einstein radius, arc brightness and seeing, and wrong Tier-A/B labels."""
    t = truth.copy()
    t["id"] = t["id"].astype(str)
    lenses = t[t["kind"] == "lens"].set_index("id")
    d = df.copy()
    d["true_lens"] = d["id"].isin(lenses.index)
    out = {"n_true_lenses_scored": int(d["true_lens"].sum())}
    b = d[d["tier"] == "B"]
    if len(b):
        k = int((~b["true_lens"]).sum())
        out["tier_b_wrong_fraction"] = _prop(k, len(b), cfg, cfg.seed + 30)
    a = d[d["tier"] == "A"]
    if len(a):
        out["tier_a_wrong_fraction"] = _prop(int((~a["true_lens"]).sum()), len(a), cfg, cfg.seed + 31)
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
    out["true_recall_table"] = rows
    return out


def evaluate(preds: pd.DataFrame, manifest: pd.DataFrame, out_dir: str | os.PathLike, cfg: EvalConfig = EvalConfig(),
             store=None, truth: pd.DataFrame | None = None, figures: bool = True, checkpoint=None) -> dict:
    """Run the whole evaluation; returns the metrics dict (also written to ``metrics.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    leak = split_leakage(manifest)
    df = add_bins(join_predictions(preds, manifest, cfg.split), cfg)
    res: dict = {"split": cfg.split, "n": int(len(df)), "leakage": leak, "config": cfg.model_dump(mode="json")}
    res["overall"] = core_metrics(df, cfg)
    tables = {}
    for col in STRATA:
        if col in df:
            tables[f"strata_{col}"] = stratify(df, col, cfg)
    tables["confuser_fpr"] = confuser_fpr(df, cfg)
    tables["failures"] = failure_tables(df)
    if store is not None:
        from lensaudit.evaluate.detectability import decompose, detectability_features

        cubes = store.get(df["id"].tolist())
        res["shortcut_gates"] = shortcut_gates(cubes, df["label"].to_numpy(), cfg.shortcut_yellow, cfg.shortcut_red,
                                               min(cfg.n_boot, 1000), cfg.seed)
        feats = detectability_features(cubes)
        summ, strata_t, diag = decompose(df, feats, cfg.thresholds[0], ("type", "psfsize_r_bin", "depth_r_bin"),
                                         cfg.min_count)
        res["detectability"] = summ
        tables["detectability_strata"] = strata_t
        tables["detectability_positives"] = diag
        if checkpoint is not None and len(tables["failures"]):
            res["saliency"] = _saliency(checkpoint, store, tables["failures"], out)
    if truth is not None:
        tm = truth_metrics(df, truth, cfg)
        tables["truth_recall"] = pd.DataFrame(tm.pop("true_recall_table"))
        res["truth"] = tm
    for name, t in tables.items():
        if len(t):
            t.to_parquet(out / f"{name}.parquet", index=False)
    res["tables"] = sorted(f"{n}.parquet" for n, t in tables.items() if len(t))
    if figures:
        from lensaudit.evaluate.figures import write_figures

        res["figures"] = write_figures(df, tables, res, out, cfg)
    atomic_write_json(out / "metrics.json", res)
    return res


def _saliency(checkpoint, store, failures: pd.DataFrame, out: Path, per_kind: int = 16) -> dict:
    """Grad-CAM maps of the failure-table cutouts: ``gradcam.npz`` and a gallery PNG per failure kind."""
    from lensaudit.evaluate.saliency import grad_cam
    from lensaudit.train.checkpoint import load_model

    model, pre, _ = load_model(checkpoint)
    ids = failures["id"].astype(str).tolist()
    cubes = store.get(ids)
    cams = grad_cam(model, pre, cubes)
    np.savez_compressed(out / "gradcam.npz", ids=np.array(ids), cams=cams.astype(np.float32), allow_pickle=False)
    galleries = []
    for kind, g in failures.reset_index(drop=True).groupby("failure"):
        rows = g.sort_values("probability", ascending=(kind == "low_scoring_positive")).index[:per_kind]
        galleries.append(_gallery(cubes[rows], cams[rows], [f"{ids[i]} p={failures['probability'].iloc[i]:.2f}"
                                                            for i in rows], pre, out / f"gallery_{kind}.png"))
    return {"n_maps": int(len(ids)), "file": "gradcam.npz", "galleries": galleries}


def _gallery(cubes, cams, labels, pre, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lensaudit.train.clean import rgb_asinh
    from lensaudit.utils.io import atomic_path

    n = len(cubes)
    fig, axes = plt.subplots(2, max(n, 1), figsize=(1.6 * max(n, 1), 3.4), squeeze=False)
    crop = pre.crop
    for i in range(n):
        img = rgb_asinh(cubes[i])
        if crop:
            lo = (img.shape[0] - crop) // 2
            img = img[lo : lo + crop, lo : lo + crop]
        axes[0, i].imshow(img, origin="lower")
        axes[0, i].set_title(labels[i], fontsize=5)
        axes[1, i].imshow(img, origin="lower")
        axes[1, i].imshow(cams[i], origin="lower", cmap="inferno", alpha=0.5)
    for ax in axes.ravel():
        ax.axis("off")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path.name


def summary_lines(res: dict) -> list[str]:
    """Readable summary: every number with its interval and count."""
    o = res["overall"]
    L = [f"split {res['split']}: {o['n_pos']} positives, {o['n_neg']} negatives; leakage check passed"]
    a = o["roc_auc"]
    if a.get("value") is not None:
        L.append(f"ROC AUC {a['value']:.4f}  95% [{a['bootstrap']['ci95'][0]:.4f}, {a['bootstrap']['ci95'][1]:.4f}]"
                 f"  (n_pos {a['n_pos']}, n_neg {a['n_neg']})")
    p = o["pr_auc"]
    if p.get("value") is not None:
        L.append(f"PR AUC  {p['value']:.4f}  95% [{p['bootstrap']['ci95'][0]:.4f}, {p['bootstrap']['ci95'][1]:.4f}]"
                 f"  (n_pos {p['n_pos']}, n_neg {p['n_neg']})")
    for t in o["at_probability"] + [x for x in o["at_target_fpr"] if "recall" in x] + [o["at_top_fraction"]]:
        r, f = t["recall"], t["fpr"]
        name = (f"p >= {t['threshold']:.3g}" if "target_fpr" not in t and "fraction" not in t else
                f"FPR target {t['target_fpr']:g}" if "target_fpr" in t else f"top {t['fraction']:g}")
        line = (f"{name}: recall {r['value']:.3f} 95% [{r['wilson95'][0]:.3f}, {r['wilson95'][1]:.3f}] ({r['k']}/{r['n']});"
                f" FPR {f['value']:.4f} 95% [{f['wilson95'][0]:.4f}, {f['wilson95'][1]:.4f}] ({f['k']}/{f['n']})")
        if "recall_threshold_reestimated" in t:
            b = t["recall_threshold_reestimated"]["bootstrap"]["ci95"]
            line += f"; recall 95% with the threshold re-derived per resample [{b[0]:.3f}, {b[1]:.3f}]"
        L.append(line)
    for t in o["at_target_fpr"]:
        if t.get("status") == "insufficient":
            L.append(f"FPR target {t['target_fpr']:g}: insufficient ({t['reason']})")
    c = o.get("calibration", {})
    if "ece" in c:
        e, m = c["ece_bootstrap"]["ci95"], c["mce_bootstrap"]["ci95"]
        L.append(f"calibration: ECE {c['ece']:.4f} 95% [{e[0]:.4f}, {e[1]:.4f}], MCE {c['mce']:.4f} 95% "
                 f"[{m[0]:.4f}, {m[1]:.4f}] over {len(c['curve']['count'])} equal-count bins (n {c['n']})")
    for g in res.get("shortcut_gates", []):
        if "auc" in g:
            L.append(f"shortcut gate {g['gate']}: AUC {g['auc']:.3f} 95% [{g['ci95'][0]:.3f}, {g['ci95'][1]:.3f}]"
                     f" (n {g['n']}) -> {g['status']}")
    dt = res.get("detectability")
    if dt and dt.get("observable_fraction") is not None:
        w1 = dt["observable_wilson95"]
        line = (f"detectability: observable {dt['observable_fraction']:.3f} 95% [{w1[0]:.3f}, {w1[1]:.3f}] "
                f"({dt['n_observable']}/{dt['n_pos']} positives)")
        if dt.get("recall_given_observable") is not None:
            w2 = dt["recall_given_observable_wilson95"]
            line += (f"; recall given observable {dt['recall_given_observable']:.3f} 95% [{w2[0]:.3f}, {w2[1]:.3f}]"
                     f" (n {dt['n_observable']}); missed: {dt['n_detectable_but_missed']} detectable, "
                     f"{dt['n_not_detectable']} not detectable")
        L.append(line)
    tb = res.get("truth", {}).get("tier_b_wrong_fraction")
    if tb:
        L.append(f"mock truth: Tier-B labels that are not lenses {tb['value']:.3f} 95% "
                 f"[{tb['wilson95'][0]:.3f}, {tb['wilson95'][1]:.3f}] ({tb['k']}/{tb['n']})")
    return L

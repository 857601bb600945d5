"""Verification of a training-set manifest: leakage, reproducible splits, strata, conditions.

Hard checks (any failure -> ``passed: false``): unique ids; zero overlap between splits in object
id, cutout reference and HEALPix pixel; every HEALPix pixel recomputed from (ra, dec) and every
split recomputed from the pixel with the seed and fractions recorded in the file; labels and
tiers consistent. Reported: split fractions, per-stratum counts and achieved ratios, N1/N2 and
confuser mix, PSF size and depth per split with two-sample KS tests, host properties (z magnitude,
g - r, size) of positives against negatives with KS tests (a hard check when the sample was
host-matched), and the cut flow.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from lensaudit.catalog.manifest import read_manifest_metadata
from lensaudit.catalog.spatial import assign_split, healpix_nested

KS_ALPHA = 0.01   # host-matched verification: significance a KS difference must also reach to fail

#: Host properties compared between positives and negatives (z AB mag, g - r AB, half-light radius arcsec).
HOST_COLUMNS = ("mag_z", "g_r", "shape_r")
CONDITION_COLUMNS = ("psfsize_g", "psfsize_r", "psfsize_z", "psfdepth_g", "psfdepth_r", "psfdepth_z")


def verify_manifest(path: str | os.PathLike, cutflow: dict | None = None) -> dict:
    """Verify a manifest written by ``catalog build``; returns the report (``passed`` and ``failures``)."""
    path = Path(path)
    meta = read_manifest_metadata(path)
    df = pd.read_parquet(path)
    nside = int(meta["nside"])
    hp = f"healpix_{nside}"
    failures: list[str] = []
    rep: dict = {"manifest": str(path), "scheme": meta["scheme"], "n_rows": int(len(df))}

    dup = df["id"].duplicated()
    if dup.any():
        failures.append(f"{int(dup.sum())} duplicate id(s), e.g. {df.loc[dup, 'id'].head(5).tolist()}")
    # --- recompute pixels and splits independently of the build
    pix = healpix_nested(df["ra"].to_numpy(), df["dec"].to_numpy(), nside)
    bad = pix != df[hp].to_numpy()
    if bad.any():
        failures.append(f"{int(bad.sum())} row(s) whose {hp} differs from HEALPix(ra, dec), e.g. {df.loc[bad, 'id'].head(5).tolist()}")
    fr = [(s, float(meta["fractions"][s])) for s in meta["split_order"]]
    split = assign_split(df[hp].to_numpy(), int(meta["split_seed"]), fr)
    bad = split != df["split"].to_numpy()
    if bad.any():
        failures.append(f"{int(bad.sum())} row(s) whose split differs from the recorded split rule, e.g. {df.loc[bad, 'id'].head(5).tolist()}")
    # --- leakage: overlaps between splits
    overlaps = {}
    groups = {s: g for s, g in df.groupby("split")}
    for a, b in itertools.combinations(sorted(groups), 2):
        for col in ("id", "cutout_ref", hp):
            n = len(set(groups[a][col]) & set(groups[b][col]))
            overlaps[f"{a}|{b}|{col}"] = n
            if n:
                failures.append(f"splits {a} and {b} share {n} value(s) of {col}")
    rep["overlaps"] = overlaps
    # --- labels and tiers
    okt = ((df["label"] == 1) & df["tier"].isin(["A", "B"])) | ((df["label"] == 0) & df["tier"].isin(["N1", "N2"]))
    if not okt.all():
        failures.append(f"{int((~okt).sum())} row(s) with label/tier mismatch")
    # --- split fractions
    fracs = {}
    for s, f in fr:
        g = groups.get(s, df.iloc[:0])
        fracs[s] = {"target": f, "objects": round(len(g) / max(len(df), 1), 4),
                    "pixels": round(g[hp].nunique() / max(df[hp].nunique(), 1), 4),
                    "n": int(len(g)), "n_pos": int((g["label"] == 1).sum())}
    rep["split_fractions"] = fracs
    rep["n_pixels"] = int(df[hp].nunique())
    # --- strata
    strata = []
    for (b, t), g in df.groupby(["nobs_z_bin", "type"]):
        npos, nneg = int((g.label == 1).sum()), int((g.label == 0).sum())
        strata.append({"nobs_z_bin": b, "type": t, "n_pos": npos, "n_neg": nneg,
                       "ratio": round(nneg / npos, 3) if npos else None})
    rep["strata"] = strata
    neg = df[df.label == 0]
    rep["tiers"] = {k: int(v) for k, v in df["tier"].value_counts().sort_index().items()}
    rep["n2_fraction_of_negatives"] = round(float((neg.tier == "N2").mean()), 4) if len(neg) else None
    rep["confuser_mix"] = {k: int(v) for k, v in neg.loc[neg.tier == "N2", "confuser_category"].value_counts().sort_index().items()}
    # --- conditions per split, KS against train
    cond = {}
    for c in CONDITION_COLUMNS:
        per = {s: g[c].to_numpy(np.float64) for s, g in groups.items()}
        entry = {s: {"median": float(np.median(v)), "p16": float(np.percentile(v, 16)),
                     "p84": float(np.percentile(v, 84))} for s, v in per.items() if len(v)}
        for s, v in per.items():
            if s != "train" and len(v) and len(per.get("train", [])):
                k = ks_2samp(per["train"], v)
                entry[f"ks_train_vs_{s}"] = {"statistic": float(k.statistic), "pvalue": float(k.pvalue)}
        cond[c] = entry
    rep["conditions"] = cond
    # --- host properties, positives against negatives (a failure when the sample was host-matched)
    hm = (meta.get("sampling") or {}).get("host_match") or {}
    host = {}
    pos = df[df.label == 1]
    for c in HOST_COLUMNS:
        if c not in df:
            continue
        a, b = pos[c].to_numpy(np.float64), neg[c].to_numpy(np.float64)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if not (len(a) and len(b)):
            continue
        k = ks_2samp(a, b)
        host[c] = {"median_pos": float(np.median(a)), "median_neg": float(np.median(b)),
                   "ks_statistic": float(k.statistic), "ks_pvalue": float(k.pvalue)}
        # a failure is a difference both larger than tolerated and significant (p < KS_ALPHA): with a few
        # dozen positives a KS D of 0.2 is noise, with thousands D = 0.05 can be significant but harmless
        if (hm.get("enabled") and c in hm.get("quantities", ()) and k.statistic > float(hm.get("max_ks", 0.1))
                and k.pvalue < KS_ALPHA):
            failures.append(f"host-matched sample: {c} of negatives differs from the positives' (KS D "
                            f"{k.statistic:.3f} > {hm.get('max_ks')}, p {k.pvalue:.2g} < {KS_ALPHA})")
    rep["host_properties"] = host
    rep["host_matched"] = bool(hm.get("enabled"))
    if cutflow is not None:
        rep["cutflow_total"] = cutflow.get("total")
    rep["failures"] = failures
    rep["passed"] = not failures
    return rep


def format_report(rep: dict) -> str:
    """Readable text of a verification report."""
    L = [f"manifest {rep['manifest']} (scheme {rep['scheme']}): {rep['n_rows']} rows, {rep['n_pixels']} HEALPix pixels",
         f"  {'PASS' if rep['passed'] else 'FAIL'}" + ("" if rep["passed"] else ": " + "; ".join(rep["failures"]))]
    L.append("  split      target  objects  pixels      n  n_pos")
    for s, f in rep["split_fractions"].items():
        L.append(f"  {s:<9} {f['target']:>7.3f} {f['objects']:>8.3f} {f['pixels']:>7.3f} {f['n']:>6d} {f['n_pos']:>6d}")
    L.append(f"  overlap between splits (id, cutout_ref, pixel): {sum(rep['overlaps'].values())}")
    L.append(f"  tiers: {rep['tiers']}   N2 fraction of negatives: {rep['n2_fraction_of_negatives']}")
    L.append(f"  confuser mix (N2): {rep['confuser_mix']}")
    L.append("  stratum (nobs_z bin, type): n_pos n_neg ratio")
    for s in rep["strata"]:
        L.append(f"    {s['nobs_z_bin']:>5} {s['type']:<3}  {s['n_pos']:>5} {s['n_neg']:>6} {s['ratio']}")
    for c, e in rep["conditions"].items():
        ks = {k: f"D={v['statistic']:.3f} p={v['pvalue']:.3g}" for k, v in e.items() if k.startswith("ks_")}
        med = {k: round(v["median"], 3) for k, v in e.items() if not k.startswith("ks_")}
        L.append(f"  {c}: medians {med} {ks}")
    if rep.get("host_properties"):
        L.append(f"  host properties, positives vs negatives ({'host-matched' if rep.get('host_matched') else 'not matched'}):")
        for c, e in rep["host_properties"].items():
            L.append(f"    {c}: median pos {e['median_pos']:.3f} neg {e['median_neg']:.3f}, KS D={e['ks_statistic']:.3f} "
                     f"p={e['ks_pvalue']:.3g}")
    if rep.get("cutflow_total"):
        L.append("  cut flow (rows removed, all sweeps): " + json.dumps(rep["cutflow_total"]))
    return "\n".join(L)

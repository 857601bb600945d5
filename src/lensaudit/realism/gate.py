"""``lensaudit realism``: per injection family, does the detector see injections as it sees real lenses?

Real lenses: the positives of the audited splits (Tier A by default) with penultimate features from
``lensaudit score --features``. Injections: the family's records of a ``selection run`` (features kept),
subsampled to the real lenses' distribution of lensed arc r magnitude (:func:`brightness_match`) when
the real lenses' magnitudes are known (``real_lens_table``: measured arc photometry on real data; the
truth table on the mock, read for this measurement only). Per family: the probe AUC with bootstrap
interval and permutation p-value, the Frechet distance of the features (with the split-half distance
of the real lenses as its noise floor), two-sample KS tests of arc S/N, arc g - r and the sky noise of
the cutouts, and a GO / NO-GO verdict: GO when the probe AUC is at most ``max_probe_auc``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import ks_2samp

from lensaudit.artifacts import (
    RealismDir,
    SelectionRunDir,
    check_predictions,
    read_doc,
    read_manifest,
    read_predictions,
    read_table,
    write_artifact_table,
    write_doc,
)
from lensaudit.artifacts.kinds import REALISM, REALISM_DOC, SELECTION_SUMMARY
from lensaudit.errors import InputError
from lensaudit.realism.probe import brightness_match, frechet_distance, probe_auc
from lensaudit.utils.progress import progress
from lensaudit.utils.seeds import rng

log = logging.getLogger(__name__)


class ProbeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    folds: int = Field(5, ge=2)
    C: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic probe")
    n_boot: int = Field(1000, ge=0)
    n_permutations: int = Field(100, ge=0)
    seed: int = Field(0, ge=0)


class RealismConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    selection_run: str = Field(..., description="output folder of `lensaudit selection run` (features kept)")
    predictions: str = Field(..., description="scores with features of the audited splits (`score --features`)")
    manifest: str
    out: str
    splits: tuple[str, ...] = ("val", "test")
    tiers: tuple[str, ...] = ("A",)
    real_lens_table: str | None = Field(None, description="id, arc_mag_r [, arc_snr, arc_mag_g]: brightness matching "
                                                           "and distribution tests")
    store: str | None = Field(None, description="cutout store of the real lenses (sky-noise test)")
    families: tuple[str, ...] | None = None
    probe: ProbeConfig = ProbeConfig()
    match_bin_mag: float = Field(0.5, gt=0)
    match_max_ratio: int = Field(3, ge=1)
    max_injections: int = Field(3000, ge=10, description="injections per family given to the probe (subsampled)")
    max_probe_auc: float = Field(0.75, gt=0.5, le=1.0, description="GO when the probe AUC is at most this")


def _features(col: pd.Series) -> np.ndarray:
    return np.stack([np.asarray(v, np.float32) for v in col]) if len(col) else np.zeros((0, 0), np.float32)


def _sky_sigma(store, ids) -> np.ndarray:
    from lensaudit.inject.engine import host_noise

    return host_noise(store.get(list(ids)).astype(np.float64))[0][:, 1]


def _ks(a, b) -> dict:
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return {"statistic": None, "p": None, "n_real": int(len(a)), "n_injected": int(len(b))}
    r = ks_2samp(a, b)
    return {"statistic": float(r.statistic), "p": float(r.pvalue), "n_real": int(len(a)), "n_injected": int(len(b)),
            "median_real": float(np.median(a)), "median_injected": float(np.median(b))}


def real_lenses(cfg: RealismConfig) -> pd.DataFrame:
    m = read_manifest(cfg.manifest, require=("id", "split", "label", "tier"))
    pos = m[m["split"].isin(list(cfg.splits)) & (m["label"] == 1) & m["tier"].isin(list(cfg.tiers))][["id"]]
    p = read_predictions(cfg.predictions, require=("id", "probability", "features"))   # finite, one width
    r = pos.astype(str).merge(p[["id", "probability", "features"]], on="id")
    if cfg.real_lens_table:
        t = read_table(cfg.real_lens_table, "real-lens table")
        if "arc_mag_r" not in t:
            raise InputError(f"{cfg.real_lens_table}: needs columns id and arc_mag_r")
        cols = [c for c in ("id", "arc_mag_r", "arc_mag_g", "arc_snr") if c in t]
        r = r.merge(t[cols].assign(id=t["id"].astype(str)), on="id", how="left")
    if len(r) < cfg.probe.folds:
        raise InputError(f"realism: only {len(r)} real lenses (tiers {list(cfg.tiers)}, splits {list(cfg.splits)}) "
                         f"have features; the probe needs at least {cfg.probe.folds}")
    return r


def run_realism(cfg: RealismConfig) -> pd.DataFrame:
    """The gate for every family of the selection run; writes its table and report into ``cfg.out`` (:class:`RealismDir`)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with RealismDir(out).lock("realism gate"):
        real = real_lenses(cfg)
        x_real_all = _features(real["features"])
        sky_real = None
        if cfg.store:
            from lensaudit.cutouts import CutoutStore

            sky_real = _sky_sigma(CutoutStore(cfg.store), real["id"])
        summary = read_doc(SelectionRunDir(cfg.selection_run).summary, SELECTION_SUMMARY)
        fams = cfg.families or tuple(summary["families"])
        # the noise floor of the Frechet distance: two random halves of the real lenses
        g = rng(cfg.probe.seed, "realism.halves")
        perm = g.permutation(len(real))
        floor = frechet_distance(x_real_all[perm[: len(perm) // 2]], x_real_all[perm[len(perm) // 2 :]])
        rows = []
        with progress(len(fams), "realism gate", "families") as advance:
            for fam in fams:
                row = _gate_family(cfg, fam, summary["config_tag"], real, sky_real, floor)
                if row is not None:
                    rows.append(row)
                advance()
        table = pd.DataFrame(rows)
        rd = RealismDir(out)
        write_artifact_table(table, rd.table, REALISM)
        table.to_csv(rd.csv, index=False)
        write_doc(rd.report, REALISM_DOC, {"config": cfg.model_dump(mode="json"), "families": rows,
                                           "n_real_lenses": int(len(real))})
        return table


def _gate_family(cfg: RealismConfig, fam: str, tag: str, real: pd.DataFrame, sky_real, floor: float) -> dict | None:
    """The gate's measures and verdict for one family (None when too few brightness-matched injections)."""
    from lensaudit.inject.records import read_injections

    inj = read_injections(cfg.selection_run, fam, tag, features=True)
    if "features" not in inj:
        raise InputError(f"{cfg.selection_run}: family {fam} was run without features (features: true)")
    width = len(real["features"].iat[0])
    check_predictions(inj.assign(id=inj["index"].astype(str)), f"selection run {cfg.selection_run}, family {fam} "
                      f"injections", require=("id", "probability", "features"), feature_width=width)
    if len(inj) > cfg.max_injections:
        inj = inj.iloc[np.sort(rng(cfg.probe.seed, "realism.subsample", fam).choice(len(inj), cfg.max_injections,
                                                                                    replace=False))]
    r, i = real, inj
    matched = "arc_mag_r" in real and real["arc_mag_r"].notna().any()
    if matched:
        kr, ki = brightness_match(real["arc_mag_r"].to_numpy(float), inj["arc_mag_r"].to_numpy(float),
                                  cfg.match_bin_mag, cfg.match_max_ratio, cfg.probe.seed)
        r, i = real.iloc[kr], inj.iloc[ki]
    if len(r) < 2 or len(i) < 2:
        log.warning("realism: %s has too few brightness-matched injections (%d real, %d injected)", fam, len(r), len(i))
        return None
    xr, xi = _features(r["features"]), _features(i["features"])
    pr = probe_auc(xr, xi, cfg.probe.folds, cfg.probe.C, cfg.probe.n_boot, cfg.probe.n_permutations, cfg.probe.seed)
    row = {"family": fam, "planted": bool(i["planted"].iat[0]) if "planted" in i else False,
           "probe_auc": pr["auc"], "probe_auc_lo95": pr["interval"]["ci95"][0], "probe_auc_hi95": pr["interval"]["ci95"][1],
           "probe_auc_lo68": pr["interval"]["ci68"][0], "probe_auc_hi68": pr["interval"]["ci68"][1],
           "permutation_p": pr["permutation_p"], "n_real": pr["n_real"], "n_injected": pr["n_injected"],
           "brightness_matched": bool(matched), "frechet": frechet_distance(xr, xi), "frechet_real_halves": floor,
           "median_score_real": float(r["probability"].median()), "median_score_injected": float(i["probability"].median())}
    tests = {}
    if "arc_snr" in r:
        tests["arc_snr"] = _ks(r["arc_snr"], i["arc_snr"])
    if "arc_mag_g" in r:
        tests["arc_g_r"] = _ks(r["arc_mag_g"] - r["arc_mag_r"], i["arc_mag_g"] - i["arc_mag_r"])
    if sky_real is not None:
        tests["sky_sigma_r"] = _ks(sky_real[r.index.map(real.index.get_loc)], i["host_sigma_r"])
    for name, t in tests.items():
        row[f"ks_{name}"] = t["statistic"]
        row[f"ks_{name}_p"] = t["p"]
    row["verdict"] = "GO" if pr["auc"] <= cfg.max_probe_auc else "NO-GO"
    row["rule"] = f"GO if probe AUC <= {cfg.max_probe_auc:g}"
    log.info("realism %s: probe AUC %.3f [%.3f, %.3f] -> %s", fam, pr["auc"], *pr["interval"]["ci95"], row["verdict"])
    return row


def format_realism(table: pd.DataFrame) -> str:
    lines = [f"{'family':<12} {'probe AUC [95%]':<24} {'perm p':>7} {'Frechet':>9} {'floor':>8} {'KS S/N':>7} "
             f"{'KS g-r':>7} {'verdict':>7}"]

    def ks(r: dict, k: str) -> str:
        return f"{r[k]:.2f}" if r.get(k) is not None and np.isfinite(r[k]) else "-"

    for r in table.to_dict("records"):
        lines.append(f"{r['family'] + (' *' if r['planted'] else ''):<12} "
                     f"{r['probe_auc']:.3f} [{r['probe_auc_lo95']:.3f}, {r['probe_auc_hi95']:.3f}]   "
                     f"{r['permutation_p']:>7.3f} {r['frechet']:>9.2f} {r['frechet_real_halves']:>8.2f} "
                     f"{ks(r, 'ks_arc_snr'):>7} {ks(r, 'ks_arc_g_r'):>7} {r['verdict']:>7}")
    lines.append("* planted: deliberately unrealistic (no PSF, no noise); the gate must say NO-GO")
    return "\n".join(lines)


__all__ = ["ProbeConfig", "RealismConfig", "format_realism", "real_lenses", "run_realism"]

"""Model-free detectability: could DR10 show this lens at all?

Per cutout (g, r, z nanomaggies): subtract an azimuthally averaged model of the central galaxy
(0.5-pixel rings about the stamp centre, interpolated in radius), then in the arc annulus (default 3-16 pixels, which
holds Einstein radii 0.5-3 arcsec plus arc width):
- ``excess_sigma_<band>``: residual energy above noise, (sum (res/sigma)^2 - N) / sqrt(2N), with
  sigma the robust noise of the outer stamp (r > 30 pixels);
- ``coherence``: mean correlation of the g-r and r-z residual maps in the annulus (arcs are
  coherent across bands, noise is not);
- ``noise_stability``: robust sigma of the annulus residuals over the outer sigma (about 1 for
  clean background; large for blends and artefacts).
``detectability`` = sum of the three bands' excess significance. Its threshold is calibrated on
Tier-A positives against random negatives (maximum Youden J), so that a missed positive can be
labelled "not detectable" or "detectable but missed".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.artifacts.operating import at_or_above
from lensaudit.evaluate.metrics import wilson_interval

MAD_TO_SIGMA = 1.4826
RING_WIDTH = 0.5  # pixels


def detectability_features(cubes: np.ndarray, r_in: float = 3.0, r_out: float = 16.0, r_sky: float = 30.0) -> pd.DataFrame:
    """Features of (n, 3, N, N) cutouts; one row per cutout."""
    cubes = np.nan_to_num(np.asarray(cubes, dtype=np.float64))
    n, nb, size, _ = cubes.shape
    y, x = np.mgrid[0:size, 0:size] - (size - 1) / 2
    r = np.hypot(x, y)
    ring = np.floor(r / RING_WIDTH).astype(int).ravel()
    n_ring = np.bincount(ring)
    full = n_ring > 0
    r_ring = (np.bincount(ring, weights=r.ravel())[full] / n_ring[full])  # mean radius of each non-empty ring
    flat = cubes.reshape(n * nb, -1)
    profile = np.stack([np.bincount(ring, weights=f, minlength=n_ring.size)[full] for f in flat]) / n_ring[full]
    # the model is the ring-mean profile interpolated linearly in radius (steps would leave the
    # steep core of the host in the residuals)
    model = np.stack([np.interp(r.ravel(), r_ring, pr) for pr in profile])
    resid = (flat - model).reshape(n, nb, size, size)
    ann, sky = (r >= r_in) & (r < r_out), r > r_sky
    sky_v = cubes[..., sky]
    sigma = MAD_TO_SIGMA * np.median(np.abs(sky_v - np.median(sky_v, axis=-1, keepdims=True)), axis=-1) + 1e-12
    a = resid[..., ann]                                                   # (n, nb, n_ann)
    chi2 = ((a / sigma[..., None]) ** 2).sum(-1)
    excess = (chi2 - a.shape[-1]) / np.sqrt(2 * a.shape[-1])
    am = a - a.mean(-1, keepdims=True)
    norm = np.sqrt((am**2).sum(-1)) + 1e-30

    def corr(i, j):
        return (am[:, i] * am[:, j]).sum(-1) / (norm[:, i] * norm[:, j])

    coherence = (corr(0, 1) + corr(1, 2)) / 2 if nb >= 3 else np.full(n, np.nan)
    ann_sigma = MAD_TO_SIGMA * np.median(np.abs(a - np.median(a, axis=-1, keepdims=True)), axis=-1)
    out = pd.DataFrame({f"excess_sigma_{b}": excess[:, i] for i, b in enumerate("grz"[:nb])})
    out["coherence"] = coherence
    out["noise_stability"] = (ann_sigma / sigma).mean(axis=1)
    out["detectability"] = excess.sum(axis=1)
    return out


def calibrate_threshold(pos_scores: np.ndarray, neg_scores: np.ndarray) -> float:
    """Threshold maximising Youden's J = TPR - FPR between (Tier-A) positives and negatives."""
    cand = np.unique(np.r_[pos_scores, neg_scores])
    pos, neg = np.sort(pos_scores), np.sort(neg_scores)
    tpr = 1 - np.searchsorted(pos, cand, side="left") / max(len(pos), 1)
    fpr = 1 - np.searchsorted(neg, cand, side="left") / max(len(neg), 1)
    return float(cand[np.argmax(tpr - fpr)])


def decompose(df: pd.DataFrame, feats: pd.DataFrame, threshold_p: float, strata: tuple[str, ...] = ("type",),
              min_count: int = 10) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Observable fraction, recall given observable, and a label for every missed positive.

    ``df`` holds label, tier, probability (and the strata columns) row-aligned with ``feats``.
    """
    d = df.reset_index(drop=True).join(feats.reset_index(drop=True))
    pos_a = d[(d.label == 1) & (d.tier == "A")]["detectability"].to_numpy()
    if len(pos_a) < min_count:
        pos_a = d[d.label == 1]["detectability"].to_numpy()
    thr = calibrate_threshold(pos_a, d[d.label == 0]["detectability"].to_numpy())
    d["observable"] = d["detectability"] >= thr
    d["detected"] = at_or_above(d["probability"], threshold_p)
    pos = d[d.label == 1].copy()
    pos["diagnosis"] = np.where(pos.detected, "detected",
                                np.where(pos.observable, "detectable but missed", "not detectable"))

    def entry(g: pd.DataFrame) -> dict:
        n, k_obs = len(g), int(g.observable.sum())
        k_rec = int((g.observable & g.detected).sum())
        lo1, hi1 = wilson_interval(k_obs, n)
        lo2, hi2 = wilson_interval(k_rec, k_obs)
        ok = n >= min_count
        return {"n_pos": n, "observable_fraction": k_obs / n if ok else None,
                "observable_wilson95": [float(lo1), float(hi1)] if ok else None, "n_observable": k_obs,
                "recall_given_observable": k_rec / k_obs if (ok and k_obs) else None,
                "recall_given_observable_wilson95": [float(lo2), float(hi2)] if (ok and k_obs) else None,
                "n_detectable_but_missed": int((g.diagnosis == "detectable but missed").sum()),
                "n_not_detectable": int((g.diagnosis == "not detectable").sum()),
                "status": "ok" if ok else "insufficient"}

    summary = {"threshold": thr, "calibrated_on": "Tier-A positives vs negatives (max Youden J)",
               "probability_threshold": threshold_p, **entry(pos)}
    rows = []
    for col in strata:
        if col in pos:
            for val, g in pos.groupby(col):
                rows.append({"stratum": col, "value": str(val), **{k: v for k, v in entry(g).items()
                                                                    if not isinstance(v, list)}})
    cols = ["id", "tier", "probability", "detectability", "coherence", "noise_stability", "diagnosis",
            *[c for c in strata if c in pos]]
    return summary, pd.DataFrame(rows), pos[cols].reset_index(drop=True)

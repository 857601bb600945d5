"""Leakage and shortcut checks.

``split_leakage``: objects, cutouts or HEALPix pixels shared between splits (a hard failure).
``shortcut_gates``: can a logistic regression on trivial features, computed only from the core
(r < 4, 8, 12 pixels) or only from an annulus, separate the classes? An AUC above 0.60 is
flagged yellow, above 0.70 red: the detector may be learning the host or the cutout, not arcs.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lensaudit.artifacts import HEALPIX_PREFIX
from lensaudit.errors import LensauditError
from lensaudit.evaluate.bootstrap import bootstrap_auc, percentile_interval
from lensaudit.evaluate.metrics import roc_auc


class LeakageError(LensauditError, RuntimeError):
    """Splits share objects, cutouts or sky pixels."""


def split_leakage(manifest: pd.DataFrame) -> dict:
    """Counts of values shared between splits per column; raises LeakageError if any is non-zero."""
    cols = [c for c in ("id", "cutout_ref") if c in manifest] + [c for c in manifest if c.startswith(HEALPIX_PREFIX)]
    groups = {s: g for s, g in manifest.groupby("split")}
    shared = {}
    for a, b in itertools.combinations(sorted(groups), 2):
        for c in cols:
            shared[f"{a}|{b}|{c}"] = len(set(groups[a][c]) & set(groups[b][c]))
    leaks = {k: v for k, v in shared.items() if v}
    if leaks:
        raise LeakageError(f"splits share values: {leaks}")
    return {"checked_columns": cols, "shared": shared, "passed": True}


def stamp_features(cubes: np.ndarray, region: str, radius: float) -> np.ndarray:
    """Per band: mean, max and std of pixels in the core (r < radius) or an annulus (radius <= r < radius + 12)."""
    n = cubes.shape[-1]
    y, x = np.mgrid[0:n, 0:n] - (n - 1) / 2
    r = np.hypot(x, y)
    m = r < radius if region == "core" else (r >= radius) & (r < radius + 12)
    v = np.nan_to_num(cubes[..., m])                                 # (N, bands, pixels)
    return np.concatenate([v.mean(-1), v.max(-1), v.std(-1)], axis=1)


def shortcut_gates(cubes: np.ndarray, labels: np.ndarray, yellow: float = 0.6, red: float = 0.7,
                   n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Cross-validated logistic-regression AUC of core-only and annulus-only features, with intervals."""
    labels = np.asarray(labels).astype(int)
    out = []
    folds = min(5, int(np.bincount(labels, minlength=2).min()))
    if folds < 2:
        return [{"gate": "all", "status": "insufficient", "reason": "fewer than 2 of a class"}]
    for region, radius in (("core", 4), ("core", 8), ("core", 12), ("annulus", 20)):
        f = stamp_features(cubes, region, radius)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        p = cross_val_predict(clf, f, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                              method="predict_proba")[:, 1]
        auc = roc_auc(labels, p)
        ci = percentile_interval(bootstrap_auc(labels, p, n_boot, seed))
        status = "red" if auc > red else "yellow" if auc > yellow else "green"
        out.append({"gate": f"{region}_r{radius}", "auc": auc, **ci, "n": int(len(labels)), "status": status})
    return out

"""Realism measures in the detector's feature space (pure functions over arrays).

* :func:`probe_auc`: a logistic probe (standardised features, L2) separating real lenses (label 1)
  from injections (label 0), scored by out-of-fold ROC AUC over stratified k folds (0.5: the
  detector cannot tell them apart; 1.0: it always can), with a bootstrap interval over the
  out-of-fold scores and a permutation p-value (the same CV on shuffled labels).
* :func:`frechet_distance`: ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)) of the two feature
  sets (the Frechet Inception Distance formula on this detector's features).
* :func:`brightness_match`: injections subsampled so their distribution of a brightness column matches
  the real lenses' bin by bin (the probe should not separate by brightness alone).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lensaudit.evaluate.bootstrap import bootstrap_auc, percentile_interval
from lensaudit.utils.seeds import derive_seed, rng
from lensaudit.utils.stats import roc_auc


def _oof_scores(x: np.ndarray, y: np.ndarray, folds: int, c: float, seed: int) -> np.ndarray:
    out = np.zeros(len(y))
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=derive_seed(seed, "realism.folds") % 2**32)
    for tr, te in skf.split(x, y):
        m = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        m.fit(x[tr], y[tr])
        out[te] = m.decision_function(x[te])
    return out


def probe_auc(real: np.ndarray, injected: np.ndarray, folds: int = 5, c: float = 1.0, n_boot: int = 1000,
              n_permutations: int = 100, seed: int = 0) -> dict:
    """Out-of-fold AUC of a logistic probe, its 68/95 percent bootstrap interval and permutation p-value."""
    real, injected = np.asarray(real, float), np.asarray(injected, float)
    if real.ndim != 2 or injected.ndim != 2 or real.shape[1] != injected.shape[1]:
        raise ValueError(f"probe_auc: feature arrays must be (n, d) with the same d, got {real.shape} and {injected.shape}")
    k = min(folds, len(real), len(injected))
    if k < 2:
        raise ValueError(f"probe_auc: need at least 2 real lenses and 2 injections, got {len(real)} and {len(injected)}")
    x = np.vstack([real, injected])
    y = np.r_[np.ones(len(real), int), np.zeros(len(injected), int)]
    s = _oof_scores(x, y, k, c, seed)
    auc = roc_auc(y, s)
    boot = bootstrap_auc(y, s, n_boot=n_boot, seed=derive_seed(seed, "realism.boot") % 2**32)
    perm = np.empty(n_permutations)
    g = rng(seed, "realism.permutation")
    for i in range(n_permutations):
        yp = g.permutation(y)
        perm[i] = roc_auc(yp, _oof_scores(x, yp, k, c, seed + i + 1))
    p = (1 + int((perm >= auc).sum())) / (1 + n_permutations) if n_permutations else float("nan")
    return {"auc": float(auc), "interval": percentile_interval(boot), "permutation_p": float(p),
            "n_permutations": int(n_permutations), "n_real": int(len(real)), "n_injected": int(len(injected)),
            "folds": int(k)}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets a (n, d) and b (m, d)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    mu = a.mean(0) - b.mean(0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    cs = linalg.sqrtm(s1 @ s2)
    if np.iscomplexobj(cs):
        cs = cs.real
    return float(mu @ mu + np.trace(s1) + np.trace(s2) - 2 * np.trace(cs))


def brightness_match(real_mag: np.ndarray, inj_mag: np.ndarray, bin_width: float = 0.5, max_ratio: int = 3,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(real rows kept, injection rows kept) such that every brightness bin holds ``ratio`` injections per real
    lens, ratio = min(max_ratio, the smallest injections-per-real over the bins, at least 1); real lenses in
    bins with fewer injections than lenses are subsampled to that bin's injection count."""
    rm, im = np.asarray(real_mag, float), np.asarray(inj_mag, float)
    ok_r, ok_i = np.isfinite(rm), np.isfinite(im)
    lo = np.floor(np.nanmin(np.r_[rm[ok_r], im[ok_i]]) / bin_width) * bin_width
    br = np.where(ok_r, np.floor((rm - lo) / bin_width), -1).astype(int)
    bi = np.where(ok_i, np.floor((im - lo) / bin_width), -1).astype(int)
    bins = sorted(set(br[br >= 0].tolist()))
    ratios = [(bi == b).sum() / (br == b).sum() for b in bins if (bi == b).sum() >= (br == b).sum()]
    ratio = int(max(1, min(max_ratio, np.floor(min(ratios)) if ratios else 1)))
    g = rng(seed, "realism.match")
    keep_r, keep_i = [], []
    for b in bins:
        r_rows, i_rows = np.flatnonzero(br == b), np.flatnonzero(bi == b)
        n_r = min(len(r_rows), len(i_rows) // ratio)
        if n_r == 0:
            continue
        keep_r.append(g.choice(r_rows, n_r, replace=False))
        keep_i.append(g.choice(i_rows, n_r * ratio, replace=False))
    if not keep_r:
        return np.zeros(0, int), np.zeros(0, int)
    return np.sort(np.concatenate(keep_r)), np.sort(np.concatenate(keep_i))


__all__ = ["brightness_match", "frechet_distance", "probe_auc"]

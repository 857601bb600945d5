"""Realism measures in the detector's feature space (pure functions over arrays).

* :func:`probe_auc`: a logistic probe (standardised features, L2) separating real lenses (label 1)
  from injections (label 0), scored by out-of-fold ROC AUC over stratified k folds (0.5: the
  detector cannot tell them apart; 1.0: it always can), with a bootstrap interval over the
  out-of-fold scores and its null distribution: the probe *refitted* on permuted labels (the whole
  cross-validation again per permutation), giving the permutation p-value, the null's 95th
  percentile and the smallest AUC the test detects with 80 percent power.
* :func:`cv_auc`: the out-of-fold AUC alone (floors, subsamples).
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


def _xy(real: np.ndarray, injected: np.ndarray, folds: int, what: str) -> tuple[np.ndarray, np.ndarray, int]:
    real, injected = np.asarray(real, float), np.asarray(injected, float)
    if real.ndim != 2 or injected.ndim != 2 or real.shape[1] != injected.shape[1]:
        raise ValueError(f"{what}: feature arrays must be (n, d) with the same d, got {real.shape} and {injected.shape}")
    k = min(folds, len(real), len(injected))
    if k < 2:
        raise ValueError(f"{what}: need at least 2 real lenses and 2 injections, got {len(real)} and {len(injected)}")
    return np.vstack([real, injected]), np.r_[np.ones(len(real), int), np.zeros(len(injected), int)], k


def cv_auc(real: np.ndarray, injected: np.ndarray, folds: int = 5, c: float = 1.0, seed: int = 0) -> float:
    """The probe's out-of-fold ROC AUC (real lenses = 1) alone."""
    x, y, k = _xy(real, injected, folds, "cv_auc")
    return float(roc_auc(y, _oof_scores(x, y, k, c, seed)))


def _null_aucs(x: np.ndarray, labels: list[np.ndarray], k: int, c: float, seeds: list[int]) -> list[float]:
    return [float(roc_auc(yp, _oof_scores(x, yp, k, c, s))) for yp, s in zip(labels, seeds, strict=True)]


def probe_auc(real: np.ndarray, injected: np.ndarray, folds: int = 5, c: float = 1.0, n_boot: int = 1000,
              n_permutations: int = 200, seed: int = 0, n_jobs: int = 1) -> dict:
    """Out-of-fold AUC of a logistic probe, its 68/95 percent bootstrap interval, and its null distribution from
    ``n_permutations`` refits on permuted labels: the permutation p-value (1 + #{null >= AUC}) / (1 + n), the
    null's mean, sd and 95th percentile, and ``auc_mde80``, the smallest AUC a one-sided test at 5 percent
    detects with 80 percent power (null 95th percentile + 0.84 x the bootstrap sd of the observed AUC).
    ``n_jobs``: processes for the permutation refits (joblib); the permuted labels and each refit's seed are drawn
    before they are shared out, so the null distribution is the same for any ``n_jobs``."""
    x, y, k = _xy(real, injected, folds, "probe_auc")
    s = _oof_scores(x, y, k, c, seed)
    auc = roc_auc(y, s)
    boot = bootstrap_auc(y, s, n_boot=n_boot, seed=derive_seed(seed, "realism.boot") % 2**32)
    g = rng(seed, "realism.permutation")
    labels = [g.permutation(y) for _ in range(n_permutations)]
    seeds = [seed + i + 1 for i in range(n_permutations)]
    if n_jobs == 1 or n_permutations < 2:
        perm = np.asarray(_null_aucs(x, labels, k, c, seeds), float)
    else:
        from joblib import Parallel, cpu_count, delayed

        jobs = min(cpu_count() if n_jobs < 0 else n_jobs, n_permutations)
        parts = np.array_split(np.arange(n_permutations), jobs)
        got = Parallel(n_jobs=jobs)(delayed(_null_aucs)(x, [labels[i] for i in ix], k, c, [seeds[i] for i in ix])
                                    for ix in parts)
        perm = np.asarray([v for part in got for v in part], float)
    p = (1 + int((perm >= auc).sum())) / (1 + n_permutations) if n_permutations else float("nan")
    q95 = float(np.quantile(perm, 0.95)) if n_permutations else float("nan")
    sd_boot = float(np.std(boot)) if len(boot) else float("nan")
    return {"auc": float(auc), "interval": percentile_interval(boot), "permutation_p": float(p),
            "n_permutations": int(n_permutations), "n_real": int((y == 1).sum()),
            "n_injected": int((y == 0).sum()), "folds": int(k),
            "null": {"mean": float(perm.mean()) if n_permutations else float("nan"),
                     "sd": float(perm.std()) if n_permutations else float("nan"), "q95": q95},
            "null_values": perm, "auc_mde80": q95 + 0.84 * sd_boot}


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
    bins with fewer injections than lenses are subsampled to that bin's injection count. Rows whose magnitude is
    NaN (no arc measured) form one more bin."""
    rm, im = np.asarray(real_mag, float), np.asarray(inj_mag, float)
    ok_r, ok_i = np.isfinite(rm), np.isfinite(im)
    both = np.r_[rm[ok_r], im[ok_i]]
    lo = np.floor(both.min() / bin_width) * bin_width if len(both) else 0.0
    # a magnitude that could not be measured (NaN) is a bin of its own: matched like any other
    br = np.where(ok_r, np.floor((np.where(ok_r, rm, lo) - lo) / bin_width), -1).astype(int)
    bi = np.where(ok_i, np.floor((np.where(ok_i, im, lo) - lo) / bin_width), -1).astype(int)
    bins = sorted(set(br.tolist()))
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


__all__ = ["brightness_match", "cv_auc", "frechet_distance", "probe_auc"]

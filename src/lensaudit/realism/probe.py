"""Realism measures in the detector's feature space (pure functions over arrays).

* :func:`probe_auc`: a logistic probe (standardised features, L2) separating real lenses (label 1)
  from injections (label 0), scored by out-of-fold ROC AUC over stratified k folds (0.5: the
  detector cannot tell them apart; 1.0: it always can), with a bootstrap interval over the
  out-of-fold scores and its null distribution: the probe *refitted* on permuted labels (the whole
  cross-validation again per permutation), giving the permutation p-value, the null's 95th
  percentile and the smallest AUC the test detects with 80 percent power.
* :func:`cv_auc`: the out-of-fold AUC alone (floors, subsamples).
* :func:`fit_logistic_l2`: the probe's fits, many at once (the objective of scikit-learn's
  ``LogisticRegression(C=c)``, solved by Newton's method to convergence). Written by hand because the null
  needs ``5 x n_permutations`` refits per family (1,000 in the demo) and scikit-learn fits one model per call,
  about 15 ms each for this problem's size, almost all of it per-call and per-iteration overhead; solved
  together, with stacked BLAS products, they take a fraction of that. Tested against scikit-learn's solution.
* :func:`frechet_distance`: ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)) of the two feature
  sets (the Frechet Inception Distance formula on this detector's features).
* :func:`brightness_match`: injections subsampled so their distribution of a brightness column matches
  the real lenses' bin by bin (the probe should not separate by brightness alone).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.special import expit
from sklearn.model_selection import StratifiedKFold

from lensaudit.evaluate.bootstrap import bootstrap_auc, percentile_interval
from lensaudit.utils.seeds import derive_seed, rng
from lensaudit.utils.stats import roc_auc

#: fits solved together at most (the demo's 288 rows x 129 columns: 64 fits, 19 MB a batch array)
FIT_BATCH = 64
#: memory for one batch's (fits, n, d + 1) float64 array: wide features solve fewer fits at a time (a fit's numbers
#: do not depend on its batch). Cost per fit and Newton step grows as n d^2: measured on 2 cores, 10.6 ms a fit at
#: n = 600, d = 128 (scikit-learn's lbfgs at tol 1e-8: 17.8 ms), 108 ms at d = 512 (lbfgs 38 ms) and 196 ms at
#: n = 1,500, d = 512 (lbfgs 642 ms)
FIT_BATCH_BYTES = 64 * 2**20


def fit_logistic_l2(x: np.ndarray, y: np.ndarray, weight: np.ndarray, c: float, tol: float = 1e-16,
                    max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Many L2-penalised logistic regressions at once: fit f minimises
    ``c * sum_i weight[f, i] * (log(1 + exp(z_i)) - y[f, i] z_i) + |beta_f|^2 / 2``, z = x[f] beta_f + b_f, the
    intercept unpenalised (scikit-learn's ``LogisticRegression(C=c)`` objective, its unique minimum).

    ``x`` (F, n, d) features, ``y`` (F, n) labels 0/1, ``weight`` (F, n) sample weights (0/1: the fit's training
    rows). Newton's method with a backtracking (Armijo) line search, each fit on its own until its Newton
    decrement g^T H^-1 g falls below ``tol`` (its objective is then within tol/2 of the minimum) or, in Newton's
    quadratic phase, stops shrinking (the gradient's rounding floor, reached with weak regularisation on separable
    data); a fit's iterates depend on its own data only, so a fit gives the same numbers in any batch. Returns
    (beta (F, d), b (F,))."""
    x, y, weight = np.asarray(x, float), np.asarray(y, float), np.asarray(weight, float)
    if x.ndim != 3 or y.shape != x.shape[:2] or weight.shape != y.shape:
        raise ValueError(f"fit_logistic_l2: need x (F, n, d), y and weight (F, n); got {x.shape}, {y.shape}, "
                         f"{weight.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all() and np.isfinite(weight).all()):
        raise ValueError("fit_logistic_l2: features, labels and weights must be finite")
    used = weight > 0
    if not ((used & (y == 1)).any(axis=-1) & (used & (y == 0)).any(axis=-1)).all():
        raise ValueError("fit_logistic_l2: every fit needs both labels, 0 and 1, among its rows of positive weight "
                         "(with one class the intercept has no finite optimum)")
    nf, n, d = x.shape
    xa = np.concatenate([x, np.ones((nf, n, 1))], axis=2)
    xt = xa.transpose(0, 2, 1)                  # a view: the stacked products below run as BLAS calls per fit
    reg = np.r_[np.ones(d), 0.0]
    theta = np.zeros((nf, d + 1))

    def objective(th: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = (xa @ th[..., None])[..., 0]
        return c * np.sum(weight * (np.logaddexp(0.0, z) - y * z), axis=1) + 0.5 * (reg * th * th).sum(axis=1), z

    # every array operation below acts fit by fit (stacked BLAS and LAPACK calls, row-wise sums); a converged fit
    # is still computed with the others (cheaper than copying the rest out) but no longer updated
    f, z = objective(theta)
    active = np.ones(nf, bool)
    prev = np.full(nf, np.inf)
    for _ in range(max_iter):
        p = expit(z)
        g = (xt @ (c * weight * (p - y))[..., None])[..., 0] + reg * theta
        h = xt @ (xa * (c * weight * p * (1 - p))[..., None]) + np.diag(reg)
        step = np.linalg.solve(h, g[..., None])[..., 0]
        dec = np.sum(g * step, axis=1)                           # Newton decrement^2, >= 0
        # converged: below tol, or at the gradient's rounding floor (weak regularisation, separable data): in
        # Newton's quadratic phase (dec far below the objective) a decrement that no longer shrinks by 4 each step
        floor = (dec < 1e-8 * (1 + np.abs(f))) & (dec > 0.25 * prev)
        active &= ~((dec < tol) | floor)
        prev = dec
        if not active.any():
            break
        t = np.ones(nf)
        pending = active.copy()
        for _ in range(60):                                      # halve each fit's step until it descends enough
            th = theta - t[:, None] * step
            fn, zn = objective(th)
            ok = pending & (fn <= f - 1e-4 * t * dec + 1e-13 * (1 + np.abs(f)))   # slack: the objective's rounding
            theta[ok], f[ok], z[ok] = th[ok], fn[ok], zn[ok]
            pending &= ~ok
            if not pending.any():
                break
            t[pending] *= 0.5
        if pending.any():
            raise FloatingPointError(f"fit_logistic_l2: no descent along the Newton step for {int(pending.sum())} "
                                     "fit(s)")     # pragma: no cover - finite data always descend
    if active.any():
        raise FloatingPointError(f"fit_logistic_l2: {int(active.sum())} of {nf} fit(s) did not converge in "
                                 f"{max_iter} Newton steps")
    return theta[:, :d], theta[:, d]


def _standardise(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``x`` scaled by the mean and standard deviation of ``x[rows]`` (scikit-learn's ``StandardScaler``:
    population sd, near-constant features scaled by 1)."""
    xr = x[rows]
    mu, var = xr.mean(axis=0), xr.var(axis=0)
    eps = np.finfo(float).eps
    sd = np.where(var <= len(xr) * eps * var + (len(xr) * mu * eps) ** 2, 1.0, np.sqrt(var))
    return (x - mu) / sd


def _oof_many(x: np.ndarray, labels: list[np.ndarray], folds: int, c: float, seeds: list[int]) -> list[np.ndarray]:
    """Out-of-fold decision values of the probe for each labelling of ``x``: stratified ``folds`` folds shuffled by
    its seed, standardised on each training fold, every fit solved by :func:`fit_logistic_l2`."""
    fits = []
    for j, (y, seed) in enumerate(zip(labels, seeds, strict=True)):
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=derive_seed(seed, "realism.folds") % 2**32)
        fits += [(j, tr, te) for tr, te in skf.split(x, y)]
    out = [np.zeros(len(y)) for y in labels]
    batch = int(max(1, min(FIT_BATCH, FIT_BATCH_BYTES // (8 * x.shape[0] * (x.shape[1] + 1)))))
    for lo in range(0, len(fits), batch):
        part = fits[lo:lo + batch]
        xs = np.stack([_standardise(x, tr) for _, tr, _ in part])
        w = np.zeros(xs.shape[:2])
        for i, (_, tr, _) in enumerate(part):
            w[i, tr] = 1.0
        ys = np.stack([labels[j] for j, _, _ in part]).astype(float)
        beta, b = fit_logistic_l2(xs, ys, w, c)
        dec = (xs @ beta[..., None])[..., 0] + b[:, None]
        for i, (j, _, te) in enumerate(part):
            out[j][te] = dec[i, te]
    return out


def _oof_scores(x: np.ndarray, y: np.ndarray, folds: int, c: float, seed: int) -> np.ndarray:
    return _oof_many(x, [y], folds, c, [seed])[0]


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
    return [float(roc_auc(yp, s)) for yp, s in zip(labels, _oof_many(x, labels, k, c, seeds), strict=True)]


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


__all__ = ["brightness_match", "cv_auc", "fit_logistic_l2", "frechet_distance", "probe_auc"]

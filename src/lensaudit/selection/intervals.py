"""Binomial intervals for completeness (pure functions over arrays).

Jeffreys interval: the equal-tailed interval of the Beta(k + 1/2, n - k + 1/2) posterior, with the
lower limit set to 0 at k = 0 and the upper to 1 at k = n (Brown, Cai & DasGupta 2001, Statist.
Sci. 16, 101, section 4.1.1): good coverage at small n and near 0 and 1, where completeness lives.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta


def jeffreys_interval(k, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) Jeffreys limits for k successes in n trials; NaN where n == 0."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    if not 0 < level < 1:
        raise ValueError(f"jeffreys_interval: level {level} outside (0, 1)")
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("jeffreys_interval: need 0 <= k <= n")
    a = (1 - level) / 2
    with np.errstate(invalid="ignore"):
        lo = np.where(k > 0, beta.ppf(a, k + 0.5, n - k + 0.5), 0.0)
        hi = np.where(k < n, beta.ppf(1 - a, k + 0.5, n - k + 0.5), 1.0)
    empty = n <= 0
    return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)


def completeness_columns(k, n, min_count: int) -> dict[str, np.ndarray]:
    """``completeness``, Jeffreys 68 and 95 percent limits and ``status`` ('ok', 'insufficient', 'empty')."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    ok = n >= max(min_count, 1)
    out = {"completeness": np.where(ok, k / np.where(n > 0, n, 1), np.nan)}
    for lvl, tag in ((0.68, "68"), (0.95, "95")):
        lo, hi = jeffreys_interval(k, n, lvl)
        out[f"lo{tag}"] = np.where(ok, lo, np.nan)
        out[f"hi{tag}"] = np.where(ok, hi, np.nan)
    out["status"] = np.where(n <= 0, "empty", np.where(ok, "ok", "insufficient"))
    return out


__all__ = ["completeness_columns", "jeffreys_interval"]

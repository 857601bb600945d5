"""Compiled (numba) quantiles of image pixels per annulus: the hot loop of :func:`lensaudit.survey.arcphot.host_model`.

:func:`annulus_quantiles` gives, for every image and band, the quantile of its pixels in each annulus (integer bin
per pixel, shared by an image's bands): the numbers of :func:`lensaudit.survey.arcphot.group_quantile` on the same
groups, which stays the definition (tests hold the two equal, bit for bit). Written by hand because numpy has no
segmented sort: ``group_quantile`` sorts all of a batch's values at once by (group, value) with ``lexsort``, about
300 ns per value for a 512-image batch; here each image's pixels are put into their annuli by a counting sort and
only each annulus (tens of pixels) is sorted.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _annulus_quantiles(values, bins, nbin, q, out):  # pragma: no cover - compiled; tested against group_quantile
    n, nb, p = values.shape
    counts = np.empty(nbin, np.int64)
    start = np.empty(nbin + 1, np.int64)
    fill = np.empty(nbin, np.int64)
    buf = np.empty(p)
    for i in range(n):
        counts[:] = 0
        for j in range(p):
            counts[bins[i, j]] += 1
        start[0] = 0
        for k in range(nbin):
            start[k + 1] = start[k] + counts[k]
        for band in range(nb):
            for k in range(nbin):
                fill[k] = start[k]
            for j in range(p):
                k = bins[i, j]
                buf[fill[k]] = values[i, band, j]
                fill[k] += 1
            for k in range(nbin):
                m = counts[k]
                if m == 0:
                    out[i, band, k] = np.nan
                    continue
                seg = np.sort(buf[start[k] : start[k + 1]])
                pos = q * max(m - 1, 0)
                lo = int(math.floor(pos))
                f = pos - lo
                hi = min(lo + 1, max(m - 1, 0))
                out[i, band, k] = seg[lo] * (1 - f) + seg[hi] * f
    return out


@numba.njit(cache=True, nogil=True)
def _profile_image(prof, r_ell, out):  # pragma: no cover - compiled; tested against the numpy expression
    n, nb, nbin = prof.shape
    for i in range(n):
        for j in range(r_ell.shape[1]):
            t = min(max(r_ell[i, j] - 0.5, 0.0), nbin - 1.0)
            i0 = min(int(math.floor(t)), max(nbin - 2, 0))
            f = t - i0
            i1 = min(i0 + 1, nbin - 1)
            for b in range(nb):
                out[i, b, j] = prof[i, b, i0] * (1 - f) + prof[i, b, i1] * f
    return out


def profile_image(prof: np.ndarray, r_ell: np.ndarray) -> np.ndarray:
    """(N, B, P) radial profiles ``prof`` (N, B, nbin; annulus k centred at k + 0.5 pixels) interpolated linearly
    at the elliptical radii ``r_ell`` (N, P) of each image's pixels; beyond the outermost centre its value, inside
    the innermost its value. One compiled pass, the arithmetic of ``lensaudit.survey.arcphot``'s numpy version."""
    p = np.ascontiguousarray(prof, np.float64)
    r = np.ascontiguousarray(r_ell, np.float64)
    if p.ndim != 3 or r.ndim != 2 or r.shape[0] != p.shape[0]:
        raise ValueError(f"profile_image: prof (N, B, nbin) and r_ell (N, P) expected, got {p.shape} and {r.shape}")
    return _profile_image(p, r, np.empty((p.shape[0], p.shape[1], r.shape[1])))


def annulus_quantiles(values: np.ndarray, bins: np.ndarray, nbin: int, q: float = 0.5) -> np.ndarray:
    """(N, B, nbin) quantile ``q`` of the pixels of each image and band ``values`` (N, B, P) in each annulus
    ``bins`` (N, P) integers in [0, nbin), shared by an image's bands; NaN for an empty annulus. Linear
    interpolation between order statistics, as ``np.quantile``."""
    v = np.ascontiguousarray(values, np.float64)
    b = np.ascontiguousarray(bins, np.int64)
    if v.ndim != 3 or b.shape != (v.shape[0], v.shape[2]):
        raise ValueError(f"annulus_quantiles: values (N, B, P) and bins (N, P) expected, got {v.shape} and {b.shape}")
    if b.size and (b.min() < 0 or b.max() >= nbin):
        raise ValueError(f"annulus_quantiles: bins must lie in [0, {nbin}), got [{b.min()}, {b.max()}]")
    return _annulus_quantiles(v, b, int(nbin), float(q), np.empty((v.shape[0], v.shape[1], int(nbin))))


__all__ = ["annulus_quantiles", "profile_image"]

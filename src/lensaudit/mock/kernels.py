"""Compiled (numba) kernels of the renderer's per-pixel work: the counter-based pixel noise (alone, and added
to an image with its exposure-map sigma), the brick/cell map of a region of the global grid, the exposure-count
and sigma maps, and bilinear point deposits.

Each is the same arithmetic as a numpy reference that stays in the package as the definition
(:func:`lensaudit.mock.render.hashed_normal3`; :func:`lensaudit.mock.layout.tan_deproject` followed by
:func:`lensaudit.mock.layout.brick_cell`; ``Renderer.nobs_map`` and ``sigma_map``; :func:`deposit_reference`),
computed in one pass per pixel instead of a dozen whole-array temporaries; tests hold them equal (integers and
images exactly, deviates to float64 round-off). Written with numba because numpy has no fused elementwise
kernels and the per-cutout arrays (3 x 111 x 111) are too small for threads to pay.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_PX = np.uint64(0x9E3779B97F4A7C15)
_PY = np.uint64(0xC2B2AE3D27D4EB4F)
_PK = np.uint64(0x165667B19E3779F9)


@numba.njit(cache=True, inline="always")
def _splitmix64(v):  # pragma: no cover - compiled; see lensaudit.utils.hashing.splitmix64
    v = v + _GOLDEN
    v = (v ^ (v >> np.uint64(30))) * _M1
    v = (v ^ (v >> np.uint64(27))) * _M2
    return v ^ (v >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def _hash_normal(gx, gy, kk):  # pragma: no cover - compiled; tested against hashed_normal3
    """Standard normal deviate of global pixel (gx, gy) under key product kk (Box-Muller of two splitmix64s)."""
    two53 = 2.0**53
    pix = (np.uint64(np.int64(gx)) * _PX) ^ (np.uint64(np.int64(gy)) * _PY)
    a = _splitmix64(pix ^ kk)
    c = _splitmix64(a)
    u1 = (float(a >> np.uint64(11)) + 0.5) / two53
    u2 = float(c >> np.uint64(11)) / two53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2 * math.pi * u2)


@numba.njit(cache=True, nogil=True)
def _normal_grid(x0, y0, h, w, keys, out):  # pragma: no cover - compiled; tested against hashed_normal3
    for b in range(keys.shape[0]):
        kk = np.uint64(keys[b]) * _PK
        for i in range(h):
            for j in range(w):
                out[b, i, j] = _hash_normal(x0 + j, y0 + i, kk)
    return out


@numba.njit(cache=True, nogil=True)
def _add_noise(img, sig, bidx, x0, y0, keys, sky, out):  # pragma: no cover - compiled; tested against numpy
    for b in range(img.shape[0]):
        kk = np.uint64(keys[b]) * _PK
        for i in range(img.shape[1]):
            for j in range(img.shape[2]):
                if bidx[i, j] < 0:
                    out[b, i, j] = 0.0
                    continue
                v = img[b, i, j]
                s = sig[b, i, j]
                var = (s * s) * (1.0 + max(v, 0.0) / sky[b])
                out[b, i, j] = v + math.sqrt(var) * _hash_normal(x0 + j, y0 + i, kk)
    return out


def add_pixel_noise(img: np.ndarray, sig: np.ndarray, bidx: np.ndarray, x0: int, y0: int, key: int,
                    sky: np.ndarray) -> np.ndarray:
    """``where(bidx >= 0, img + sqrt(sig^2 (1 + max(img, 0) / sky)) * normal_grid(x0, y0, h, w, key), 0)``
    for (3, h, w) images: the renderer's pixel noise (white sigma ``sig``, source Poisson noise against the
    sky ``sky`` per band, nanomaggies) in one compiled pass, the same operations (bit-identical)."""
    keys = np.arange(key, key + img.shape[0], dtype=np.int64)
    return _add_noise(np.ascontiguousarray(img, np.float64), np.ascontiguousarray(sig, np.float64),
                      np.ascontiguousarray(bidx, np.int64), int(x0), int(y0), keys,
                      np.asarray(sky, np.float64).ravel(), np.empty(img.shape))


def normal_grid(x0: int, y0: int, h: int, w: int, key: int, n_keys: int = 3) -> np.ndarray:
    """(n_keys, h, w) standard normal deviates of the global pixels ``[y0, y0 + h) x [x0, x0 + w)`` for keys
    ``key .. key + n_keys - 1``: :func:`lensaudit.mock.render.hashed_normal3` on that grid (for n_keys = 3)."""
    keys = np.arange(key, key + n_keys, dtype=np.int64)
    return _normal_grid(int(x0), int(y0), int(h), int(w), keys, np.empty((n_keys, int(h), int(w))))


@numba.njit(cache=True, inline="always")
def _pixel_cell(x, y, k, a0, sd0, cd0, ra_min, dec_min, brick_deg, cells):  # pragma: no cover - compiled
    """(brick column, brick row, cell column, cell row) of global pixel (x, y): tan_deproject + brick_cell."""
    xi, eta = -x / k, y / k
    rho = math.hypot(xi, eta)
    c = math.atan(rho)
    sc, cc = math.sin(c), math.cos(c)
    dec = math.asin(cc * sd0 + (eta * sc * cd0 / rho if rho > 0 else 0.0))
    ra = a0 + math.atan2(xi * sc, rho * cd0 * cc - eta * sd0 * sc)
    ra_deg = math.degrees(ra) % 360.0
    colf = (ra_deg - ra_min) / brick_deg
    rowf = (math.degrees(dec) - dec_min) / brick_deg
    col, row = math.floor(colf), math.floor(rowf)
    cx = min(max(int(math.floor((colf - col) * cells)), 0), cells - 1)
    cy = min(max(int(math.floor((rowf - row) * cells)), 0), cells - 1)
    return int(col), int(row), cx, cy


@numba.njit(cache=True, nogil=True)
def _pixel_map(x0, y0, h, w, ra0, dec0, k, ra_min, dec_min, brick_deg, nside, cells, bidx, cx, cy):  # pragma: no cover
    # Along a row (constant eta: a great circle, a straight line of the gnomonic projection) RA is monotone and
    # Dec is monotone on each side of the central meridian (xi = 0), so on each side (brick column, cell column)
    # and (brick row, cell row) change monotonically: a run of equal cells ends where a bisection finds it.
    # A few dozen pixels are projected per row instead of all of them; each with the same arithmetic.
    d0, a0 = math.radians(dec0), math.radians(ra0)
    sd0, cd0 = math.sin(d0), math.cos(d0)
    split = min(max(-x0, 0), w)                     # first column with x0 + j >= 0 (xi <= 0)
    for i in range(h):
        y = float(y0 + i)
        for seg in range(2):
            a, b = (0, split) if seg == 0 else (split, w)
            j = a
            while j < b:
                c0, r0, u0, v0 = _pixel_cell(float(x0 + j), y, k, a0, sd0, cd0, ra_min, dec_min, brick_deg, cells)
                c1, r1, u1, v1 = _pixel_cell(float(x0 + b - 1), y, k, a0, sd0, cd0, ra_min, dec_min, brick_deg, cells)
                if c1 == c0 and r1 == r0 and u1 == u0 and v1 == v0:
                    end = b - 1
                else:                                   # the last column of the run: same cell at lo, not at hi
                    lo, hi = j, b - 1
                    while hi - lo > 1:
                        mid = (lo + hi) // 2
                        cm, rm, um, vm = _pixel_cell(float(x0 + mid), y, k, a0, sd0, cd0, ra_min, dec_min,
                                                     brick_deg, cells)
                        if cm == c0 and rm == r0 and um == u0 and vm == v0:
                            lo = mid
                        else:
                            hi = mid
                    end = lo
                ok = 0 <= c0 < nside and 0 <= r0 < nside
                for jj in range(j, end + 1):
                    bidx[i, jj] = r0 * nside + c0 if ok else -1
                    cx[i, jj] = u0
                    cy[i, jj] = v0
                j = end + 1


def pixel_map_grid(x0: int, y0: int, h: int, w: int, ra0: float, dec0: float, footprint: dict, nside: int,
                   cells: int, pixscale_arcsec: float, brick_deg: float):
    """(brick, cell column, cell row) int64 maps (h, w) of the global pixels ``[y0, y0 + h) x [x0, x0 + w)``:
    ``brick_cell(*tan_deproject(xx, yy, ra0, dec0), footprint, nside, cells)`` (brick -1 outside), exactly: per
    row, the runs of pixels in one cell are found by bisection (the sky coordinates are monotone along a row on
    each side of the projection's central meridian; the footprint must not hold a pole)."""
    k = np.rad2deg(1.0) * 3600.0 / pixscale_arcsec
    out = [np.empty((int(h), int(w)), np.int64) for _ in range(3)]
    _pixel_map(int(x0), int(y0), int(h), int(w), float(ra0), float(dec0), k, float(footprint["ra_min"]),
               float(footprint["dec_min"]), float(brick_deg), int(nside), int(cells), *out)
    return tuple(out)


@numba.njit(cache=True, nogil=True)
def _exposure_maps(bidx, cx, cy, cells, sigma_white, nobs_mean, nobs, sig):  # pragma: no cover - compiled
    h, w = bidx.shape
    for b in range(3):
        for i in range(h):
            for j in range(w):
                k = bidx[i, j]
                if k >= 0:
                    n = float(cells[k, b, cy[i, j], cx[i, j]])
                    nobs[b, i, j] = n
                    sig[b, i, j] = sigma_white[k, b] * math.sqrt(nobs_mean[k, b] / n)
                else:
                    nobs[b, i, j] = 1.0
                    sig[b, i, j] = 0.0


def exposure_maps(bidx: np.ndarray, cx: np.ndarray, cy: np.ndarray, cells: np.ndarray, sigma_white: np.ndarray,
                  nobs_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exposure count, white-noise sigma in nanomaggies) maps (3, h, w) per band of pixels with brick/cell
    indices (h, w): count ``cells[brick, band, cy, cx]`` (1 outside the footprint), sigma
    ``sigma_white[brick, band] * sqrt(nobs_mean[brick, band] / count)`` (0 outside). One compiled pass, the
    same operations as :meth:`lensaudit.mock.render.Renderer.nobs_map` and ``sigma_map`` (bit-identical)."""
    shape = (3, *bidx.shape)
    nobs, sig = np.empty(shape), np.empty(shape)
    _exposure_maps(np.ascontiguousarray(bidx, np.int64), np.ascontiguousarray(cx, np.int64),
                   np.ascontiguousarray(cy, np.int64), cells, np.ascontiguousarray(sigma_white, np.float64),
                   np.ascontiguousarray(nobs_mean, np.float64), nobs, sig)
    return nobs, sig


@numba.njit(cache=True, nogil=True)
def _deposit(img, x, y, flux):  # pragma: no cover - compiled; tested against deposit_reference
    nb, h, w = img.shape
    for corner in range(4):
        dx, dy = corner % 2, corner // 2
        for b in range(nb):
            for i in range(x.shape[0]):
                ix, iy = math.floor(x[i]), math.floor(y[i])
                fx, fy = x[i] - ix, y[i] - iy
                wx = fx if dx else 1 - fx
                wy = fy if dy else 1 - fy
                jx, jy = ix + dx, iy + dy
                if 0 <= jx < w and 0 <= jy < h:
                    img[b, jy, jx] += flux[b, i] * (wx * wy)


def deposit(img: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray) -> None:
    """Add point fluxes (n_bands, n) at fractional pixel positions to ``img`` (n_bands, H, W) in place, bilinear
    weights, what falls outside dropped: :func:`deposit_reference` in one compiled pass, the same sums in the
    same order."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    flux = np.asarray(flux, np.float64).reshape(img.shape[0], x.size)
    if img.dtype != np.float64 or not img.flags.c_contiguous:
        raise ValueError("deposit: img must be a C-contiguous float64 array")
    _deposit(img, x, y, flux)


def deposit_reference(img: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray) -> None:
    """The numpy definition of :func:`deposit` (``np.add.at`` per corner and band)."""
    H, W = img.shape[1:]
    ix, iy = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - ix, y - iy
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        jx, jy = ix + dx, iy + dy
        ok = (jx >= 0) & (jx < W) & (jy >= 0) & (jy < H)
        for b in range(img.shape[0]):
            np.add.at(img[b], (jy[ok], jx[ok]), flux[b][ok] * wgt[ok])


__all__ = ["add_pixel_noise", "deposit", "deposit_reference", "exposure_maps", "normal_grid", "pixel_map_grid"]

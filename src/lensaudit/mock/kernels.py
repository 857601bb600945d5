"""Compiled (numba) kernels of the renderer's per-pixel work: the counter-based pixel noise and the
brick/cell map of a region of the global grid.

Each is the same arithmetic as a numpy reference that stays in the package as the definition
(:func:`lensaudit.mock.render.hashed_normal3`; :func:`lensaudit.mock.layout.tan_deproject` followed by
:func:`lensaudit.mock.layout.brick_cell`), computed in one pass per pixel instead of a dozen whole-array
temporaries; tests hold them equal (integers exactly, deviates to float64 round-off). Written with numba
because numpy has no fused elementwise kernels and the per-cutout arrays (3 x 111 x 111) are too small for
threads to pay.
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


@numba.njit(cache=True, nogil=True)
def _normal_grid(x0, y0, h, w, keys, out):  # pragma: no cover - compiled; tested against hashed_normal3
    two53 = 2.0**53
    for b in range(keys.shape[0]):
        kk = np.uint64(keys[b]) * _PK
        for i in range(h):
            py = np.uint64(np.int64(y0 + i)) * _PY
            for j in range(w):
                pix = (np.uint64(np.int64(x0 + j)) * _PX) ^ py
                a = _splitmix64(pix ^ kk)
                c = _splitmix64(a)
                u1 = (float(a >> np.uint64(11)) + 0.5) / two53
                u2 = float(c >> np.uint64(11)) / two53
                out[b, i, j] = math.sqrt(-2.0 * math.log(u1)) * math.cos(2 * math.pi * u2)
    return out


def normal_grid(x0: int, y0: int, h: int, w: int, key: int, n_keys: int = 3) -> np.ndarray:
    """(n_keys, h, w) standard normal deviates of the global pixels ``[y0, y0 + h) x [x0, x0 + w)`` for keys
    ``key .. key + n_keys - 1``: :func:`lensaudit.mock.render.hashed_normal3` on that grid (for n_keys = 3)."""
    keys = np.arange(key, key + n_keys, dtype=np.int64)
    return _normal_grid(int(x0), int(y0), int(h), int(w), keys, np.empty((n_keys, int(h), int(w))))


@numba.njit(cache=True, nogil=True)
def _pixel_map(x0, y0, h, w, ra0, dec0, k, ra_min, dec_min, brick_deg, nside, cells, bidx, cx, cy):  # pragma: no cover
    d0, a0 = math.radians(dec0), math.radians(ra0)
    sd0, cd0 = math.sin(d0), math.cos(d0)
    for i in range(h):
        eta = (y0 + i) / k
        for j in range(w):
            xi = -(x0 + j) / k
            rho = math.hypot(xi, eta)
            c = math.atan(rho)
            sc, cc = math.sin(c), math.cos(c)
            dec = math.asin(cc * sd0 + (eta * sc * cd0 / rho if rho > 0 else 0.0))
            ra = a0 + math.atan2(xi * sc, rho * cd0 * cc - eta * sd0 * sc)
            ra_deg = math.degrees(ra) % 360.0
            colf = (ra_deg - ra_min) / brick_deg
            rowf = (math.degrees(dec) - dec_min) / brick_deg
            col, row = math.floor(colf), math.floor(rowf)
            ok = 0 <= col < nside and 0 <= row < nside
            bidx[i, j] = int(row * nside + col) if ok else -1
            cx[i, j] = min(max(int(math.floor((colf - col) * cells)), 0), cells - 1)
            cy[i, j] = min(max(int(math.floor((rowf - row) * cells)), 0), cells - 1)


def pixel_map_grid(x0: int, y0: int, h: int, w: int, ra0: float, dec0: float, footprint: dict, nside: int,
                   cells: int, pixscale_arcsec: float, brick_deg: float):
    """(brick, cell column, cell row) int64 maps (h, w) of the global pixels ``[y0, y0 + h) x [x0, x0 + w)``:
    ``brick_cell(*tan_deproject(xx, yy, ra0, dec0), footprint, nside, cells)`` in one pass (brick -1 outside)."""
    k = np.rad2deg(1.0) * 3600.0 / pixscale_arcsec
    out = [np.empty((int(h), int(w)), np.int64) for _ in range(3)]
    _pixel_map(int(x0), int(y0), int(h), int(w), float(ra0), float(dec0), k, float(footprint["ra_min"]),
               float(footprint["dec_min"]), float(brick_deg), int(nside), int(cells), *out)
    return tuple(out)


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


__all__ = ["deposit", "deposit_reference", "normal_grid", "pixel_map_grid"]

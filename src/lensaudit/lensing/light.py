"""Source light profiles as pure functions of position (arcsec in, relative surface brightness out).

Sources are evaluated analytically at (ray-traced) positions, which is equivalent to painting
them on a source-plane grid of infinite resolution. Irregular source morphology follows
GalSim's ``RandomKnots`` idea: a smooth Sersic disc plus a random set of compact star-forming
knots. Conventions: elliptical radius r = sqrt(q x'^2 + y'^2 / q) in the frame of the major axis
(x'), so ``r_e`` is the *circularised* half-light radius (the geometric mean of the semi-axes:
semi-major r_e / sqrt(q), semi-minor r_e sqrt(q), as in lenstronomy's ``SERSIC_ELLIPSE``) and
the total flux does not depend on q; ``b_n`` solves Gamma(2n) = 2 gamma(2n, b_n), so half the
light lies inside r = r_e; ``q`` is the minor/major axis ratio and ``phi`` the major axis'
angle counter-clockwise from +x (radians).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gamma as gamma_fn
from scipy.special import gammaincinv

from lensaudit.lensing.arrays import as_positions, namespace, per_lens, to_numpy


def sersic_b(n):
    """b_n with Gamma(2n) = 2 gamma(2n, b_n): the half-light radius convention (float, or an array for arrays)."""
    b = gammaincinv(2.0 * to_numpy(n), 0.5)
    return float(b) if np.ndim(b) == 0 else b


def sersic(x, y, r_e, n, q=1.0, phi=0.0, soft: float = 0.0, *, b=None):
    """Elliptical Sersic profile, 1 at r = r_e (circularised half-light radius, arcsec); ``soft`` core (arcsec).

    NumPy or PyTorch (:mod:`lensaudit.lensing.arrays`): scalar parameters, or parameters of shape (B,)
    for positions of shape (B, ...). ``b``: :func:`sersic_b` of ``n``, when the caller has it (SciPy computes it
    on the host: compiled code passes it in).
    """
    xp = namespace(x)
    x, y = as_positions(x, xp), as_positions(y, xp)
    b = per_lens(sersic_b(n) if b is None else b, x, xp)
    r_e, n, q, phi = (per_lens(v, x, xp) for v in (r_e, n, q, phi))
    c, s = xp.cos(phi), xp.sin(phi)
    xr = c * x + s * y
    yr = -s * x + c * y
    r = xp.sqrt(xr * xr * q + yr * yr / q + soft * soft)
    return xp.exp(-b * ((r / xp.clip(r_e, min=1e-3)) ** (1.0 / n) - 1.0))


def sersic_total(r_e, n):
    """Integral over the plane of :func:`sersic` (no soft core), any q: 2 pi n e^b_n Gamma(2n) / b_n^2n r_e^2
    (float, or a NumPy array for array parameters)."""
    n, r_e = to_numpy(n), to_numpy(r_e)
    b = gammaincinv(2.0 * n, 0.5)
    t = 2 * np.pi * n * np.exp(b) * gamma_fn(2 * n) / b ** (2 * n) * r_e**2
    return float(t) if np.ndim(t) == 0 else t


def sersic_unit_flux(x, y, r_e, n, q=1.0, phi=0.0, *, b=None, total=None):
    """Surface brightness (per arcsec^2) of an elliptical Sersic source of total flux 1 (NumPy or PyTorch);
    ``b`` and ``total`` (:func:`sersic_b`, :func:`sersic_total`) when the caller has them."""
    prof = sersic(x, y, r_e, n, q, phi, b=b)
    xp = namespace(prof)
    return prof / per_lens(sersic_total(r_e, n) if total is None else total, prof, xp)


def gaussian(x, y, sigma):
    """Circular Gaussian, 1 at the centre (sigma arcsec; NumPy or PyTorch, batched)."""
    xp = namespace(x)
    s = per_lens(sigma, x, xp) if not np.isscalar(sigma) else sigma
    return xp.exp(-0.5 * (x * x + y * y) / (s * s))


def gaussian_unit_flux(x, y, sigma):
    """Circular Gaussian of total flux 1, per arcsec^2 (NumPy or PyTorch, batched)."""
    xp = namespace(x)
    s = per_lens(sigma, x, xp) if not np.isscalar(sigma) else sigma
    return gaussian(x, y, sigma) / (2 * np.pi * s * s)


def knots_profile(x: np.ndarray, y: np.ndarray, kx: np.ndarray, ky: np.ndarray, ksig: np.ndarray,
                  kw: np.ndarray) -> np.ndarray:
    """Sum of Gaussian knots, each integrating to its weight ``kw`` (positions and widths arcsec).

    Where (x, y) is a grid (``np.meshgrid`` of ascending axes) and every width positive, :func:`knots_on_grid`
    computes it: the same numbers bit for bit, each knot evaluated only where it is not exactly 0.0."""
    if _is_grid(x, y) and len(ksig) and (np.asarray(ksig) > 0).all():
        return knots_on_grid(x[0], y[:, 0], kx, ky, ksig, kw)
    out = np.zeros_like(x, dtype=float)
    for i in range(len(kx)):
        out += kw[i] * gaussian(x - kx[i], y - ky[i], ksig[i]) / (2 * np.pi * ksig[i] ** 2)
    return out


def _is_grid(x, y) -> bool:
    """Whether NumPy arrays (x, y) are ``np.meshgrid(gx, gy)`` of ascending axes: every row of x is its first row,
    every column of y its first column (NaN is never equal, so an axis with NaN is not a grid)."""
    if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)) or x.ndim != 2 or x.shape != y.shape or not x.size:
        return False
    return bool((x == x[:1]).all() and (y == y[:, :1]).all() and (np.diff(x[0]) >= 0).all()
                and (np.diff(y[:, 0]) >= 0).all())


#: :func:`knots_on_grid` evaluates a knot only within this many sigmas of its centre along each axis. Beyond it,
#: 0.5 r^2 / sigma^2 > 800 and exp() underflows to exactly 0.0 in float64 (it does below about -745.13), so
#: adding the knot there adds +0.0: the sum is unchanged bit for bit.
KNOT_REACH_SIGMA = 40.0


def knots_on_grid(gx: np.ndarray, gy: np.ndarray, kx: np.ndarray, ky: np.ndarray, ksig: np.ndarray,
                  kw: np.ndarray) -> np.ndarray:
    """:func:`knots_profile` on the grid x = gx[None, :], y = gy[:, None] (``np.meshgrid(gx, gy)``; ascending axes,
    arcsec), bit for bit: each knot's Gaussian is evaluated by the same expression, only inside the box of
    +-:data:`KNOT_REACH_SIGMA` sigma about it (outside, it is exactly 0.0). Sigmas must be positive."""
    gx, gy = np.asarray(gx), np.asarray(gy)       # in their own dtypes, as knots_profile computes with them
    positive = np.asarray(ksig) > 0
    if not positive.all():
        raise ValueError(f"knots_on_grid: knot widths must be positive arcsec, got {np.asarray(ksig)[~positive][:5]}")
    if (gx[1:] < gx[:-1]).any() or (gy[1:] < gy[:-1]).any():
        raise ValueError("knots_on_grid: grid axes gx and gy must be ascending")
    out = np.zeros((gy.size, gx.size))
    for i in range(len(kx)):
        reach = KNOT_REACH_SIGMA * float(ksig[i])
        c0, c1 = np.searchsorted(gx, kx[i] - reach), np.searchsorted(gx, kx[i] + reach, "right")
        r0, r1 = np.searchsorted(gy, ky[i] - reach), np.searchsorted(gy, ky[i] + reach, "right")
        if c0 >= c1 or r0 >= r1:
            continue
        dx, dy = gx[None, c0:c1] - kx[i], gy[r0:r1, None] - ky[i]
        out[r0:r1, c0:c1] += kw[i] * gaussian(dx, dy, ksig[i]) / (2 * np.pi * ksig[i] ** 2)
    return out


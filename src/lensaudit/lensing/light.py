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


def sersic_b(n: float) -> float:
    """b_n with Gamma(2n) = 2 gamma(2n, b_n): the half-light radius convention."""
    return float(gammaincinv(2.0 * n, 0.5))


def sersic(x: np.ndarray, y: np.ndarray, r_e: float, n: float, q: float = 1.0, phi: float = 0.0,
           soft: float = 0.0) -> np.ndarray:
    """Elliptical Sersic profile, 1 at r = r_e (circularised half-light radius, arcsec); ``soft`` core (arcsec)."""
    c, s = np.cos(phi), np.sin(phi)
    xr = c * x + s * y
    yr = -s * x + c * y
    r = np.sqrt(xr * xr * q + yr * yr / q + soft * soft)
    return np.exp(-sersic_b(n) * ((r / max(r_e, 1e-3)) ** (1.0 / n) - 1.0))


def gaussian(x: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    """Circular Gaussian, 1 at the centre (sigma arcsec)."""
    return np.exp(-0.5 * (x * x + y * y) / (sigma * sigma))


def knots_profile(x: np.ndarray, y: np.ndarray, kx: np.ndarray, ky: np.ndarray, ksig: np.ndarray,
                  kw: np.ndarray) -> np.ndarray:
    """Sum of Gaussian knots, each integrating to its weight ``kw`` (positions and widths arcsec)."""
    out = np.zeros_like(x, dtype=float)
    for i in range(len(kx)):
        out += kw[i] * gaussian(x - kx[i], y - ky[i], ksig[i]) / (2 * np.pi * ksig[i] ** 2)
    return out


def sersic_total(r_e: float, n: float) -> float:
    """Integral over the plane of :func:`sersic` (no soft core), any q: 2 pi n e^b_n Gamma(2n) / b_n^2n r_e^2."""
    b = sersic_b(n)
    return float(2 * np.pi * n * np.exp(b) * gamma_fn(2 * n) / b ** (2 * n) * r_e**2)

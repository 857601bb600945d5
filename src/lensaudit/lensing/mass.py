"""Lens mass profiles as pure functions over arrays (angles in arcsec).

SIE (singular isothermal ellipsoid, zero core) + external shear. Convention: the Einstein
radius ``theta_e`` is that of the intermediate-axis normalisation, so q -> 1 gives the SIS
deflection ``theta_e * x / |x|`` exactly (Kormann et al. 1994; Keeton 2001, eq. for the SIE
with s = 0). ``q`` is the minor/major axis ratio of the mass, ``phi`` the position angle of
the major axis in radians, counter-clockwise from the +x axis of the frame.
"""

from __future__ import annotations

import numpy as np


def sie_deflection(x: np.ndarray, y: np.ndarray, theta_e: float, q: float, phi: float,
                   x0: float = 0.0, y0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Deflection (alpha_x, alpha_y) in arcsec of an SIE at (x0, y0) for image positions (x, y)."""
    if not 0.0 < q <= 1.0:
        raise ValueError(f"sie_deflection: axis ratio q={q} outside (0, 1]")
    dx, dy = np.asarray(x, float) - x0, np.asarray(y, float) - y0
    c, s = np.cos(phi), np.sin(phi)
    xr = c * dx + s * dy
    yr = -s * dx + c * dy
    if q > 1 - 1e-6:
        r = np.hypot(xr, yr) + 1e-12
        axr, ayr = theta_e * xr / r, theta_e * yr / r
    else:
        e = np.sqrt(1.0 - q * q)
        psi = np.sqrt(q * q * xr * xr + yr * yr) + 1e-12
        f = theta_e * np.sqrt(q) / e
        axr = f * np.arctan(e * xr / psi)
        ayr = f * np.arctanh(np.clip(e * yr / psi, -1 + 1e-12, 1 - 1e-12))
    return c * axr - s * ayr, s * axr + c * ayr


def shear_deflection(x: np.ndarray, y: np.ndarray, gamma1: float, gamma2: float,
                     x0: float = 0.0, y0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Deflection of an external shear (gamma1, gamma2) about (x0, y0), arcsec."""
    dx, dy = np.asarray(x, float) - x0, np.asarray(y, float) - y0
    return gamma1 * dx + gamma2 * dy, gamma2 * dx - gamma1 * dy


def ray_trace(x: np.ndarray, y: np.ndarray, theta_e: float, q: float, phi: float, gamma1: float = 0.0,
              gamma2: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Source-plane positions beta = x - alpha(x) for an SIE + shear centred at the origin."""
    ax, ay = sie_deflection(x, y, theta_e, q, phi)
    sx, sy = shear_deflection(x, y, gamma1, gamma2)
    return x - ax - sx, y - ay - sy

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


def _rotate(dx: np.ndarray, dy: np.ndarray, phi: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(phi), np.sin(phi)
    return c * dx + s * dy, -s * dx + c * dy


def _unrotate(ax: np.ndarray, ay: np.ndarray, phi: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(phi), np.sin(phi)
    return c * ax - s * ay, s * ax + c * ay


def epl_deflection(x: np.ndarray, y: np.ndarray, theta_e: float, gamma: float, q: float, phi: float,
                   x0: float = 0.0, y0: float = 0.0, tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Deflection (arcsec) of an elliptical power-law mass (EPL), convergence
    kappa = (3 - gamma)/2 (theta_e / sqrt(q x'^2 + y'^2 / q))^(gamma - 1) in the major-axis frame.

    Tessore & Metcalf (2015, A&A 580, A79), eqs. 13 and 22-29: the angular part is the
    hypergeometric series 2F1(1, t/2; 2 - t/2; -f e^{2i varphi}), f = (1 - q)/(1 + q), t = gamma - 1,
    summed with its two-term recurrence until terms fall below ``tol`` (f^n; at most a few hundred
    terms for q >= 0.05). gamma = 2 is the SIE of :func:`sie_deflection` (same theta_e convention,
    the intermediate-axis normalisation lenstronomy's ``EPL`` uses). Written by hand because no
    array library ships it (lenstronomy calls scipy's complex ``hyp2f1`` per point).
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"epl_deflection: axis ratio q={q} outside (0, 1]")
    if not 1.0 < gamma < 3.0:
        raise ValueError(f"epl_deflection: slope gamma={gamma} outside (1, 3)")
    xr, yr = _rotate(np.asarray(x, float) - x0, np.asarray(y, float) - y0, phi)
    t = gamma - 1.0
    b = theta_e * np.sqrt(q)
    z = q * xr + 1j * yr
    r = np.maximum(np.abs(z), 1e-12)
    e2iphi = np.where(np.abs(z) > 0, (z / r) ** 2, 1.0)           # e^{2 i varphi}, varphi the elliptical angle
    f = (1.0 - q) / (1.0 + q)
    term = z / r                                                  # Omega_0 = e^{i varphi}
    omega = term.copy()
    n_max = 1 if f == 0 else int(np.ceil(np.log(tol) / np.log(f))) + 2
    for n in range(1, max(n_max, 1)):
        term = term * (-f * e2iphi) * (2 * n - (2 - t)) / (2 * n + (2 - t))
        omega = omega + term
    alpha = 2.0 * b / (1.0 + q) * (b / r) ** (t - 1.0) * omega
    return _unrotate(alpha.real, alpha.imag, phi)


def multipole_deflection(x: np.ndarray, y: np.ndarray, m: int, a_m: float, phi_m: float,
                         x0: float = 0.0, y0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Deflection (arcsec) of a circular multipole of order m >= 2 (Xu et al. 2013, appendix B):
    potential psi = r a_m / (1 - m^2) cos(m (theta - phi_m)); ``a_m`` in arcsec (a percent of theta_E
    is a typical galaxy's boxiness or diskiness for m = 4), ``phi_m`` its orientation (radians)."""
    if int(m) != m or m < 2:
        raise ValueError(f"multipole_deflection: order m={m} must be an integer >= 2")
    dx, dy = np.asarray(x, float) - x0, np.asarray(y, float) - y0
    th = np.arctan2(dy, dx)
    c, s = np.cos(th), np.sin(th)
    k = a_m / (1.0 - m * m)
    cm, sm = np.cos(m * (th - phi_m)), np.sin(m * (th - phi_m))
    return k * (c * cm + m * s * sm), k * (s * cm - m * c * sm)


def convergence_deflection(x: np.ndarray, y: np.ndarray, kappa: float, x0: float = 0.0,
                           y0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Deflection (arcsec) of a uniform convergence sheet ``kappa`` (a group or cluster environment)."""
    return kappa * (np.asarray(x, float) - x0), kappa * (np.asarray(y, float) - y0)

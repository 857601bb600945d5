"""Surface-brightness profiles as pure functions of position (arcsec in, relative SB out).

Sources are evaluated analytically at (ray-traced) positions, which is equivalent to painting
them on a source-plane grid of infinite resolution. Irregular source morphology follows
GalSim's ``RandomKnots`` idea: a smooth Sersic disc plus a random set of compact star-forming
knots, bluer than the disc (colour gradient), several components per source.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaincinv


def sersic_b(n: float) -> float:
    """b_n with Gamma(2n) = 2 gamma(2n, b_n): the half-light radius convention."""
    return float(gammaincinv(2.0 * n, 0.5))


def sersic(x: np.ndarray, y: np.ndarray, r_e: float, n: float, q: float = 1.0, phi: float = 0.0,
           soft: float = 0.0) -> np.ndarray:
    """Unnormalised elliptical Sersic profile (r_e arcsec along the major axis), soft core (arcsec)."""
    c, s = np.cos(phi), np.sin(phi)
    xr = c * x + s * y
    yr = -s * x + c * y
    r = np.sqrt(xr * xr * q + yr * yr / q + soft * soft)
    return np.exp(-sersic_b(n) * ((r / max(r_e, 1e-3)) ** (1.0 / n) - 1.0))


def gaussian(x: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (x * x + y * y) / (sigma * sigma))


def knots_profile(x: np.ndarray, y: np.ndarray, kx: np.ndarray, ky: np.ndarray, ksig: np.ndarray,
                  kw: np.ndarray) -> np.ndarray:
    """Sum of Gaussian knots (positions/widths arcsec, weights relative)."""
    out = np.zeros_like(x, dtype=float)
    for i in range(len(kx)):
        out += kw[i] * gaussian(x - kx[i], y - ky[i], ksig[i]) / (2 * np.pi * ksig[i] ** 2)
    return out


def ring(x: np.ndarray, y: np.ndarray, radius: float, width: float, q: float = 1.0, phi: float = 0.0,
         clumpiness: float = 0.0, phase: float = 0.0) -> np.ndarray:
    """A (possibly clumpy) elliptical ring of light at ``radius`` arcsec."""
    c, s = np.cos(phi), np.sin(phi)
    xr, yr = c * x + s * y, -s * x + c * y
    r = np.sqrt(xr * xr * q + yr * yr / q)
    th = np.arctan2(yr, xr)
    mod = 1.0 + clumpiness * np.cos(5 * th + phase) * np.cos(3 * th - 2 * phase)
    return np.exp(-0.5 * ((r - radius) / width) ** 2) * np.clip(mod, 0, None)


def spiral(x: np.ndarray, y: np.ndarray, r_e: float, n_arms: int, pitch: float, phase: float,
           q: float = 1.0, phi: float = 0.0) -> np.ndarray:
    """Logarithmic spiral arms modulating an exponential disc (r_e arcsec, pitch radians)."""
    c, s = np.cos(phi), np.sin(phi)
    xr, yr = c * x + s * y, -s * x + c * y
    r = np.sqrt(xr * xr * q + yr * yr / q) + 1e-3
    th = np.arctan2(yr, xr)
    arm = np.cos(n_arms * (th - np.log(r / r_e) / np.tan(pitch)) + phase)
    return np.exp(-1.678 * r / r_e) * (0.25 + np.clip(arm, 0, None) ** 2)


def arc_tail(x: np.ndarray, y: np.ndarray, radius: float, width: float, angle0: float, span: float) -> np.ndarray:
    """A tidal-tail-like curved streak: a ring segment from angle0 over span (radians), fading."""
    r = np.hypot(x, y)
    th = np.mod(np.arctan2(y, x) - angle0, 2 * np.pi)
    along = np.where(th < span, 1.0 - th / span, 0.0)
    rad = radius * (1 + 0.3 * th / span)
    return np.exp(-0.5 * ((r - rad) / width) ** 2) * along


def spikes(x: np.ndarray, y: np.ndarray, length: float, width: float, angle: float = 0.0) -> np.ndarray:
    """Diffraction spikes (a cross along angle, angle + 90 deg), arcsec."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    a = np.exp(-0.5 * (v / width) ** 2) * np.exp(-np.abs(u) / length)
    b = np.exp(-0.5 * (u / width) ** 2) * np.exp(-np.abs(v) / length)
    return a + b

"""Confuser shapes of the mock survey as pure functions of position (relative surface brightness):
rings, spiral arms, tidal tails, diffraction spikes. Source light profiles shared with the
injection engine (Sersic, Gaussian knots) live in :mod:`lensaudit.lensing.light`."""

from __future__ import annotations

import numpy as np


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


def shells(x: np.ndarray, y: np.ndarray, radius: float, n: int, phase: float, width: float) -> np.ndarray:
    """Tidal shells: ``n`` concentric partial rings (span about 140 deg) on alternating sides of the
    host, at radii growing by 40 percent each, fainter outwards (pixels or arcsec, as x and y)."""
    r = np.hypot(x, y)
    th = np.arctan2(y, x)
    out = np.zeros_like(r, dtype=float)
    for k in range(int(n)):
        rk = radius * 1.4**k
        centre = phase + k * np.pi
        d = np.angle(np.exp(1j * (th - centre)))                     # angle from the shell's centre, -pi..pi
        along = np.clip(1 - np.abs(d) / 1.2, 0, None)                 # fades to zero at +-70 deg
        out += 0.7**k * along * np.exp(-0.5 * ((r - rk) / width) ** 2)
    return out


def tangential_blobs(x: np.ndarray, y: np.ndarray, radius: float, n: int, phase: float, rng) -> np.ndarray:
    """``n`` small companions at ~``radius`` from the host, elongated tangentially (the classic arc look-alike)."""
    out = np.zeros_like(np.asarray(x, dtype=float))
    for _ in range(int(n)):
        ang = phase + rng.normal(0, 0.6)
        rr = radius * rng.uniform(0.8, 1.3)
        cx, cy = rr * np.cos(ang), rr * np.sin(ang)
        # tangential direction is perpendicular to the radius vector
        t = np.array([-np.sin(ang), np.cos(ang)])
        dx, dy = x - cx, y - cy
        u = dx * t[0] + dy * t[1]
        v = dx * np.cos(ang) + dy * np.sin(ang)
        su = max(rr * rng.uniform(0.15, 0.35), 1.2)
        sv = max(su * rng.uniform(0.25, 0.5), 0.7)
        out += rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((u / su) ** 2 + (v / sv) ** 2))
    return out

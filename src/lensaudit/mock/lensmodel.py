"""A mock lens's full mass model and the rendering of its lensed source (single objects).

The mass is an elliptical power law (EPL; the SIE when gamma = 2) with external shear, m = 3 and
m = 4 multipoles, an optional satellite (SIS) and an optional group convergence; every term is a
pure function of :mod:`lensaudit.lensing`. The lensed image is the source image sampled at the
ray-traced positions of an oversampled grid and averaged back to 0.262 arcsec pixels.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lensaudit.lensing.mass import (
    convergence_deflection,
    epl_deflection,
    multipole_deflections,
    shear_deflection,
    sie_deflection,
)
from lensaudit.sources.procedural import SourceImage
from lensaudit.survey.constants import PIXEL_SCALE_ARCSEC

#: Sub-pixels per pixel side when ray tracing (4 x 4 = 16 rays per 0.262 arcsec pixel).
SUPERSAMPLE = 4


def deflection(lp: Mapping, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total deflection (arcsec) of lens ``lp`` (its parameters) at image positions relative to its centre."""
    te, q, phi = float(lp["theta_e"]), float(lp["lens_q"]), float(lp["lens_phi"])
    gamma = float(lp.get("gamma", 2.0))
    if abs(gamma - 2.0) < 1e-9:
        ax, ay = sie_deflection(x, y, te, q, phi)
    else:
        ax, ay = epl_deflection(x, y, te, gamma, q, phi)
    sx, sy = shear_deflection(x, y, float(lp["shear_g1"]), float(lp["shear_g2"]))
    ax, ay = ax + sx, ay + sy
    poles = [(m, float(lp.get(f"a{m}", 0.0) or 0.0)) for m in (3, 4)]
    for mx, my in multipole_deflections(x, y, [(m, a_m, float(lp[f"phi{m}"])) for m, a_m in poles if a_m]):
        ax, ay = ax + mx, ay + my
    ts = float(lp.get("sat_theta_e", 0.0) or 0.0)
    if ts > 0:
        mx, my = sie_deflection(x, y, ts, 1.0, 0.0, float(lp["sat_x"]), float(lp["sat_y"]))
        ax, ay = ax + mx, ay + my
    k = float(lp.get("kappa_ext", 0.0) or 0.0)
    if k:
        mx, my = convergence_deflection(x, y, k)
        ax, ay = ax + mx, ay + my
    return ax, ay


def arc_image(lp: Mapping, source: SourceImage, dx_pix: np.ndarray, dy_pix: np.ndarray,
              supersample: int = SUPERSAMPLE) -> np.ndarray:
    """(3, H, W) lensed flux (nanomaggies per pixel) on pixels whose centres sit at (dx_pix, dy_pix)
    pixels from the lens centre (x west-positive as the global grid, y north)."""
    s = supersample
    off = ((np.arange(s) + 0.5) / s - 0.5) * PIXEL_SCALE_ARCSEC
    ox, oy = np.meshgrid(off, off)
    x = dx_pix[..., None, None] * PIXEL_SCALE_ARCSEC + ox
    y = dy_pix[..., None, None] * PIXEL_SCALE_ARCSEC + oy
    ax, ay = deflection(lp, x, y)
    sb = source.sample(x - ax, y - ay)                      # (3, H, W, s, s) nanomaggies / arcsec^2
    return sb.mean(axis=(-2, -1)) * PIXEL_SCALE_ARCSEC**2


def arc_box_radius_pix(lp: Mapping, source: SourceImage) -> int:
    """Half-size (pixels) of the box that holds a lens's images: theta_E, source offset and extent, margin."""
    te = float(lp["theta_e"]) * (1 + float(lp.get("kappa_ext", 0.0) or 0.0))
    ext = source.pixscale * source.image.shape[-1] / 2
    r = te * 1.3 + np.hypot(source.x0, source.y0) + ext + 0.5
    return int(np.ceil(r / PIXEL_SCALE_ARCSEC))

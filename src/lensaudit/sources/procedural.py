"""Procedural source galaxies as source-plane images (single objects; the mock's population draws their
parameters in :mod:`lensaudit.mock.population`), and :class:`SourceImage`, the one representation every
source takes on its way through the mock's ray tracer (procedural or a library stamp).

``rich`` sources are textured, several-component galaxies at z_s 1-3: an exponential disc whose
light is modulated by a Gaussian random field, an optional bulge, spiral arms or a bar,
one or two offset components, star-forming knots with their own colours, patchy dust (stronger in
g than in z) and a colour gradient; passive (red) sources are smooth Sersic spheroids. ``simple``
sources are the earlier family: a Sersic disc plus Gaussian knots. Both are returned as images
in nanomaggies per source pixel in g, r, z, so the renderer traces rays through one path for
every family. Every draw comes from the lens's own seed stream.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from lensaudit.lensing.light import knots_profile, sersic
from lensaudit.sources.kernels import bilinear_planes
from lensaudit.survey.constants import MAG_ZEROPOINT

#: Source-plane image side, pixels.
N_SOURCE = 96
#: Dust attenuation ratio A_band / A_g (roughly a Calzetti law at the rest-frame UV of z_s 1-3).
DUST_RATIO = np.array([1.0, 0.72, 0.45])


@dataclass(frozen=True)
class SourceImage:
    """(3, N, N) g, r, z nanomaggies per source pixel on a square grid centred at (x0, y0) arcsec, turned by
    ``angle`` (radians, counter-clockwise) after an optional mirror image (``flip``: x -> -x)."""

    image: np.ndarray
    pixscale: float
    x0: float
    y0: float
    angle: float = 0.0
    flip: bool = False

    @property
    def flux(self) -> np.ndarray:
        return self.image.sum(axis=(1, 2))

    def sample(self, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
        """Surface brightness (nanomaggies per arcsec^2) at source-plane positions, bilinear; 0 outside."""
        n = self.image.shape[-1]
        c = (n - 1) / 2
        dx, dy = np.asarray(bx, float) - self.x0, np.asarray(by, float) - self.y0
        if self.angle:
            ca, sa = np.cos(self.angle), np.sin(self.angle)
            dx, dy = ca * dx + sa * dy, -sa * dx + ca * dy
        if self.flip:
            dx = -dx
        col = dx / self.pixscale + c
        row = dy / self.pixscale + c
        sb = bilinear_planes(self.image, row, col)               # = map_coordinates(order=1, mode="constant")
        return sb.reshape((self.image.shape[0],) + np.shape(bx)) / self.pixscale**2


def colour_weights(g_r, r_z) -> np.ndarray:
    """Flux ratios (g, r, z) / r of AB colours: shape (3,) for scalars, (3, n) for arrays."""
    g_r, r_z = np.asarray(g_r, dtype=float), np.asarray(r_z, dtype=float)
    return 10 ** (-0.4 * np.stack([g_r, np.zeros_like(g_r), -r_z]))


@functools.lru_cache(maxsize=8)
def _k_squared(n: int) -> np.ndarray:
    """|k|^2 of an n x n grid's FFT frequencies (cycles per side), read-only: ``np.hypot(kx, ky) ** 2`` as
    :func:`gaussian_random_field` always computed it (the same numbers, computed once per size)."""
    k = np.fft.fftfreq(n) * n
    kk2 = np.hypot(*np.meshgrid(k, k)) ** 2
    kk2.flags.writeable = False
    return kk2


def gaussian_random_field(n: int, rng: np.random.Generator, slope: float = 3.0, k0: float = 3.0) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field on an n x n grid, power ~ (k^2 + k0^2)^(-slope/2)."""
    amp = (_k_squared(n) + k0**2) ** (-slope / 4)
    amp[0, 0] = 0.0
    f = np.fft.ifft2(amp * (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n)))).real
    return (f - f.mean()) / (f.std() + 1e-30)


def _grid(extent: float, n: int = N_SOURCE) -> tuple[np.ndarray, np.ndarray, float]:
    pix = extent / n
    g = (np.arange(n) - (n - 1) / 2) * pix
    x, y = np.meshgrid(g, g)
    return x, y, pix


def render_rich(p: dict, rng: np.random.Generator) -> SourceImage:
    """A rich source from its drawn parameters ``p`` (see :func:`lensaudit.mock.population.draw_sources`)."""
    re = float(p["src_re"])
    extent = max(10.0 * re + 2.0 * float(p["src_offset_max"]), 1.2)
    x, y, pix = _grid(extent)
    q, phi = float(p["src_q"]), float(p["src_phi"])
    bands = np.zeros((3,) + x.shape)
    if p["src_red"]:
        body = sersic(x, y, re, float(p["src_n"]), q, phi)
        bands += colour_weights(p["src_gr"], p["src_rz"])[:, None, None] * (body / body.sum())[None]
    else:
        disc = sersic(x, y, re, 1.0, q, phi)
        tex = gaussian_random_field(x.shape[0], rng, slope=3.0, k0=x.shape[0] * pix / max(re, 1e-3) / 2)
        disc = disc * np.exp(p["src_texture"] * tex - 0.5 * p["src_texture"] ** 2)
        if p["src_arms"]:
            c, s = np.cos(phi), np.sin(phi)
            xr, yr = c * x + s * y, -s * x + c * y
            r = np.sqrt(xr * xr * q + yr * yr / q) + 1e-3
            th = np.arctan2(yr, xr)
            arm = np.cos(2 * (th - np.log(r / re) / np.tan(0.35)) + p["src_arm_phase"])
            disc = disc * (0.35 + np.clip(arm, 0, None) ** 2)
        rr = np.sqrt(x * x + y * y) / re
        # colour gradient: bluer outwards by grad mag per half-light radius
        grad = 10 ** (0.4 * p["src_gradient"] * np.clip(rr - 1, -1, 3))
        disc_col = colour_weights(p["src_gr"], p["src_rz"])[:, None, None] * np.stack([grad, np.ones_like(grad), 1 / grad])
        comps = disc_col * (disc / disc.sum())[None] * (1 - p["src_bulge_frac"] - p["src_knot_frac"])
        if p["src_bulge_frac"] > 0:
            bulge = sersic(x, y, 0.3 * re, 3.5, min(1.0, q + 0.2), phi)
            comps += colour_weights(p["src_gr"] + 0.5, p["src_rz"] + 0.3)[:, None, None] * (bulge / bulge.sum())[None] \
                * p["src_bulge_frac"]
        if p["src_bar"]:
            bar = sersic(x, y, 0.6 * re, 0.5, 0.25, phi + p["src_bar_angle"])
            comps += colour_weights(p["src_gr"] + 0.3, p["src_rz"] + 0.2)[:, None, None] * (bar / bar.sum())[None] * 0.15
        for _ in range(int(p["src_n_components"])):
            ang = rng.uniform(0, 2 * np.pi)
            d = rng.uniform(0.3, 1.0) * float(p["src_offset_max"])
            comp = sersic(x - d * np.cos(ang), y - d * np.sin(ang), re * rng.uniform(0.2, 0.5), 1.0,
                          rng.uniform(0.4, 1.0), rng.uniform(0, np.pi))
            comps += colour_weights(p["src_gr"] - 0.15, p["src_rz"] - 0.1)[:, None, None] * (comp / comp.sum())[None] \
                * rng.uniform(0.1, 0.3)
        n_knots = int(p["src_n_knots"])
        if n_knots and p["src_knot_frac"] > 0:
            kx, ky = rng.normal(0, 1.2 * re, n_knots), rng.normal(0, 1.2 * re, n_knots)
            ks, kw = rng.uniform(0.015, 0.05, n_knots), rng.exponential(1.0, n_knots)
            knots = knots_profile(x, y, kx, ky, ks, kw / kw.sum())
            comps += colour_weights(p["src_gr"] - 0.35, p["src_rz"] - 0.3)[:, None, None] * \
                (knots / max(knots.sum(), 1e-30))[None] * p["src_knot_frac"]
        if p["src_dust_tau"] > 0:
            dust = np.clip(gaussian_random_field(x.shape[0], rng, slope=2.5, k0=4.0) + 0.3, 0, None)
            comps *= np.exp(-p["src_dust_tau"] * DUST_RATIO[:, None, None] * dust[None])
        bands += comps
    f_r = 10 ** (-0.4 * (float(p["src_rmag"]) - MAG_ZEROPOINT))
    img = bands * (f_r / bands[1].sum())
    return SourceImage(img.astype(np.float64), pix, float(p["src_x"]), float(p["src_y"]))


def render_simple(p: dict) -> SourceImage:
    """The earlier family: Sersic disc plus Gaussian knots (bluer), two colours."""
    re = float(p["src_re"])
    extent = max(10.0 * re, 1.2)
    x, y, pix = _grid(extent)
    disc = sersic(x, y, re, float(p["src_n"]), float(p["src_q"]), float(p["src_phi"]))
    kx = np.array([p[f"knot{k}_x"] for k in range(int(p["src_n_knots"]))], dtype=float)
    ky = np.array([p[f"knot{k}_y"] for k in range(int(p["src_n_knots"]))], dtype=float)
    ks = np.array([p[f"knot{k}_sig"] for k in range(int(p["src_n_knots"]))], dtype=float)
    kw = np.array([p[f"knot{k}_w"] for k in range(int(p["src_n_knots"]))], dtype=float)
    knots = knots_profile(x, y, kx, ky, ks, kw) if len(kx) else np.zeros_like(x)
    kf = float(p["src_knot_frac"])
    img = (colour_weights(p["src_gr"], p["src_rz"])[:, None, None] * (disc / disc.sum())[None] * (1 - kf)
           + colour_weights(p["src_gr"] - 0.45, p["src_rz"] - 0.35)[:, None, None]
           * (knots / max(knots.sum(), 1e-30))[None] * kf)
    f_r = 10 ** (-0.4 * (float(p["src_rmag"]) - MAG_ZEROPOINT))
    return SourceImage(img * (f_r / img[1].sum()), pix, float(p["src_x"]), float(p["src_y"]))


def stamp_source(library, p: dict) -> SourceImage:
    """A library stamp as a lensed source (the parameters of :func:`lensaudit.mock.population.library_sources`):
    stamp ``src_stamp`` rescaled by ``src_scale``, turned by ``src_phi``, mirrored when ``src_flip``, at
    (``src_x``, ``src_y``) arcsec, its r-band flux set to ``src_rmag``."""
    img = np.asarray(library.images[int(p["src_stamp"])], float)
    f_r = 10 ** (-0.4 * (float(p["src_rmag"]) - MAG_ZEROPOINT))
    return SourceImage(img * (f_r / img[1].sum()), library.pixscale * float(p["src_scale"]), float(p["src_x"]),
                       float(p["src_y"]), angle=float(p["src_phi"]), flip=bool(p["src_flip"]))

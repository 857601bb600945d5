"""Renderer: the g,r,z nanomaggy stamp of a mock survey at any (ra, dec).

All pixels live on one global pixel grid (a TAN projection about the survey centre at
0.262 arcsec/pixel, like a coadd), so the same sky pixel has the same value in every cutout
that contains it. Per stamp:

1. every catalogued source within the stamp (plus a margin) is painted at its true position:
   Sersic galaxies with their structure (spiral arms, bars, star-forming rings, tidal shells,
   blue companions, tails, clumps, edge-on discs), stars, bright-star spikes/halos/ghosts, and
   lensed sources (the source image ray-traced through the lens's full mass model); an
   uncatalogued faint galaxy background (catalog limit to r = 27, drawn per sky cell from a
   counter-based stream) and residual satellite trails join them;
2. each band is convolved with the true PSF of the source's brick (an elliptical Moffat core with
   its own beta plus a wing; the catalog's PSFSIZE reports its FWHM with scatter);
3. cosmic-ray residuals (where a band has <= 2 exposures) and bleed trails of saturated stars;
4. noise: white noise per global pixel whose sigma follows the exposure map (cells of a brick
   with their own exposure counts) and is calibrated so that the catalog's PSFDEPTH is the
   point-source flux inverse variance of these pixels, plus source shot noise; drawn from a
   counter-based hash of the global pixel (hence consistent between cutouts), then correlated
   by the 3-tap resampling kernel of coadds;
5. the stamp is resampled onto the requested WCS (TAN about the requested centre, north up): every
   output pixel's sky position, projected onto the global grid, Lanczos-3 interpolated
   (:mod:`lensaudit.survey.resample`), as the real service resamples coadds; ``write_mock_coadds``
   writes the same grid as DR10-format coadd files, from which the coadd reader cuts the same stamps.
Pixels outside the footprint are 0.0 (the service's convention); no overlap -> None.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import fft as sp_fft
from scipy.ndimage import correlate1d

from lensaudit.artifacts import MockSurveyDir
from lensaudit.lensing import light
from lensaudit.mock import morphology as mo
from lensaudit.mock.kernels import add_pixel_noise, deposit, exposure_maps, pixel_map_grid
from lensaudit.mock.layout import CELLS, MockSurvey, brick_cell, tan_deproject, tan_project
from lensaudit.mock.lensmodel import arc_box_radius_pix, arc_image
from lensaudit.mock.psf import CORR_KERNEL, psf_image
from lensaudit.mock.request import CutoutRequest, NoOverlapError
from lensaudit.sources.procedural import SourceImage, colour_weights, render_rich, render_simple, stamp_source
from lensaudit.survey.constants import BRICK_SIZE_DEG, MAG_ZEROPOINT, PIXEL_SCALE_ARCSEC
from lensaudit.survey.resample import lanczos3_at
from lensaudit.utils.hashing import splitmix64
from lensaudit.utils.seeds import derive_seed
from lensaudit.utils.seeds import rng as seed_stream

BANDS = "grz"
#: Sky background per pixel (nanomaggies) setting the shot-noise gain: g 22.0, r 21.0, z 19.9 mag/arcsec^2.
SKY_NMGY_PER_PIX = {b: 10 ** (-0.4 * (m - MAG_ZEROPOINT)) * PIXEL_SCALE_ARCSEC**2 for b, m in (("g", 22.0), ("r", 21.0), ("z", 19.9))}
MARGIN = 40  # pixels of sources beyond the stamp edge that can still contribute
PAD = 5      # pixels around the stamp for correlation and Lanczos resampling
PSF_HALF = 20  # half size of the PSF image (41 x 41)
#: Faint-background cell side (global pixels) and counts: dN/dm = FAINT_NORM 10^(0.3 (m - 24)) per deg^2 per mag.
FAINT_CELL = 128
FAINT_NORM = 4.0e4
FAINT_SLOPE = 0.3


def _hashed_normal_keys(gx: np.ndarray, gy: np.ndarray, keys: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        pix = (np.asarray(gx).astype(np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
               ^ np.asarray(gy).astype(np.int64).astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
        kk = keys.astype(np.uint64) * np.uint64(0x165667B19E3779F9)
        a = splitmix64(pix[None] ^ kk.reshape((-1,) + (1,) * pix.ndim))
        b = splitmix64(a)
    u1 = ((a >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    u2 = (b >> np.uint64(11)).astype(np.float64) / 2.0**53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)


def hashed_normal(gx: np.ndarray, gy: np.ndarray, key: int) -> np.ndarray:
    """Standard normal deviates that are a pure function of (integer pixel, key): splitmix64 + Box-Muller.

    Written by hand because numpy's generators are sequential: a counter-based draw is what
    makes two overlapping cutouts agree pixel for pixel.
    """
    return _hashed_normal_keys(gx, gy, np.array([key]))[0]


def hashed_normal3(gx: np.ndarray, gy: np.ndarray, key: int) -> np.ndarray:
    """(3, ...) deviates for keys ``key``, ``key + 1``, ``key + 2`` (one per band), as :func:`hashed_normal`."""
    return _hashed_normal_keys(gx, gy, np.arange(key, key + 3))


class Renderer:
    """Callable ``render(CutoutRequest) -> (cube, None) | None`` over a :class:`MockSurvey`."""

    def __init__(self, survey: MockSurvey):
        self.survey = survey
        cfg = survey.meta["config"]
        proj = survey.meta["projection"]
        self.ra0, self.dec0 = proj["ra0"], proj["dec0"]
        self.seed = int(cfg["seed"])
        #: key of the counter-based pixel noise (its own seed stream; three consecutive keys, one per band)
        self.noise_key = derive_seed(self.seed, "mock.pixel_noise")
        self.faint_limit = float(cfg.get("faint_background_r_mag", 0.0) or 0.0)
        self.catalog_limit = float(cfg["galaxy_r_mag_range"][1])
        art = cfg.get("artefacts", {}) or {}
        self.cr_per_deg2 = float(art.get("cosmic_rays_per_deg2", 0.0))
        self.bleed_mag = float(art.get("bleed_star_max_mag", -99.0))
        # sources in order of gx (stable), as per-column numpy arrays: a pandas row lookup per painted source cost a
        # third of the render time, and a sorted copy of the whole table (``src``) is only built when asked for
        self._order = np.argsort(survey.sources["gx"].to_numpy(), kind="stable")
        self._cols = {c: survey.sources[c].to_numpy()[self._order] for c in survey.sources.columns}
        self._src: pd.DataFrame | None = None
        self._gx = self._cols["gx"]
        self._gy = self._cols["gy"]
        self._flux = np.stack([self._cols[f"flux_{b}"] for b in BANDS], axis=1)
        self._brick_idx = self._cols["brick_idx"]
        self.lenses = {r["id"]: r for r in survey.lenses.to_dict("records")}
        self._sources: OrderedDict[str, SourceImage] = OrderedDict()
        self._psf_spectra: OrderedDict[tuple, np.ndarray] = OrderedDict()
        #: the stamp library half of the true lenses' sources (None: procedural sources)
        self.library = None
        if (cfg.get("lenses") or {}).get("sources", "procedural") != "procedural":
            from lensaudit.sources.library import StampLibrary

            self.library = StampLibrary.read(MockSurveyDir(survey.root).source_library)
        b = survey.bricks
        self.fp = survey.meta["footprint"]
        self._nside = int(round(np.sqrt(len(b))))
        self._psfp = np.stack([b[[f"psf_core_fwhm_pix_{x}", f"psf_beta_{x}", f"psf_wing_{x}", f"psf_e_{x}",
                                  f"psf_angle_{x}"]].to_numpy() for x in BANDS], axis=1)       # (n_bricks, 3, 5)
        self._sigw = np.stack([b[f"sigma_white_{x}"].to_numpy() for x in BANDS], axis=1)     # (n_bricks, 3)
        self._nobs_mean = np.stack([b[f"nobs_mean_{x}"].to_numpy() for x in BANDS], axis=1)
        self._ra1, self._dec1 = b["ra1"].to_numpy(), b["dec1"].to_numpy()                        # brick corners, deg
        self._cells = survey.exposure                                                         # (n_bricks, 3, 4, 4)
        tr = survey.artefacts
        self._trails = tr[tr["kind"] == "satellite_trail"].to_dict("records") if len(tr) else []
        self._sky = np.array([SKY_NMGY_PER_PIX[b] for b in BANDS])                            # nmgy / pixel
        self._bleeders = np.flatnonzero(self._cols["is_star"] & (self._cols["rmag"] < self.bleed_mag))
        # bleed-trail half-lengths (pixels), one scalar power each (an array power may round differently)
        self._bleed_len = np.array([8.0 * 10 ** (0.4 * (self.bleed_mag - self._cols["rmag"][k])) for k in self._bleeders])

    @property
    def src(self) -> pd.DataFrame:
        """The survey's sources in the renderer's order (by gx, stable), index 0..n-1."""
        if self._src is None:
            self._src = self.survey.sources.iloc[self._order].reset_index(drop=True)
        return self._src

    def rows_of(self, ids) -> np.ndarray:
        """Row of each source id in :attr:`src`'s order (the ``k`` of :meth:`host_light`); a KeyError names ids
        the survey does not hold. Builds no table of the whole survey (:attr:`src` reorders every column)."""
        ids = np.asarray(ids, dtype=object)
        rows = pd.Index(self._cols["id"]).get_indexer(ids)
        if (rows < 0).any():
            raise KeyError(f"mock survey {self.survey.root}: no source {ids[rows < 0][:5].tolist()}")
        return rows

    def source_rows(self, rows: np.ndarray) -> pd.DataFrame:
        """``src.iloc[rows]`` (every column, the same values; index 0..len(rows)-1), from the renderer's columns."""
        return pd.DataFrame({c: v[rows] for c, v in self._cols.items()})

    # -------------------------------------------------------------- geometry
    def brick_cell_of(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(brick index, cell column, cell row) of sky positions; brick -1 outside the footprint."""
        return brick_cell(ra, dec, self.fp, self._nside, CELLS)

    def brick_of(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Brick index of sky positions, -1 outside the footprint."""
        return self.brick_cell_of(ra, dec)[0]

    def pixel_map(self, xx: np.ndarray, yy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(brick, cell column, cell row) of every pixel of global grids ``xx``, ``yy``."""
        ra, dec = tan_deproject(xx.ravel(), yy.ravel(), self.ra0, self.dec0)
        return tuple(a.reshape(xx.shape) for a in self.brick_cell_of(ra, dec))

    def pixel_map_region(self, x0: int, y0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`pixel_map` of the global pixels ``[y0, y0 + h) x [x0, x0 + w)`` (one compiled pass)."""
        return pixel_map_grid(x0, y0, h, w, self.ra0, self.dec0, self.fp, self._nside, CELLS, PIXEL_SCALE_ARCSEC,
                              BRICK_SIZE_DEG)

    def nobs_map(self, bidx: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        """(3, ...) exposure count per band at pixels with brick/cell indices (1 outside the footprint)."""
        bs = np.where(bidx >= 0, bidx, 0)
        out = np.stack([self._cells[bs, k, cy, cx] for k in range(3)]).astype(float)
        return np.where(bidx[None] >= 0, out, 1.0)

    def sigma_map(self, bidx: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        """(3, ...) white-noise sigma per pixel (nanomaggies, before correlation) from the exposure map."""
        bs = np.where(bidx >= 0, bidx, 0)
        sig = np.moveaxis(self._sigw[bs], -1, 0) * np.sqrt(np.moveaxis(self._nobs_mean[bs], -1, 0)
                                                            / self.nobs_map(bidx, cx, cy))
        return np.where(bidx[None] >= 0, sig, 0.0)

    def exposure_maps(self, bidx: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(:meth:`nobs_map`, :meth:`sigma_map`) in one compiled pass, bit-identical."""
        return exposure_maps(bidx, cx, cy, self._cells, self._sigw, self._nobs_mean)

    @lru_cache(maxsize=2048)  # noqa: B019 - renderer lives as long as the survey (40 KB per brick)
    def psf3(self, brick: int) -> np.ndarray:
        """(3, 41, 41) true g, r, z PSF images of a brick (not the catalog's PSFSIZE)."""
        return np.stack([psf_image(*map(float, self._psfp[brick, k])) for k in range(3)])

    def psf3_spectrum(self, brick: int, shape: tuple[int, int]) -> np.ndarray:
        """(3, ny, nx // 2 + 1) real FFT of :meth:`psf3` on a (ny, nx) grid, its centre at pixel (0, 0) (cached)."""
        key = (int(brick), tuple(shape))
        got = self._psf_spectra.get(key)
        if got is None:
            pad = np.zeros((3, *shape))
            pad[:, : 2 * PSF_HALF + 1, : 2 * PSF_HALF + 1] = self.psf3(brick)
            got = sp_fft.rfft2(np.roll(pad, (-PSF_HALF, -PSF_HALF), axis=(1, 2)))
            self._psf_spectra[key] = got
            if len(self._psf_spectra) > 256:
                self._psf_spectra.popitem(last=False)
        return got

    def convolve_psf(self, layer: np.ndarray, brick: int) -> np.ndarray:
        """(3, H - 2 e, W - 2 e) interior of ``layer`` (3, H, W) convolved with brick's PSF (e = PSF_HALF):
        ``fftconvolve(layer, psf3(brick), mode="same", axes=(1, 2))[:, e:-e, e:-e]`` with the PSF's spectrum
        cached. A circular convolution on any grid at least the layer's size wraps only within e pixels of its
        edges, which are cut off, so the grid is the next fast FFT size of the layer, not of layer + PSF."""
        e = PSF_HALF
        h, w = layer.shape[1] - 2 * e, layer.shape[2] - 2 * e
        shape = (sp_fft.next_fast_len(layer.shape[1], real=True), sp_fft.next_fast_len(layer.shape[2], real=True))
        conv = sp_fft.irfft2(sp_fft.rfft2(layer, s=shape) * self.psf3_spectrum(brick, shape), s=shape)
        return conv[:, e : e + h, e : e + w]

    def source_image(self, cid: str) -> SourceImage:
        """The source-plane image of lens ``cid`` (drawn from its own seed stream; cached)."""
        img = self._sources.get(cid)
        if img is None:
            img = lens_source_image(self.lenses[cid], self.seed, self.library)
            self._sources[cid] = img
            if len(self._sources) > 512:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(cid)
        return img

    # -------------------------------------------------------------- painting
    def host_light(self, k: int, dx_pix: np.ndarray, dy_pix: np.ndarray) -> np.ndarray:
        """(3, H, W) light of galaxy k alone (its Sersic body, no arc or feature; before the PSF) on pixels
        whose centres sit at (dx_pix, dy_pix) pixels from it. Bookkeeping use: normalised over a full
        box as :meth:`_paint` does, sampled wherever the pixels are."""
        s = _Row(self._cols, k)
        q, phi = _q_phi(s["shape_e1"], s["shape_e2"])
        re_pix = max(s["shape_r"] / PIXEL_SCALE_ARCSEC, 0.3)
        rad = int(min(max(6 * re_pix, 6), MARGIN))
        yy, xx = np.mgrid[-rad : rad + 1, -rad : rad + 1].astype(float)
        tot = light.sersic(xx, yy, re_pix, float(s["sersic"]), q, phi, soft=0.5).sum()
        prof = light.sersic(dx_pix, dy_pix, re_pix, float(s["sersic"]), q, phi, soft=0.5)
        prof = np.where((np.abs(dx_pix) <= rad + 0.5) & (np.abs(dy_pix) <= rad + 0.5), prof, 0.0)
        return self._flux[k][:, None, None] * (prof / tot)[None]

    def _paint(self, img: np.ndarray, x0: int, y0: int, k: int) -> None:
        """Add source k (all bands) to img (3, H, W) whose [0, 0] is global pixel (x0, y0)."""
        s = _Row(self._cols, k)
        gx, gy = self._gx[k] - x0, self._gy[k] - y0
        H, W = img.shape[1:]
        flux = self._flux[k]
        kind = s["kind"]
        if s["type"] == "PSF":
            deposit(img, np.array([gx]), np.array([gy]), flux[:, None])
            if kind == "star_artefact":
                self._paint_artefact(img, gx, gy, flux, s)
            return
        q, phi = _q_phi(s["shape_e1"], s["shape_e2"])
        re_pix = max(s["shape_r"] / PIXEL_SCALE_ARCSEC, 0.3)
        rad = int(min(max(6 * re_pix, 6), MARGIN))
        box, inner, xx, yy = _box(gx, gy, rad, W, H)
        if box is None:
            return
        frac = float(s["conf_frac"]) if kind not in ("normal", "lens", "edge_on") and np.isfinite(s["conf_frac"]) else 0.0
        prof = light.sersic(xx, yy, re_pix, float(s["sersic"]), q, phi, soft=0.5)
        tot = prof.sum()
        if tot > 0:
            img[(slice(None), *box)] += (flux * (1 - frac))[:, None, None] * (prof[inner] / tot)[None]
        if kind == "lens":
            self._paint_arc(img, gx, gy, s["id"])
        elif frac > 0:
            f_r = flux[1] * frac
            self._paint_feature(img, gx, gy, f_r * colour_weights(s["conf_gr"], s["conf_rz"]), s, kind, q, phi, W, H)

    def _paint_feature(self, img, gx, gy, flux, s, kind, q, phi, W, H) -> None:
        rp = s["conf_radius"] / PIXEL_SCALE_ARCSEC
        ph = float(s["conf_phase"])
        n = int(s["conf_n"]) if np.isfinite(s["conf_n"]) else 2
        box, inner, xx, yy = _box(gx, gy, int(min(rp * 2.5 + 6, MARGIN)), W, H)
        if box is None:
            return
        if kind == "spiral":
            f = mo.spiral(xx, yy, rp * 0.6, 2, 0.35, ph, max(q, 0.6), phi)
            if s["conf_bar"]:
                f = f / f.sum() + 0.4 * _unit(light.sersic(xx, yy, rp * 0.35, 0.5, 0.25, phi + ph))
        elif kind == "bar":
            f = light.sersic(xx, yy, rp * 0.4, 0.5, 0.25, phi + ph)
        elif kind == "ring":
            f = mo.ring(xx, yy, rp, max(rp * 0.12, 0.8), max(q, 0.7), phi, clumpiness=0.5, phase=ph)
        elif kind == "shell":
            f = mo.shells(xx, yy, rp, n, ph, max(rp * 0.08, 0.7))
        elif kind == "companion":
            f = mo.tangential_blobs(xx, yy, rp, n, ph, seed_stream(self.seed, "mock.companions", str(s["id"])))
        elif kind == "merger":
            f = mo.arc_tail(xx, yy, rp, max(rp * 0.15, 0.8), ph, 2.2) + 0.6 * light.gaussian(
                xx - rp * np.cos(ph + 3), yy - rp * np.sin(ph + 3), max(rp * 0.25, 1.0))
        else:  # blue clumpy: knots scattered over the disc
            rng = seed_stream(self.seed, "mock.blue_clumpy_knots", str(s["id"]))
            k = rng.integers(4, 9)
            kx, ky = rng.normal(0, rp / 2, k), rng.normal(0, rp / 2, k)
            f = light.knots_profile(xx, yy, kx, ky, np.full(k, 0.9), rng.exponential(1, k))
        tot = f.sum()
        if tot > 0:
            img[(slice(None), *box)] += flux[:, None, None] * (f[inner] / tot)[None]

    def _paint_artefact(self, img, gx, gy, flux, s) -> None:
        H, W = img.shape[1:]
        box, inner, xx, yy = _box(gx, gy, MARGIN, W, H)
        if box is None:
            return
        ph = s["conf_phase"]
        sp = mo.spikes(xx, yy, 12.0, 0.7, ph)
        halo = (1 + (xx**2 + yy**2) / 36.0) ** -1.5
        ghost = mo.ring(xx - 10 * np.cos(ph), yy - 10 * np.sin(ph), 6.0, 1.2)
        for f, frac in ((sp, 0.02), (halo, 0.03), (ghost, 0.002)):
            img[(slice(None), *box)] += (flux * frac)[:, None, None] * (f[inner] / f.sum())[None]

    def _paint_arc(self, img, gx, gy, cid: str) -> None:
        """The lensed images of lens ``cid`` (pixels relative to the lens centre at (gx, gy) of img)."""
        lp = self.lenses[cid]
        src = self.source_image(cid)
        H, W = img.shape[1:]
        rad = arc_box_radius_pix(lp, src)
        box, inner, xx, yy = _box(gx, gy, rad, W, H)
        if box is None:
            return
        arc = arc_image(lp, src, xx[inner], yy[inner])
        img[(slice(None), *box)] += arc

    def _paint_faint(self, layers: dict, x0: int, y0: int, h: int, w: int, e: int) -> None:
        """The uncatalogued galaxy background: per FAINT_CELL sky cell, a counter-based draw of faint
        galaxies (catalog limit to ``faint_background_r_mag``), deposited as points in their brick's layer."""
        if self.faint_limit <= self.catalog_limit:
            return
        lo, hi = self.catalog_limit, self.faint_limit
        per_mag_deg2 = FAINT_NORM / (FAINT_SLOPE * np.log(10)) * (10 ** (FAINT_SLOPE * (hi - 24)) -
                                                                  10 ** (FAINT_SLOPE * (lo - 24)))
        lam = per_mag_deg2 * (FAINT_CELL * PIXEL_SCALE_ARCSEC / 3600) ** 2
        a, b = 10 ** (FAINT_SLOPE * lo), 10 ** (FAINT_SLOPE * hi)
        # each cell's draws come from its own stream, in the same order as ever; what follows the draws is
        # elementwise, so it runs once over all cells' galaxies, and the deposits go in the order of a
        # per-cell loop (cell by cell, bricks ascending within a cell): the same sums in the same order
        draws, cell_of = [], []
        for cy in range(int(np.floor((y0 - e) / FAINT_CELL)), int(np.floor((y0 + h + e) / FAINT_CELL)) + 1):
            for cx in range(int(np.floor((x0 - e) / FAINT_CELL)), int(np.floor((x0 + w + e) / FAINT_CELL)) + 1):
                rng = seed_stream(self.seed, "mock.faint", cx + 2**20, cy + 2**20)
                n = rng.poisson(lam)
                fx = cx * FAINT_CELL + rng.random(n) * FAINT_CELL
                fy = cy * FAINT_CELL + rng.random(n) * FAINT_CELL
                u = rng.random(n)
                gr, rz = rng.normal(0.45, 0.3, n), rng.normal(0.35, 0.3, n)
                draws.append((fx, fy, u, gr, rz))
                cell_of.append(np.full(n, len(cell_of)))
        fx, fy, u, gr, rz = (np.concatenate(c) for c in zip(*draws, strict=True))
        keep = (fx > x0 - e) & (fx < x0 + w + e) & (fy > y0 - e) & (fy < y0 + h + e)
        if not keep.any():
            return
        fx, fy, u, gr, rz, cell = fx[keep], fy[keep], u[keep], gr[keep], rz[keep], np.concatenate(cell_of)[keep]
        mag = np.log10(a + u * (b - a)) / FAINT_SLOPE
        flux = 10 ** (-0.4 * (mag - MAG_ZEROPOINT)) * colour_weights(gr, rz)
        br = self.brick_of(*tan_deproject(fx, fy, self.ra0, self.dec0))
        on = br >= 0
        order = np.lexsort((br[on], cell[on]))                       # stable: each group keeps its draw order
        idx = np.flatnonzero(on)[order]
        groups = np.flatnonzero(np.diff(cell[idx]) | np.diff(br[idx])) + 1
        for g in np.split(idx, groups):
            brick = int(br[g[0]])
            layer = layers.setdefault(brick, np.zeros((3, h + 2 * e, w + 2 * e)))
            deposit(layer, fx[g] - (x0 - e), fy[g] - (y0 - e), flux[:, g])

    def _paint_trails(self, layers: dict, x0: int, y0: int, h: int, w: int, e: int, bidx: np.ndarray) -> None:
        """Residual satellite trails (one band each): a line of constant surface brightness before the PSF,
        confined to the brick whose coadd it is in."""
        if not self._trails:
            return
        lo, hi = int(bidx.min()), int(bidx.max())
        trails = [t for t in self._trails if lo <= int(t["brick_idx"]) <= hi and (bidx == int(t["brick_idx"])).any()]
        if not trails:
            return
        yy, xx = np.mgrid[y0 - e : y0 + h + e, x0 - e : x0 + w + e]
        pad_bricks = self.pixel_map_region(x0 - e, y0 - e, h + 2 * e, w + 2 * e)[0]
        for t in trails:
            d = np.abs(-(xx - t["gx"]) * np.sin(t["angle"]) + (yy - t["gy"]) * np.cos(t["angle"]))
            line = np.clip(1.0 - d / t["width_pix"], 0, None) * (pad_bricks == int(t["brick_idx"]))
            if not line.any():
                continue
            layer = layers.setdefault(int(t["brick_idx"]), np.zeros((3, h + 2 * e, w + 2 * e)))
            layer[int(t["band"])] += t["amplitude_nmgy"] * line

    def _paint_after_psf(self, img: np.ndarray, x0: int, y0: int, bidx: np.ndarray, cx: np.ndarray,
                         cy: np.ndarray, nobs: np.ndarray, sig: np.ndarray) -> None:
        """Cosmic-ray residuals (cells with <= 2 exposures in a band) and bleed trails of saturated stars."""
        h, w = img.shape[1:]
        if self.cr_per_deg2 > 0:
            cell_area = (BRICK_SIZE_DEG / CELLS) ** 2
            shallow = nobs.min(0) <= 2
            # the (brick, cell) keys of shallow pixels, inserted in raster order of first appearance: the set (and
            # its iteration order) that inserting every shallow pixel's key builds
            code = (bidx[shallow] * CELLS + cy[shallow]) * CELLS + cx[shallow]
            _, first = np.unique(code, return_index=True)
            first = np.sort(first)
            keys = set(zip(bidx[shallow][first].tolist(), cx[shallow][first].tolist(), cy[shallow][first].tolist(),
                           strict=True))
            for brick, ccx, ccy in keys:
                if brick < 0:
                    continue
                for band in range(3):
                    if self._cells[brick, band, ccy, ccx] > 2:
                        continue
                    rng = seed_stream(self.seed, "mock.cosmic_rays", int(brick), band, int(ccy * CELLS + ccx))
                    n = rng.poisson(self.cr_per_deg2 * cell_area)
                    if not n:
                        continue
                    # positions inside the cell, as global pixels (the cell's corners projected)
                    ra = self._ra1[brick] + (ccx + rng.random(n)) * BRICK_SIZE_DEG / CELLS
                    dec = self._dec1[brick] + (ccy + rng.random(n)) * BRICK_SIZE_DEG / CELLS
                    px, py = tan_project(ra, dec, self.ra0, self.dec0)
                    amp = rng.uniform(10, 40, n)
                    for x, y, a in zip(np.round(px).astype(int) - x0, np.round(py).astype(int) - y0, amp, strict=True):
                        if 0 <= y < h and 0 <= x < w:
                            img[band, y, x] += a * max(sig[band, y, x], 1e-6)
        bgx, bgy = self._gx[self._bleeders] - x0, self._gy[self._bleeders] - y0
        lengths = self._bleed_len
        near = (-2 <= bgx) & (bgx < w + 2) & (-lengths <= bgy) & (bgy < h + lengths)
        for gx, gy, length, k in zip(bgx[near], bgy[near], lengths[near], self._bleeders[near], strict=True):
            col = int(round(gx))
            if 0 <= col < w:
                rows = np.arange(max(0, int(gy - length)), min(h, int(gy + length) + 1))
                level = self._flux[k][:, None] * 2e-3 / (1 + np.abs(rows - gy) / length)[None]
                img[:, rows, col] += level

    # -------------------------------------------------------------- render
    def render_region(self, x0: int, y0: int, w: int, h: int, noise: bool = True) -> np.ndarray | None:
        """Image (3, h, w) on the global grid with [0, 0] at global pixel (x0, y0); None if off-footprint."""
        bidx, cx, cy = self.pixel_map_region(x0, y0, h, w)
        if (bidx < 0).all():
            return None
        lo = np.searchsorted(self._gx, x0 - MARGIN)
        hi = np.searchsorted(self._gx, x0 + w + MARGIN)
        cand = np.arange(lo, hi)
        cand = cand[(self._gy[cand] > y0 - MARGIN) & (self._gy[cand] < y0 + h + MARGIN)]
        src_bricks = self._brick_idx[cand]
        e = PSF_HALF  # paint beyond the region so that convolution near its edge sees all the light
        layers: dict[int, np.ndarray] = {}
        for brick in np.unique(src_bricks):
            layer = layers.setdefault(int(brick), np.zeros((3, h + 2 * e, w + 2 * e)))
            for k in cand[src_bricks == brick]:
                self._paint(layer, x0 - e, y0 - e, int(k))
        self._paint_faint(layers, x0, y0, h, w, e)
        self._paint_trails(layers, x0, y0, h, w, e, bidx)
        img = np.zeros((3, h, w))
        for brick, layer in layers.items():
            img += self.convolve_psf(layer, brick)
        valid = bidx >= 0
        nobs, sig = self.exposure_maps(bidx, cx, cy)
        self._paint_after_psf(img, x0, y0, bidx, cx, cy, nobs, sig)
        if noise:   # img + sqrt(sig^2 (1 + max(img, 0) / sky)) * hashed_normal3(xx, yy, key), 0 off the footprint
            return add_pixel_noise(img, sig, bidx, x0, y0, self.noise_key, self._sky)
        return np.where(valid[None], img, 0.0)

    def __call__(self, req: CutoutRequest, noise: bool = True):
        if abs(req.pixscale - PIXEL_SCALE_ARCSEC) > 1e-6:
            raise NoOverlapError(f"mock survey renders native 0.262 arcsec pixels only, not {req.pixscale}")
        cx, cy = tan_project(req.ra, req.dec, self.ra0, self.dec0)
        ix, iy = int(np.floor(float(cx) + 0.5)), int(np.floor(float(cy) + 0.5))
        hw, hh = (req.width - 1) // 2, (req.height - 1) // 2
        x0, y0 = ix - hw - PAD, iy - hh - PAD
        W, H = req.width + 2 * PAD, req.height + 2 * PAD
        region = self.render_region(x0, y0, W, H, noise=noise)
        if region is None:
            return None
        # the coadd: correlated noise (and signal) as in resampled coadds, a separable 3-tap kernel on the grid
        coadd = _sep_filter(region, CORR_KERNEL, CORR_KERNEL)
        # the requested stamp's WCS (TAN about the requested centre, north up, CRPIX at its centre) gives every
        # output pixel's sky position; the coadd is Lanczos-3 resampled there, as the real service resamples
        # its coadds (and as the coadd reader does from coadd files: the same function, the same numbers)
        yy, xx = np.mgrid[0 : req.height, 0 : req.width]
        gx, gy = tan_to_tan((xx - (req.width - 1) / 2).ravel(), (yy - (req.height - 1) / 2).ravel(), req.ra, req.dec,
                            self.ra0, self.dec0)
        lx, ly = gx - x0, gy - y0
        planes_last = np.ascontiguousarray(np.moveaxis(coadd, 0, -1), np.float32)  # (H, W, 3): 3 bands per gather
        cube = lanczos3_at(planes_last, lx, ly).T.reshape(3, req.height, req.width)
        # off-footprint pixels stay exactly 0.0 (those whose nearest grid pixel is off the footprint)
        near = region[:, np.clip(np.rint(ly), 0, H - 1).astype(int), np.clip(np.rint(lx), 0, W - 1).astype(int)]
        cube = np.where(near.reshape(3, req.height, req.width) == 0.0, 0.0, cube)
        bands = {"g": 0, "r": 1, "z": 2}
        planes = [cube[bands[b]] if b in bands else np.zeros_like(cube[0]) for b in req.bands]  # no i in the mock
        return np.stack(planes).astype(np.float32), None


def _tangent_basis(ra_deg: float, dec_deg: float) -> np.ndarray:
    """(3, 3) columns: east, north and the tangent point's direction (unit vectors) at (ra, dec)."""
    a, d = np.deg2rad(ra_deg), np.deg2rad(dec_deg)
    return np.array([[-np.sin(a), -np.sin(d) * np.cos(a), np.cos(d) * np.cos(a)],
                     [np.cos(a), -np.sin(d) * np.sin(a), np.cos(d) * np.sin(a)],
                     [0.0, np.cos(d), np.sin(d)]])


def tan_to_tan(x, y, ra_c: float, dec_c: float, ra0: float, dec0: float, pixscale: float = PIXEL_SCALE_ARCSEC):
    """Pixel offsets (x west-positive, y north) in the TAN projection about (ra_c, dec_c) to those of the TAN
    projection about (ra0, dec0): ``tan_project(tan_deproject(x, y, ra_c, dec_c), ra0, dec0)`` without a
    trigonometric call per point (gnomonic projections are related by a projective map: one 3 x 3 matrix)."""
    k = np.rad2deg(1.0) * 3600.0 / pixscale
    m = _tangent_basis(ra0, dec0).T @ _tangent_basis(ra_c, dec_c)
    xi, eta = -np.asarray(x, float) / k, np.asarray(y, float) / k
    d0 = m[0, 0] * xi + m[0, 1] * eta + m[0, 2]
    d1 = m[1, 0] * xi + m[1, 1] * eta + m[1, 2]
    d2 = m[2, 0] * xi + m[2, 1] * eta + m[2, 2]
    return -d0 / d2 * k, d1 / d2 * k


def _unit(a: np.ndarray) -> np.ndarray:
    s = a.sum()
    return a / s if s > 0 else a


def _sep_filter(img: np.ndarray, kx: np.ndarray, ky: np.ndarray, taps_from: int | None = None) -> np.ndarray:
    """Separable correlation along x then y (periodic edges); taps centred unless ``taps_from`` gives the first offset.

    ``out[i] = sum_t k[t] * img[i + start + t]``.
    """
    out = img
    for axis, k in ((2, kx), (1, ky)):
        start = -(len(k) // 2) if taps_from is None else taps_from
        # correlate1d centres the kernel at len//2; the origin shifts it to start at ``start``
        out = correlate1d(out, k, axis=axis, mode="wrap", origin=-(start + len(k) // 2))
    return out


class _Row:
    """Read-only view of one source: ``row[column]`` from per-column arrays (a cheap pandas-row stand-in)."""

    __slots__ = ("_cols", "_k")

    def __init__(self, cols: dict, k: int):
        self._cols, self._k = cols, k

    def __getitem__(self, name: str):
        return self._cols[name][self._k]


def _q_phi(e1: float, e2: float) -> tuple[float, float]:
    e = min(float(np.hypot(e1, e2)), 0.95)
    return (1 - e) / (1 + e), 0.5 * float(np.arctan2(e2, e1))


def _box(gx: float, gy: float, rad: int, W: int, H: int):
    """Full (unclipped) box around a source: (image slices, box slices, xx, yy of the full box).

    Profiles are evaluated and normalised on the full box and only the part inside the image
    is added, so a source's light does not depend on where the stamp edge cuts it.
    """
    ix, iy = int(round(gx)), int(round(gy))
    xa, xb = max(ix - rad, 0), min(ix + rad + 1, W)
    ya, yb = max(iy - rad, 0), min(iy + rad + 1, H)
    if xa >= xb or ya >= yb:
        return None, None, None, None
    n = 2 * rad + 1                         # = np.mgrid[iy - rad : iy + rad + 1, ix - rad : ix + rad + 1] - (gy, gx),
    xx, yy = np.empty((n, n)), np.empty((n, n))             # without mgrid's slower construction
    xx[:] = np.arange(ix - rad, ix + rad + 1) - gx
    yy[:] = (np.arange(iy - rad, iy + rad + 1) - gy)[:, None]
    inner = (slice(ya - (iy - rad), yb - (iy - rad)), slice(xa - (ix - rad), xb - (ix - rad)))
    return (slice(ya, yb), slice(xa, xb)), inner, xx, yy


def load_renderer(root) -> Renderer:
    return Renderer(MockSurvey.load(root))


def lens_source_image(lp, seed: int, library=None) -> SourceImage:
    """The source-plane image of the mock lens with parameters ``lp`` in a survey of ``seed``: a stamp of
    ``library`` (the survey's source library, when its lenses take real galaxies), else the procedural galaxy of the
    lens's family, drawn from its own seed stream (what :meth:`Renderer.source_image` caches)."""
    if library is not None:
        return stamp_source(library, lp)
    if lp["family"] == "rich":
        return render_rich(lp, seed_stream(seed, "mock.source_texture", int(lp["src_seed"])))
    return render_simple(lp)


def mock_source_images(root, n: int) -> tuple[list[str], list[SourceImage], bool]:
    """(ids, source images, whether they are real galaxies) of the first ``n`` lenses of the mock survey at ``root``,
    read from its lens table and settings alone (not the whole survey a :class:`Renderer` loads): the report's
    figure of the mock's own sources."""
    import json

    md = MockSurveyDir(root)
    cfg = json.loads(md.survey_json.read_text())["config"]
    lenses = pd.read_parquet(md.lenses).head(n).to_dict("records")
    library = None
    if (cfg.get("lenses") or {}).get("sources", "procedural") != "procedural":
        from lensaudit.sources.library import StampLibrary

        library = StampLibrary.read(md.source_library)
    ids = [r["id"] for r in lenses]
    return ids, [lens_source_image(r, int(cfg["seed"]), library) for r in lenses], library is not None


__all__ = ["Renderer", "lens_source_image", "load_renderer", "mock_source_images", "hashed_normal", "hashed_normal3"]

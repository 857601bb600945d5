"""Renderer: the 101x101 g,r,z nanomaggy stamp of a mock survey at any (ra, dec).

All pixels live on one global pixel grid (a TAN projection about the survey centre at
0.262 arcsec/pixel, like a coadd), so the same sky pixel has the same value in every cutout
that contains it. Per stamp:

1. every source within the stamp (plus a margin) is painted at its true position: Sersic
   galaxies, stars, lensed arcs (SIE + shear, ray-traced with 2x2 supersampling through an
   analytic clumpy source) and confuser features (rings, spiral arms, tidal tails, clumps,
   spikes/halos/ghosts of bright stars);
2. each band is convolved with the PSF of the source's brick: a Moffat core (beta 3.5) plus
   a broad Moffat wing (beta 2.2, 10 percent of the light), FWHM from the brick's PSFSIZE;
3. noise: sky noise whose per-pixel sigma follows the brick's PSFDEPTH
   (sigma = 1/sqrt(psfdepth * NEA)) plus source shot noise, drawn from a counter-based hash of
   the global pixel (hence consistent between cutouts), then correlated by a 3-tap resampling
   kernel as in Lanczos-resampled coadds;
4. the stamp is resampled onto the requested centre with a Lanczos-3 sub-pixel shift, as the
   real service resamples coadds onto the requested WCS.
Pixels outside the footprint are 0.0 (the service's convention); no overlap -> None.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import correlate1d
from scipy.signal import fftconvolve

from lensaudit.lensing import light, ray_trace
from lensaudit.mock import morphology as mo
from lensaudit.mock.population import MAX_KNOTS
from lensaudit.mock.request import CutoutRequest, NoOverlapError
from lensaudit.mock.survey import MockSurvey, tan_deproject, tan_project
from lensaudit.survey.constants import BRICK_SIZE_DEG, PIXEL_SCALE_ARCSEC
from lensaudit.utils.hashing import splitmix64
from lensaudit.utils.seeds import derive_seed
from lensaudit.utils.seeds import rng as seed_stream

BANDS = "grz"
#: Sky background per pixel (nanomaggies) setting the shot-noise gain: g 22.0, r 21.0, z 19.9 mag/arcsec^2.
SKY_NMGY_PER_PIX = {b: 10 ** (-0.4 * (m - 22.5)) * PIXEL_SCALE_ARCSEC**2 for b, m in (("g", 22.0), ("r", 21.0), ("z", 19.9))}
#: 3-tap correlation kernel; per-axis variance factor 0.65, as measured for resampled coadds.
CORR_A = 0.1036
MARGIN = 40  # pixels of sources beyond the stamp edge that can still contribute
PAD = 5      # pixels around the stamp for correlation and Lanczos resampling
PSF_HALF = 20  # half size of the PSF image (41 x 41)


def moffat_psf(fwhm_pix: float, size: int = 41) -> np.ndarray:
    """Normalised PSF image: Moffat core (beta 3.5) + 10 percent broad Moffat wing (beta 2.2)."""
    c = size // 2
    y, x = np.mgrid[-c : c + 1, -c : c + 1]
    r2 = x * x + y * y

    def moffat(fwhm: float, beta: float) -> np.ndarray:
        alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
        m = (1 + r2 / alpha**2) ** (-beta)
        return m / m.sum()

    return (0.9 * moffat(fwhm_pix, 3.5) + 0.1 * moffat(2.0 * fwhm_pix, 2.2)).astype(np.float64)


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


def _lanczos3(f: float) -> np.ndarray:
    """6 taps (offsets -2..3) interpolating at fractional position f in [-0.5, 0.5]."""
    t = np.arange(-2, 4) - f
    w = np.sinc(t) * np.sinc(t / 3.0)
    return w / w.sum()


class Renderer:
    """Callable ``render(CutoutRequest) -> (cube, None) | None`` over a :class:`MockSurvey`."""

    def __init__(self, survey: MockSurvey):
        self.survey = survey
        proj = survey.meta["projection"]
        self.ra0, self.dec0 = proj["ra0"], proj["dec0"]
        self.seed = int(survey.meta["config"]["seed"])
        #: key of the counter-based pixel noise (its own seed stream; three consecutive keys, one per band)
        self.noise_key = derive_seed(self.seed, "mock.pixel_noise")
        s = survey.sources.sort_values("gx", kind="stable").reset_index(drop=True)
        self.src = s
        self._gx = s["gx"].to_numpy()
        self._gy = s["gy"].to_numpy()
        self._flux = s[[f"flux_{b}" for b in BANDS]].to_numpy()
        # per-column numpy arrays: a pandas row lookup per painted source cost a third of the render time
        self._cols = {c: s[c].to_numpy() for c in s.columns}
        self._brick_idx = s["brick_idx"].to_numpy()
        b = survey.bricks
        self.fp = survey.meta["footprint"]
        self._nside = int(round(np.sqrt(len(b))))
        self._sig = np.stack([1.0 / np.sqrt(b[f"psfdepth_{x}"].to_numpy() * 4 * np.pi *
                                            (b[f"psfsize_{x}"].to_numpy() / PIXEL_SCALE_ARCSEC / 2.3548) ** 2)
                              for x in BANDS], axis=1)  # (n_bricks, 3) native per-pixel sigma, nmgy
        self._fwhm_pix = np.stack([b[f"psfsize_{x}"].to_numpy() / PIXEL_SCALE_ARCSEC for x in BANDS], axis=1)

    # -------------------------------------------------------------- geometry
    def brick_of(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Brick index of sky positions, -1 outside the footprint."""
        col = np.floor((ra - self.fp["ra_min"]) / BRICK_SIZE_DEG).astype(int)
        row = np.floor((dec - self.fp["dec_min"]) / BRICK_SIZE_DEG).astype(int)
        ok = (col >= 0) & (col < self._nside) & (row >= 0) & (row < self._nside)
        return np.where(ok, row * self._nside + col, -1)

    def _region_bricks(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """Brick index of every pixel of a rectangular region (global pixel grids ``xx``, ``yy``).

        A brick is the projection of a simply connected sky patch, so when the region's whole
        border lies in one brick, so does its interior: deproject only the border then.
        """
        border = np.concatenate([np.c_[xx[0], yy[0]], np.c_[xx[-1], yy[-1]], np.c_[xx[:, 0], yy[:, 0]],
                                 np.c_[xx[:, -1], yy[:, -1]]])
        b = self.brick_of(*tan_deproject(border[:, 0], border[:, 1], self.ra0, self.dec0))
        if b[0] >= 0 and (b == b[0]).all():
            return np.full(xx.shape, b[0])
        ra, dec = tan_deproject(xx.ravel(), yy.ravel(), self.ra0, self.dec0)
        return self.brick_of(ra, dec).reshape(xx.shape)

    @lru_cache(maxsize=64)  # noqa: B019 - renderer lives as long as the survey
    def _psf3(self, brick: int) -> np.ndarray:
        """(3, 41, 41) g,r,z PSF images of a brick."""
        return np.stack([moffat_psf(float(self._fwhm_pix[brick, bi])) for bi in range(3)])

    # -------------------------------------------------------------- painting
    def _paint(self, img: np.ndarray, x0: int, y0: int, k: int) -> None:  # noqa: C901
        """Add source k (all bands) to img (3, H, W) whose [0, 0] is global pixel (x0, y0)."""
        s = _Row(self._cols, k)
        gx, gy = self._gx[k] - x0, self._gy[k] - y0
        H, W = img.shape[1:]
        flux = self._flux[k]
        kind = s["kind"]
        if s["type"] == "PSF":
            ix, iy = int(np.floor(gx)), int(np.floor(gy))
            fx, fy = gx - ix, gy - iy
            for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
                if 0 <= iy + dy < H and 0 <= ix + dx < W:
                    img[:, iy + dy, ix + dx] += flux * w
            if kind == "star_artefact":
                self._paint_artefact(img, gx, gy, flux, s)
            return
        q, phi = _q_phi(s["shape_e1"], s["shape_e2"])
        re_pix = max(s["shape_r"] / PIXEL_SCALE_ARCSEC, 0.3)
        rad = int(min(max(6 * re_pix, 6), MARGIN))
        box, inner, xx, yy = _box(gx, gy, rad, W, H)
        if box is None:
            return
        frac = s["conf_frac"] if kind in ("ring", "spiral", "merger", "blue_clumpy") and not np.isnan(s["conf_frac"]) else 0.0
        prof = light.sersic(xx, yy, re_pix, float(s["sersic"]), q, phi, soft=0.5)
        tot = prof.sum()
        if tot > 0:
            img[(slice(None), *box)] += (flux * (1 - frac))[:, None, None] * (prof[inner] / tot)[None]
        if kind == "lens":
            self._paint_arc(img, gx, gy, s, W, H)
        elif frac > 0:
            self._paint_feature(img, gx, gy, flux * frac, s, kind, W, H)

    def _paint_feature(self, img, gx, gy, flux, s, kind, W, H) -> None:
        rp = s["conf_radius"] / PIXEL_SCALE_ARCSEC
        ph = s["conf_phase"]
        box, inner, xx, yy = _box(gx, gy, int(min(rp * 2.5 + 4, MARGIN)), W, H)
        if box is None:
            return
        q, phi = _q_phi(s["shape_e1"], s["shape_e2"])
        colour = np.array([1.0, 1.0, 1.0])
        if kind == "ring":
            f = mo.ring(xx, yy, rp, max(rp * 0.12, 0.8), max(q, 0.7), phi, clumpiness=0.5, phase=ph)
            colour = np.array([1.6, 1.0, 0.6])  # blue star-forming ring
        elif kind == "spiral":
            f = mo.spiral(xx, yy, rp * 0.6, 2, 0.35, ph, max(q, 0.7), phi)
            colour = np.array([1.4, 1.0, 0.7])
        elif kind == "merger":
            f = mo.arc_tail(xx, yy, rp, max(rp * 0.15, 0.8), ph, 2.2) + 0.6 * light.gaussian(
                xx - rp * np.cos(ph + 3), yy - rp * np.sin(ph + 3), max(rp * 0.25, 1.0))
        else:  # blue clumpy: knots scattered over the disc
            rng = seed_stream(self.seed, "mock.blue_clumpy_knots", s["id"])
            n = rng.integers(4, 9)
            kx, ky = rng.normal(0, rp / 2, n), rng.normal(0, rp / 2, n)
            f = light.knots_profile(xx, yy, kx, ky, np.full(n, 0.9), rng.exponential(1, n))
            colour = np.array([1.8, 1.0, 0.55])
        tot = f.sum()
        if tot > 0:
            w = flux * colour
            w *= flux[1] / max(w[1], 1e-30)
            img[(slice(None), *box)] += w[:, None, None] * (f[inner] / tot)[None]

    def _paint_artefact(self, img, gx, gy, flux, s) -> None:
        H, W = img.shape[1:]
        rad = int(min(MARGIN, 40))
        box, inner, xx, yy = _box(gx, gy, rad, W, H)
        if box is None:
            return
        ph = s["conf_phase"]
        sp = mo.spikes(xx, yy, 12.0, 0.7, ph)
        halo = (1 + (xx**2 + yy**2) / 36.0) ** -1.5
        ghost = mo.ring(xx - 10 * np.cos(ph), yy - 10 * np.sin(ph), 6.0, 1.2)
        for f, frac in ((sp, 0.02), (halo, 0.03), (ghost, 0.002)):
            img[(slice(None), *box)] += (flux * frac)[:, None, None] * (f[inner] / f.sum())[None]

    def _paint_arc(self, img, gx, gy, s, W, H) -> None:
        te = s["theta_e"]
        rad = int(min((te + 2.0) / PIXEL_SCALE_ARCSEC, MARGIN))
        box, inner, xx, yy = _box(gx, gy, rad, W, H)
        if box is None:
            return
        sub = (np.array([-0.25, 0.25]) * PIXEL_SCALE_ARCSEC)
        xa = xx * PIXEL_SCALE_ARCSEC
        ya = yy * PIXEL_SCALE_ARCSEC
        kx = np.array([s[f"knot{k}_x"] for k in range(MAX_KNOTS)])
        ky = np.array([s[f"knot{k}_y"] for k in range(MAX_KNOTS)])
        ks = np.array([s[f"knot{k}_sig"] for k in range(MAX_KNOTS)])
        kw = np.array([s[f"knot{k}_w"] for k in range(MAX_KNOTS)])
        disc = np.zeros_like(xa)
        knots = np.zeros_like(xa)
        for ox in sub:
            for oy in sub:
                bx, by = ray_trace(xa + ox, ya + oy, te, s["lens_q"], s["lens_phi"], s["shear_g1"], s["shear_g2"])
                bx, by = bx - s["src_x"], by - s["src_y"]
                disc += light.sersic(bx, by, s["src_re"], s["src_n"], s["src_q"], s["src_phi"]) / 4
                knots += light.knots_profile(bx, by, kx, ky, ks, kw) / 4
        pix_area = PIXEL_SCALE_ARCSEC**2
        f_r = 10 ** (-0.4 * (s["src_rmag"] - 22.5))  # unlensed source r flux, nanomaggies
        kf = s["src_knot_frac"]
        disc_col = 10 ** (-0.4 * np.array([s["src_gr_disc"], 0.0, -s["src_rz_disc"]]))
        knot_col = 10 ** (-0.4 * np.array([s["src_gr_knot"], 0.0, -s["src_rz_knot"]]))
        sb = ((f_r * (1 - kf) * disc_col)[:, None, None] * (disc / s["src_disc_norm"])[None]
              + (f_r * kf * knot_col)[:, None, None] * knots[None]) * pix_area
        img[(slice(None), *box)] += sb[(slice(None), *inner)]

    # -------------------------------------------------------------- render
    def render_region(self, x0: int, y0: int, w: int, h: int) -> np.ndarray | None:
        """Noisy image (3, h, w) on the global grid with [0, 0] at global pixel (x0, y0); None if off-footprint."""
        yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w]
        bidx = self._region_bricks(xx, yy)
        if (bidx < 0).all():
            return None
        lo = np.searchsorted(self._gx, x0 - MARGIN)
        hi = np.searchsorted(self._gx, x0 + w + MARGIN)
        cand = np.arange(lo, hi)
        cand = cand[(self._gy[cand] > y0 - MARGIN) & (self._gy[cand] < y0 + h + MARGIN)]
        src_bricks = self._brick_idx[cand]
        img = np.zeros((3, h, w))
        e = PSF_HALF  # paint beyond the region so that convolution near its edge sees all the light
        for brick in np.unique(src_bricks):
            layer = np.zeros((3, h + 2 * e, w + 2 * e))
            for k in cand[src_bricks == brick]:
                self._paint(layer, x0 - e, y0 - e, int(k))
            img += fftconvolve(layer, self._psf3(int(brick)), mode="same", axes=(1, 2))[:, e:-e, e:-e]
        valid = bidx >= 0
        bsafe = np.where(valid, bidx, 0)
        sig = np.moveaxis(self._sig[bsafe], -1, 0)  # (3, h, w)
        sky = np.array([SKY_NMGY_PER_PIX[b] for b in BANDS])[:, None, None]
        var = sig**2 * (1.0 + np.clip(img, 0, None) / sky)
        noise = np.sqrt(var) * hashed_normal3(xx, yy, self.noise_key)
        return np.where(valid[None], img + noise, 0.0)

    def __call__(self, req: CutoutRequest):
        if abs(req.pixscale - PIXEL_SCALE_ARCSEC) > 1e-6:
            raise NoOverlapError(f"mock survey renders native 0.262 arcsec pixels only, not {req.pixscale}")
        cx, cy = tan_project(req.ra, req.dec, self.ra0, self.dec0)
        cx, cy = float(cx), float(cy)
        ix, iy = int(np.floor(cx + 0.5)), int(np.floor(cy + 0.5))
        fx, fy = cx - ix, cy - iy
        hw, hh = (req.width - 1) // 2, (req.height - 1) // 2
        x0, y0 = ix - hw - PAD, iy - hh - PAD
        W, H = req.width + 2 * PAD, req.height + 2 * PAD
        region = self.render_region(x0, y0, W, H)
        if region is None:
            return None
        # correlated noise (and signal) as in resampled coadds: separable 3-tap kernel
        # followed by Lanczos-3 resampling onto the requested centre, applied as one combined
        # 8-tap kernel per axis (offsets -3..4)
        k = np.array([CORR_A, 1 - 2 * CORR_A, CORR_A])
        kx = np.convolve(k, _lanczos3(fx)[::-1])
        ky = np.convolve(k, _lanczos3(fy)[::-1])
        reg = _sep_filter(region, kx, ky, taps_from=-3)
        sl_y = slice(PAD, PAD + req.height)
        sl_x = slice(PAD, PAD + req.width)
        cube = reg[:, sl_y, sl_x]
        # off-footprint pixels stay exactly 0.0
        raw_zero = region[:, sl_y, sl_x] == 0.0
        cube = np.where(raw_zero, 0.0, cube)
        bands = {"g": 0, "r": 1, "z": 2}
        planes = [cube[bands[b]] if b in bands else np.zeros_like(cube[0]) for b in req.bands]  # no i in the mock
        return np.stack(planes).astype(np.float32), None


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
    yy, xx = np.mgrid[iy - rad : iy + rad + 1, ix - rad : ix + rad + 1]
    inner = (slice(ya - (iy - rad), yb - (iy - rad)), slice(xa - (ix - rad), xb - (ix - rad)))
    return (slice(ya, yb), slice(xa, xb)), inner, xx - gx, yy - gy


def load_renderer(root) -> Renderer:
    return Renderer(MockSurvey.load(root))


__all__ = ["Renderer", "load_renderer", "moffat_psf", "hashed_normal", "hashed_normal3"]

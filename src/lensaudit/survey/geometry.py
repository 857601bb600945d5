"""DR10 sky geometry: sweep boxes and file names, brick names, cutout WCS and pixel regions.

Sources: ``docs/dr10_formats.md`` sections 1.2 (sweep tiling and names), 1.5
(BRICKNAME), 3.4 (cutout WCS) and 4.3 (brick WCS).
"""

from __future__ import annotations

import math
import re

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from lensaudit.survey.constants import CUTOUT_SIZE, PIXEL_SCALE_ARCSEC, SWEEP_BOX_DEG

_SWEEP_RE = re.compile(r"^sweep-(\d{3})([pm])(\d{3})-(\d{3})([pm])(\d{3})(?:-[a-z]+)?\.fits(?:\.gz)?$")


def _fmt_dec(d: float) -> str:
    return f"{'p' if d >= 0 else 'm'}{abs(int(round(d))):03d}"


def sweep_box(ra_deg: float, dec_deg: float) -> tuple[float, float, float, float]:
    """(ramin, ramax, decmin, decmax) of the 5x5 deg DR10 sweep box holding (ra, dec)."""
    if not (0.0 <= ra_deg < 360.0 and -90.0 <= dec_deg <= 90.0):
        raise ValueError(f"sweep_box: coordinates out of range ra={ra_deg} dec={dec_deg}")
    ramin = math.floor(ra_deg / SWEEP_BOX_DEG) * SWEEP_BOX_DEG
    decmin = min(math.floor(dec_deg / SWEEP_BOX_DEG) * SWEEP_BOX_DEG, 90.0 - SWEEP_BOX_DEG)
    return ramin, ramin + SWEEP_BOX_DEG, decmin, decmin + SWEEP_BOX_DEG


def sweep_boxes(ra_deg, dec_deg) -> np.ndarray:
    """(n, 4) array of :func:`sweep_box` for arrays of coordinates (same rules, vectorised)."""
    ra, dec = np.asarray(ra_deg, float), np.asarray(dec_deg, float)
    bad = ~((ra >= 0.0) & (ra < 360.0) & (dec >= -90.0) & (dec <= 90.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"sweep_boxes: {int(bad.sum())} coordinates out of range, first ra={ra[i]} dec={dec[i]}")
    ramin = np.floor(ra / SWEEP_BOX_DEG) * SWEEP_BOX_DEG
    decmin = np.minimum(np.floor(dec / SWEEP_BOX_DEG) * SWEEP_BOX_DEG, 90.0 - SWEEP_BOX_DEG)
    return np.stack([ramin, ramin + SWEEP_BOX_DEG, decmin, decmin + SWEEP_BOX_DEG], axis=1)


def sweep_filename(ramin: float, ramax: float, decmin: float, decmax: float) -> str:
    """DR10 sweep name, e.g. ``sweep-000m010-005m005.fits`` (RA 3 digits, Dec sign + 3 digits)."""
    return f"sweep-{int(round(ramin)):03d}{_fmt_dec(decmin)}-{int(round(ramax)):03d}{_fmt_dec(decmax)}.fits"


def parse_sweep_filename(name: str) -> tuple[float, float, float, float]:
    """(ramin, ramax, decmin, decmax) in deg from a sweep file name; ValueError if malformed."""
    base = name.rsplit("/", 1)[-1]
    m = _SWEEP_RE.match(base)
    if not m:
        raise ValueError(f"not a DR10 sweep file name: {base!r} (expected sweep-RRR[pm]DDD-RRR[pm]DDD.fits)")
    ra1, s1, d1, ra2, s2, d2 = m.groups()
    sign = {"p": 1.0, "m": -1.0}
    return float(ra1), float(ra2), sign[s1] * float(d1), sign[s2] * float(d2)


def brickname(ra_deg: np.ndarray | float, dec_deg: np.ndarray | float) -> np.ndarray:
    """Brick-style name of a (nominal 0.25 deg) brick centre: 4 digits int(RA*10), p/m, 3 digits int(|Dec|*10)."""
    ra = np.atleast_1d(np.asarray(ra_deg, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec_deg, dtype=np.float64))
    out = [
        f"{int(r * 10):04d}{'p' if d >= 0 else 'm'}{int(abs(d) * 10):03d}" for r, d in zip(ra, dec, strict=True)
    ]
    return np.array(out, dtype="U8")


def cutout_header(
    ra_deg: float, dec_deg: float, size_pix: int = CUTOUT_SIZE, pixscale_arcsec: float = PIXEL_SCALE_ARCSEC,
    width: int | None = None, height: int | None = None,
) -> fits.Header:
    """TAN WCS cards the cutout service writes (spec 3.4): CRPIX=(N+1)/2, CD1_1<0, north up."""
    w = int(width or size_pix)
    h = int(height or size_pix)
    hdr = fits.Header()
    hdr["CTYPE1"] = "RA---TAN"
    hdr["CTYPE2"] = "DEC--TAN"
    hdr["CRVAL1"] = float(ra_deg)
    hdr["CRVAL2"] = float(dec_deg)
    hdr["CRPIX1"] = (w + 1) / 2.0
    hdr["CRPIX2"] = (h + 1) / 2.0
    hdr["CD1_1"] = -pixscale_arcsec / 3600.0
    hdr["CD1_2"] = 0.0
    hdr["CD2_1"] = 0.0
    hdr["CD2_2"] = pixscale_arcsec / 3600.0
    hdr["IMAGEW"] = w
    hdr["IMAGEH"] = h
    return hdr


def cutout_wcs(
    ra_deg: float, dec_deg: float, size_pix: int = CUTOUT_SIZE, pixscale_arcsec: float = PIXEL_SCALE_ARCSEC
) -> WCS:
    """astropy WCS of a service cutout centred on (ra, dec)."""
    return WCS(cutout_header(ra_deg, dec_deg, size_pix, pixscale_arcsec), naxis=2)


def centre_region(size_pix: int, box_pix: int) -> tuple[slice, slice]:
    """Slices of the central ``box_pix`` x ``box_pix`` region of a ``size_pix`` square stamp."""
    if box_pix > size_pix:
        raise ValueError(f"centre_region: box {box_pix} larger than stamp {size_pix}")
    lo = (size_pix - box_pix) // 2
    return slice(lo, lo + box_pix), slice(lo, lo + box_pix)


def angular_separation_arcsec(ra1_deg, dec1_deg, ra2_deg, dec2_deg) -> np.ndarray:
    """Great-circle separation (arcsec) of positions in degrees (haversine: accurate at milliarcsec)."""
    ra1, dec1, ra2, dec2 = (np.deg2rad(np.asarray(v, dtype=np.float64)) for v in (ra1_deg, dec1_deg, ra2_deg, dec2_deg))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.rad2deg(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1)))) * 3600.0

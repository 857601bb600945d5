"""DR10 per-brick coadd image files ("image stacks"): names, brick WCS, reading and writing.

Spec ``docs/dr10_formats.md`` section 4: ``coadd/<AAA>/<brick>/legacysurvey-<brick>-<kind>-<band>.fits.fz``
(``<AAA>`` the first three characters of the brick name); HDU0 an empty primary, HDU1 the tile-compressed
image (astropy ``CompImageHDU``; the image kind RICE-quantised with an absolute step of 1e-4 nanomaggy, so
lossy at that level); a TAN WCS centred on the brick (3600 x 3600 pixels, CRPIX 1800.5, CD1_1 = -0.262/3600,
north up, east left), cards ``IMTYPE``, ``PRODTYPE``, ``BUNIT``, ``MAGZERO`` (image) and ``FILTERX``.
Pixels no exposure covers are 0.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from lensaudit.errors import LensauditError
from lensaudit.survey.constants import MAG_ZEROPOINT, PIXEL_SCALE_ARCSEC

#: Side of a DR10 brick image, pixels.
BRICK_IMAGE_PIX = 3600
#: Absolute quantisation step of the image kind, nanomaggy (fpack ``qz -1e-4``).
IMAGE_QUANT_STEP_NMGY = 1e-4


class CoaddFileError(LensauditError, ValueError):
    """A coadd file is missing, unreadable, or not a DR10 coadd image (the message names the file)."""


def coadd_path(root: str | os.PathLike, brick: str, band: str, kind: str = "image") -> Path:
    """``root/coadd/<AAA>/<brick>/legacysurvey-<brick>-<kind>-<band>.fits.fz`` (spec 4.1)."""
    return Path(root) / "coadd" / brick[:3] / brick / f"legacysurvey-{brick}-{kind}-{band}.fits.fz"


def brick_wcs_header(ra_center: float, dec_center: float, size_pix: int = BRICK_IMAGE_PIX,
                     pixscale_arcsec: float = PIXEL_SCALE_ARCSEC) -> fits.Header:
    """The TAN WCS cards of a brick image centred on (ra_center, dec_center) (spec 4.3)."""
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = float(ra_center), float(dec_center)
    h["CRPIX1"] = h["CRPIX2"] = (size_pix + 1) / 2.0
    h["CD1_1"], h["CD1_2"] = -pixscale_arcsec / 3600.0, 0.0
    h["CD2_1"], h["CD2_2"] = 0.0, pixscale_arcsec / 3600.0
    return h


def write_coadd_image(path: str | os.PathLike, image_nmgy: np.ndarray, wcs_header: fits.Header, band: str,
                      kind: str = "image") -> Path:
    """Write one coadd image in the DR10 layout (empty primary, RICE tile-compressed HDU1 quantised with an
    absolute step of 1e-4 nanomaggy, 100 x 100 tiles, the WCS and the product cards). For test fakes and
    mock surveys; real coadds come from the survey."""
    from lensaudit.utils.io import atomic_path

    img = np.asarray(image_nmgy, dtype=np.float32)
    if img.ndim != 2:
        raise CoaddFileError(f"coadd image for {path}: needs a 2-D array, not shape {img.shape}")
    hdr = fits.Header()
    hdr.extend(wcs_header)
    hdr["IMTYPE"], hdr["PRODTYPE"], hdr["BUNIT"] = kind, kind, "nanomaggy"
    hdr["MAGZERO"], hdr["FILTERX"] = MAG_ZEROPOINT, band
    comp = fits.CompImageHDU(img, header=hdr, compression_type="RICE_1", tile_shape=(100, 100),
                             quantize_level=-IMAGE_QUANT_STEP_NMGY, quantize_method=1, dither_seed=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), comp]).writeto(tmp, overwrite=True)
    return path


def read_coadd_image(path: str | os.PathLike) -> tuple[np.ndarray, WCS]:
    """(float32 image in nanomaggies, its celestial WCS) of a coadd file; :class:`CoaddFileError` naming the
    file when it is missing, unreadable or has no 2-D image with a TAN WCS."""
    path = Path(path)
    if not path.is_file():
        raise CoaddFileError(f"coadd {path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=fits.verify.VerifyWarning)
            with fits.open(path, memmap=False) as h:
                hdu = next((x for x in h if x.is_image and x.data is not None and x.data.ndim == 2), None)
                if hdu is None:
                    raise CoaddFileError(f"coadd {path}: no 2-D image HDU")
                data = np.asarray(hdu.data, dtype=np.float32)
                header = hdu.header.copy()
    except (OSError, ValueError, TypeError) as exc:
        if isinstance(exc, CoaddFileError):
            raise
        raise CoaddFileError(f"coadd {path}: not a readable FITS image ({exc})") from exc
    if not str(header.get("CTYPE1", "")).endswith("TAN") or not str(header.get("CTYPE2", "")).endswith("TAN"):
        raise CoaddFileError(f"coadd {path}: WCS is not TAN (CTYPE1={header.get('CTYPE1')!r})")
    return data, WCS(header, naxis=2)


__all__ = ["BRICK_IMAGE_PIX", "IMAGE_QUANT_STEP_NMGY", "CoaddFileError", "brick_wcs_header", "coadd_path",
           "read_coadd_image", "write_coadd_image"]

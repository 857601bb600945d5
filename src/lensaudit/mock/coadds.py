"""DR10-format coadd files of the mock survey, for the coadd reader and for users' own coadd pipelines.

The mock renders on one global pixel grid (a TAN projection about the survey centre); its coadd, the
rendered pixels after the coadd correlation kernel, is what the loopback service resamples onto every
requested cutout. These files hold that grid: per brick and band, the pixels around the brick's primary
region (plus the 65-pixel overlap real bricks have), in the real layout and compression
(:mod:`lensaudit.survey.coadd`), with a TAN WCS about the survey centre whose CRPIX places the window on
the global grid (real bricks are centred on themselves; a reader that goes through the WCS, as it must,
does not care). So the coadd reader cuts the same stamps from these files as the mock service serves,
to the files' quantisation (1e-4 nanomaggy, DR10's).

``window`` limits every brick's image to a box around a position (a full 3600 x 3600 brick takes about
1.5 GB of memory to render); bricks outside the window are skipped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from lensaudit.errors import InputError
from lensaudit.mock.psf import CORR_KERNEL
from lensaudit.survey.coadd import coadd_path, write_coadd_image
from lensaudit.survey.constants import PIXEL_SCALE_ARCSEC

log = logging.getLogger(__name__)
#: Pixels a DR10 brick image extends beyond its primary region on each side (3600 px images, 0.25 deg bricks).
OVERLAP_PIX = 65


def global_grid_wcs_header(ra0: float, dec0: float, x_first: int, y_first: int):
    """TAN WCS cards of an image whose pixel [0, 0] is global pixel (x_first, y_first) of the grid about (ra0, dec0)."""
    from astropy.io import fits

    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = float(ra0), float(dec0)
    h["CRPIX1"], h["CRPIX2"] = 1.0 - x_first, 1.0 - y_first   # FITS pixel p (1-based) is global pixel p - CRPIX
    h["CD1_1"], h["CD1_2"] = -PIXEL_SCALE_ARCSEC / 3600.0, 0.0
    h["CD2_1"], h["CD2_2"] = 0.0, PIXEL_SCALE_ARCSEC / 3600.0
    return h


def write_mock_coadds(survey_dir: str | os.PathLike, out_root: str | os.PathLike, bricks: list[str] | None = None,
                      window: tuple[float, float, int] | None = None) -> list[Path]:
    """Write ``coadd/<AAA>/<brick>/legacysurvey-<brick>-image-<band>.fits.fz`` for ``bricks`` (all when None)
    of the mock survey at ``survey_dir``; ``window`` = (ra, dec, half size in pixels) limits each image to a box
    around (ra, dec). Returns the files written."""
    from lensaudit.mock.layout import tan_project
    from lensaudit.mock.render import _sep_filter, load_renderer

    r = load_renderer(survey_dir)
    b = r.survey.bricks
    names = list(b["brickname"]) if bricks is None else list(bricks)
    unknown = sorted(set(names) - set(b["brickname"]))
    if unknown:
        raise InputError(f"mock coadds: no brick {unknown[:3]} in survey {survey_dir}")
    box = None
    if window is not None:
        wx, wy = tan_project(window[0], window[1], r.ra0, r.dec0)
        h = int(window[2])
        box = (int(np.floor(wx)) - h, int(np.floor(wy)) - h, int(np.floor(wx)) + h + 1, int(np.floor(wy)) + h + 1)
    written = []
    for row in b[b["brickname"].isin(names)].itertuples(index=False):
        ra = np.array([row.ra1, row.ra2, row.ra1, row.ra2])
        dec = np.array([row.dec1, row.dec1, row.dec2, row.dec2])
        gx, gy = tan_project(ra, dec, r.ra0, r.dec0)
        x_lo, x_hi = int(np.floor(gx.min())) - OVERLAP_PIX, int(np.ceil(gx.max())) + OVERLAP_PIX
        y_lo, y_hi = int(np.floor(gy.min())) - OVERLAP_PIX, int(np.ceil(gy.max())) + OVERLAP_PIX
        if box is not None:
            x_lo, y_lo, x_hi, y_hi = max(x_lo, box[0]), max(y_lo, box[1]), min(x_hi, box[2]), min(y_hi, box[3])
            if x_lo >= x_hi or y_lo >= y_hi:
                continue
        # two extra pixels per side: the correlation kernel's edges (periodic in _sep_filter) are cut away
        region = r.render_region(x_lo - 2, y_lo - 2, x_hi - x_lo + 4, y_hi - y_lo + 4)
        if region is None:
            continue
        coadd = _sep_filter(region, CORR_KERNEL, CORR_KERNEL)[:, 2:-2, 2:-2]
        hdr = global_grid_wcs_header(r.ra0, r.dec0, x_lo, y_lo)
        for k, band in enumerate("grz"):
            written.append(write_coadd_image(coadd_path(out_root, row.brickname, band), coadd[k], hdr, band))
        log.info("mock coadds: brick %s, %d x %d pixels", row.brickname, x_hi - x_lo, y_hi - y_lo)
    return written


__all__ = ["OVERLAP_PIX", "global_grid_wcs_header", "write_mock_coadds"]

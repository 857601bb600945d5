"""Scalar facts of the DR10 data model (units in the names).

Sources: ``docs/dr10_formats.md`` sections 1.5, 3 and 4.
"""

from __future__ import annotations

#: Native DR10 coadd pixel scale, arcsec per pixel (DECam coadds, spec 4.3).
PIXEL_SCALE_ARCSEC: float = 0.262
#: AB magnitude zeropoint of a flux in nanomaggies: m = 22.5 - 2.5 log10(flux_nmgy).
MAG_ZEROPOINT: float = 22.5
#: Band order used everywhere in lensaudit (cutout planes, arrays, columns).
BANDS: tuple[str, ...] = ("g", "r", "z")
#: All optical DR10 bands present in sweeps.
SWEEP_OPTICAL_BANDS: tuple[str, ...] = ("g", "r", "i", "z")
#: WISE bands present in sweeps.
SWEEP_WISE_BANDS: tuple[str, ...] = ("W1", "W2", "W3", "W4")
#: Tractor morphological types (``TYPE``, 3 ASCII bytes, spec 1.5).
TRACTOR_TYPES: tuple[str, ...] = ("PSF", "REX", "DEV", "EXP", "SER", "DUP")
#: Release numbers: 10000 = DR10, 10002 = bricks re-processed for DR10.1.
RELEASE_DR10: int = 10000
RELEASE_DR10_1: int = 10002

#: Galactic extinction coefficients A_band / E(B-V) for DECam and WISE (spec 1.5).
EXTINCTION_COEFF: dict[str, float] = {
    "g": 3.214,
    "r": 2.165,
    "i": 1.592,
    "z": 1.211,
    "W1": 0.184,
    "W2": 0.113,
    "W3": 0.0241,
    "W4": 0.00910,
}

#: Cutout side in pixels used by DR10 lens finders (101 x 101 at 0.262 arcsec/pixel).
CUTOUT_SIZE: int = 101
#: Cutout-service layer for DR10 (spec 3.3).
DEFAULT_LAYER: str = "ls-dr10"
#: Documented maximum cutout size of the service, pixels (spec 3.6).
SERVICE_MAX_SIZE_DOC: int = 512
#: Size the real server silently clamps to, pixels (spec 3.6).
SERVICE_MAX_SIZE_CLAMP: int = 3000
#: Default Legacy Survey cutout service (FITS endpoint, spec 3.1).
DEFAULT_SERVICE_URL: str = "https://www.legacysurvey.org/viewer/fits-cutout"

#: DR10 "north" region boundary (spec 1.1): Dec >= 32.375 deg and Galactic b > 0.
NORTH_DEC_BOUNDARY_DEG: float = 32.375
#: Brick image side in pixels (3600 at 0.262 arcsec = 0.262 deg, spec 4.3).
BRICK_IMAGE_SIZE_PIX: int = 3600
#: Nominal brick size in degrees (spec 4.3).
BRICK_SIZE_DEG: float = 0.25
#: Sweep box size in degrees (DR10 ``blocksdr10`` tiling: 5 x 5 deg, spec 1.2).
SWEEP_BOX_DEG: float = 5.0

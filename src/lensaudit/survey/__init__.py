"""The DESI Legacy Imaging Surveys DR10 data model, in one place.

Every other module takes pixel scale, zeropoint, band order, Tractor types, bitmasks, sweep
column names/dtypes/units, depth conversions and cutout geometry from here. Each fact cites
``docs/dr10_formats.md`` (which in turn cites legacysurvey.org and legacypipe).
"""

from lensaudit.survey.constants import (
    BANDS,
    CUTOUT_SIZE,
    DEFAULT_LAYER,
    MAG_ZEROPOINT,
    PIXEL_SCALE_ARCSEC,
    TRACTOR_TYPES,
)
from lensaudit.survey.maskbits import FITBITS, MASKBITS, maskbits_mask
from lensaudit.survey.photometry import (
    depth_to_mag5,
    flux_to_mag,
    mag5_to_depth,
    mag_to_flux,
    mw_transmission,
)

__all__ = [
    "BANDS",
    "CUTOUT_SIZE",
    "DEFAULT_LAYER",
    "MAG_ZEROPOINT",
    "PIXEL_SCALE_ARCSEC",
    "TRACTOR_TYPES",
    "MASKBITS",
    "FITBITS",
    "maskbits_mask",
    "flux_to_mag",
    "mag_to_flux",
    "depth_to_mag5",
    "mag5_to_depth",
    "mw_transmission",
]

"""DR10 sweep-catalog schema: column names, dtypes, FITS TFORMs and units, in file order.

Source: ``docs/dr10_formats.md`` section 1.5 (legacypipe ``generate-sweep-files.py``
``SWEEP_DTYPE`` at tag DR10.1.3 and the legacysurvey.org sweep documentation). Sweeps are
FITS binary tables in HDU 1 with ``EXTNAME = 'SWEEP'``, upper-case column names, big-endian
data; ``TYPE`` and ``BRICKNAME`` are bytes (``3A``, ``8A``).

The GAIA_* block follows the DR9/DR10 sweep documentation (140 columns, 532 bytes per row here;
the spec derives 130 columns / 505 bytes as its own arithmetic, so the GAIA block is the least
certain part). No lensaudit stage reads GAIA columns; the schema check tolerates their absence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lensaudit.errors import LensauditError
from lensaudit.survey.constants import SWEEP_OPTICAL_BANDS, SWEEP_WISE_BANDS

_ALLB = tuple(b.upper() for b in SWEEP_OPTICAL_BANDS + SWEEP_WISE_BANDS)  # G R I Z W1..W4
_OPT = tuple(b.upper() for b in SWEEP_OPTICAL_BANDS)  # G R I Z


@dataclass(frozen=True)
class Column:
    """One sweep column: name, numpy dtype (native order; FITS stores big-endian), unit."""

    name: str
    dtype: str  # numpy dtype string, e.g. "i2", "f4", "S8"
    unit: str = ""
    shape: tuple[int, ...] = ()
    description: str = ""

    @property
    def tform(self) -> str:
        """FITS TFORM code of this column."""
        codes = {"i2": "I", "i4": "J", "i8": "K", "f4": "E", "f8": "D", "u1": "B", "b1": "L"}
        if self.dtype.startswith("S"):
            return f"{int(self.dtype[1:])}A"
        n = int(np.prod(self.shape)) if self.shape else 1
        return f"{n if n > 1 else ''}{codes[self.dtype]}"


def _c(name: str, dtype: str, unit: str = "", shape: tuple[int, ...] = (), desc: str = "") -> Column:
    return Column(name, dtype, unit, shape, desc)


def _build() -> tuple[Column, ...]:
    cols: list[Column] = [
        _c("RELEASE", "i2", desc="10000 = DR10, 10002 = DR10.1 re-processed bricks"),
        _c("BRICKID", "i4"),
        _c("BRICKNAME", "S8", desc="e.g. 1126p222"),
        _c("OBJID", "i4", desc="unique within a brick, from 0"),
        _c("TYPE", "S3", desc="PSF REX DEV EXP SER DUP"),
        _c("RA", "f8", "deg"),
        _c("DEC", "f8", "deg"),
        _c("RA_IVAR", "f4", "deg-2"),
        _c("DEC_IVAR", "f4", "deg-2"),
        _c("DCHISQ", "f4", shape=(5,), desc="chi2 improvement for PSF REX DEV EXP SER"),
        _c("EBV", "f4", "mag", desc="SFD98 E(B-V)"),
    ]
    cols += [_c(f"FLUX_{b}", "f4", "nanomaggy") for b in _ALLB]
    cols += [_c(f"FLUX_IVAR_{b}", "f4", "1/nanomaggy^2") for b in _ALLB]
    cols += [_c(f"MW_TRANSMISSION_{b}", "f4") for b in _ALLB]
    cols += [_c(f"NOBS_{b}", "i2") for b in _ALLB]
    cols += [_c(f"RCHISQ_{b}", "f4") for b in _ALLB]
    cols += [_c(f"FRACFLUX_{b}", "f4") for b in _ALLB]
    cols += [_c(f"FRACMASKED_{b}", "f4") for b in _OPT]
    cols += [_c(f"FRACIN_{b}", "f4") for b in _OPT]
    cols += [_c(f"ANYMASK_{b}", "i2") for b in _OPT]
    cols += [_c(f"ALLMASK_{b}", "i2") for b in _OPT]
    cols += [_c("WISEMASK_W1", "u1"), _c("WISEMASK_W2", "u1")]
    cols += [_c(f"PSFSIZE_{b}", "f4", "arcsec", desc="weighted PSF FWHM") for b in _OPT]
    cols += [_c(f"PSFDEPTH_{b}", "f4", "1/nanomaggy^2", desc="point-source flux ivar") for b in _OPT]
    cols += [_c(f"GALDEPTH_{b}", "f4", "1/nanomaggy^2") for b in _OPT]
    cols += [_c("PSFDEPTH_W1", "f4", "1/nanomaggy^2"), _c("PSFDEPTH_W2", "f4", "1/nanomaggy^2")]
    cols += [
        _c("WISE_COADD_ID", "S8"),
        _c("SHAPE_R", "f4", "arcsec", desc="half-light radius"),
        _c("SHAPE_R_IVAR", "f4", "arcsec-2"),
        _c("SHAPE_E1", "f4"),
        _c("SHAPE_E1_IVAR", "f4"),
        _c("SHAPE_E2", "f4"),
        _c("SHAPE_E2_IVAR", "f4"),
    ]
    cols += [_c(f"FIBERFLUX_{b}", "f4", "nanomaggy") for b in _OPT]
    cols += [_c(f"FIBERTOTFLUX_{b}", "f4", "nanomaggy") for b in _OPT]
    cols += [_c("REF_CAT", "S2"), _c("REF_ID", "i8"), _c("REF_EPOCH", "f4", "yr")]
    cols += [
        _c("GAIA_PHOT_G_MEAN_MAG", "f4", "mag"),
        _c("GAIA_PHOT_G_MEAN_FLUX_OVER_ERROR", "f4"),
        _c("GAIA_PHOT_G_N_OBS", "i2"),
        _c("GAIA_PHOT_BP_MEAN_MAG", "f4", "mag"),
        _c("GAIA_PHOT_BP_MEAN_FLUX_OVER_ERROR", "f4"),
        _c("GAIA_PHOT_BP_N_OBS", "i2"),
        _c("GAIA_PHOT_RP_MEAN_MAG", "f4", "mag"),
        _c("GAIA_PHOT_RP_MEAN_FLUX_OVER_ERROR", "f4"),
        _c("GAIA_PHOT_RP_N_OBS", "i2"),
        _c("GAIA_PHOT_VARIABLE_FLAG", "b1"),
        _c("GAIA_ASTROMETRIC_EXCESS_NOISE", "f4"),
        _c("GAIA_ASTROMETRIC_EXCESS_NOISE_SIG", "f4"),
        _c("GAIA_ASTROMETRIC_N_OBS_AL", "i2"),
        _c("GAIA_ASTROMETRIC_N_GOOD_OBS_AL", "i2"),
        _c("GAIA_ASTROMETRIC_WEIGHT_AL", "f4"),
        _c("GAIA_DUPLICATED_SOURCE", "b1"),
        _c("GAIA_A_G_VAL", "f4", "mag"),
        _c("GAIA_E_BP_MIN_RP_VAL", "f4", "mag"),
        _c("GAIA_PHOT_BP_RP_EXCESS_FACTOR", "f4"),
        _c("GAIA_ASTROMETRIC_SIGMA5D_MAX", "f4", "mas"),
        _c("GAIA_ASTROMETRIC_PARAMS_SOLVED", "u1"),
    ]
    cols += [
        _c("PARALLAX", "f4", "mas"),
        _c("PARALLAX_IVAR", "f4", "mas-2"),
        _c("PMRA", "f4", "mas/yr"),
        _c("PMRA_IVAR", "f4", "yr2 mas-2"),
        _c("PMDEC", "f4", "mas/yr"),
        _c("PMDEC_IVAR", "f4", "yr2 mas-2"),
        _c("MASKBITS", "i4", desc="bitmask, see survey.maskbits.MASKBITS"),
        _c("FITBITS", "i2", desc="bitmask, see survey.maskbits.FITBITS"),
        _c("SERSIC", "f4"),
        _c("SERSIC_IVAR", "f4"),
    ]
    return tuple(cols)


#: Every sweep column in file order.
SWEEP_COLUMNS: tuple[Column, ...] = _build()
SWEEP_SCHEMA: dict[str, Column] = {c.name: c for c in SWEEP_COLUMNS}

#: Columns the lens-finder pipeline reads from sweeps (a projection of SWEEP_SCHEMA).
LENS_COLUMNS: tuple[str, ...] = (
    "RELEASE", "BRICKID", "BRICKNAME", "OBJID", "TYPE", "RA", "DEC", "EBV",
    "FLUX_G", "FLUX_R", "FLUX_Z", "FLUX_W1", "FLUX_IVAR_G", "FLUX_IVAR_R", "FLUX_IVAR_Z",
    "MW_TRANSMISSION_G", "MW_TRANSMISSION_R", "MW_TRANSMISSION_Z",
    "NOBS_G", "NOBS_R", "NOBS_Z",
    "PSFSIZE_G", "PSFSIZE_R", "PSFSIZE_Z", "PSFDEPTH_G", "PSFDEPTH_R", "PSFDEPTH_Z",
    "GALDEPTH_G", "GALDEPTH_R", "GALDEPTH_Z",
    "SHAPE_R", "SHAPE_E1", "SHAPE_E2", "SERSIC", "MASKBITS", "FITBITS",
)  # fmt: skip


def sweep_numpy_dtype(columns: tuple[str, ...] | None = None, big_endian: bool = True) -> np.dtype:
    """Structured numpy dtype of a sweep table (big-endian as on disk by default)."""
    names = columns or tuple(SWEEP_SCHEMA)
    fields = []
    for n in names:
        col = SWEEP_SCHEMA[n]
        dt = np.dtype(col.dtype)
        if big_endian and dt.kind in "iuf":
            dt = dt.newbyteorder(">")
        fields.append((n, dt, col.shape) if col.shape else (n, dt))
    return np.dtype(fields)


class SchemaError(LensauditError, ValueError):
    """A table does not follow the DR10 sweep schema."""


def check_sweep_columns(
    dtypes: dict[str, np.dtype],
    required: tuple[str, ...] = LENS_COLUMNS,
    source: str = "sweep",
    allow_unknown: bool = False,
) -> None:
    """Check column names and dtypes against the DR10 sweep schema.

    ``dtypes`` maps column name to numpy dtype (any byte order). Raises :class:`SchemaError`
    naming ``source`` and every problem: missing required columns, unknown columns (unless
    ``allow_unknown``), and columns whose dtype kind/size differ from the schema.
    """
    problems: list[str] = []
    missing = [c for c in required if c not in dtypes]
    if missing:
        problems.append(f"missing required column(s) {missing}")
    if not allow_unknown:
        unknown = sorted(c for c in dtypes if c not in SWEEP_SCHEMA)
        if unknown:
            problems.append(f"unknown column(s) {unknown} (not in the DR10 sweep schema)")
    for name, dt in dtypes.items():
        col = SWEEP_SCHEMA.get(name)
        if col is None:
            continue
        want = np.dtype(col.dtype)
        got = np.dtype(dt)
        base = got.subdtype[0] if got.subdtype else got
        if want.kind == "S":
            ok = base.kind in "SU" and base.itemsize // (4 if base.kind == "U" else 1) == want.itemsize
        else:
            ok = base.kind == want.kind and base.itemsize == want.itemsize
        if not ok:
            problems.append(f"column {name} has dtype {got} but the DR10 schema says {col.dtype}")
    if problems:
        raise SchemaError(f"{source}: " + "; ".join(problems))


def decode_type(values: np.ndarray) -> np.ndarray:
    """Decode a Tractor ``TYPE`` column (bytes or str, possibly padded) to stripped str."""
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "ascii")
    return np.char.strip(arr.astype(str))

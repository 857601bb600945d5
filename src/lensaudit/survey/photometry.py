"""Photometric conversions of the DR10 data model (pure functions over arrays).

* Fluxes are nanomaggies (nmgy); AB magnitude = 22.5 - 2.5 log10(flux).
* ``PSFDEPTH``/``GALDEPTH`` are inverse variances of a point-source (or 0.45 arcsec round
  exponential) flux, 1/nmgy^2; the 5-sigma limiting flux is 5/sqrt(depth) nmgy and the
  5-sigma AB depth is 22.5 - 2.5 log10(5/sqrt(depth)). Depth 0 means no coverage (NaN mag).
* Milky Way transmission is 10^(-0.4 * R_band * E(B-V)).

Source: ``docs/dr10_formats.md`` section 1.5.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lensaudit.survey.constants import EXTINCTION_COEFF, MAG_ZEROPOINT


def flux_to_mag(flux_nmgy: ArrayLike) -> NDArray[np.float64]:
    """AB magnitude of a flux in nanomaggies; NaN where flux <= 0."""
    f = np.asarray(flux_nmgy, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = MAG_ZEROPOINT - 2.5 * np.log10(f)
    return np.where(f > 0, mag, np.nan)


def mag_to_flux(mag_ab: ArrayLike) -> NDArray[np.float64]:
    """Flux in nanomaggies of an AB magnitude."""
    return 10.0 ** (-0.4 * (np.asarray(mag_ab, dtype=np.float64) - MAG_ZEROPOINT))


def depth_to_flux5(depth_ivar: ArrayLike) -> NDArray[np.float64]:
    """5-sigma limiting flux (nanomaggies) of a depth inverse variance (1/nmgy^2); NaN if <= 0."""
    d = np.asarray(depth_ivar, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        f5 = 5.0 / np.sqrt(d)
    return np.where(d > 0, f5, np.nan)


def depth_to_mag5(depth_ivar: ArrayLike) -> NDArray[np.float64]:
    """5-sigma AB depth (mag) of ``PSFDEPTH``/``GALDEPTH`` (1/nmgy^2); NaN where depth <= 0."""
    return flux_to_mag(depth_to_flux5(depth_ivar))


def mag5_to_depth(mag5_ab: ArrayLike) -> NDArray[np.float64]:
    """Inverse of :func:`depth_to_mag5`: depth inverse variance (1/nmgy^2) of a 5-sigma AB depth."""
    f5 = mag_to_flux(mag5_ab)
    return (5.0 / f5) ** 2


def mw_transmission(ebv_mag: ArrayLike, band: str) -> NDArray[np.float64]:
    """Milky Way transmission (linear, 0-1) for E(B-V) in mag, band in g r i z W1-W4."""
    try:
        coeff = EXTINCTION_COEFF[band]
    except KeyError:
        raise ValueError(
            f"mw_transmission: unknown band {band!r}; known bands {sorted(EXTINCTION_COEFF)}"
        ) from None
    return 10.0 ** (-0.4 * coeff * np.asarray(ebv_mag, dtype=np.float64))


def shape_to_axis_ratio(e1: ArrayLike, e2: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Axis ratio b/a and position angle (radians, atan2 convention) of Tractor SHAPE_E1/E2.

    Tractor ellipticity is epsilon = (a-b)/(a+b) exp(2 i phi), so
    b/a = (1-|e|)/(1+|e|) and phi = atan2(e2, e1)/2 (spec 1.5).
    """
    e1 = np.asarray(e1, dtype=np.float64)
    e2 = np.asarray(e2, dtype=np.float64)
    e = np.clip(np.hypot(e1, e2), 0.0, 0.999)
    return (1.0 - e) / (1.0 + e), 0.5 * np.arctan2(e2, e1)


def ellipticity_modulus(e1: ArrayLike, e2: ArrayLike) -> NDArray[np.float64]:
    """|epsilon| of Tractor SHAPE_E1/E2 (dimensionless)."""
    return np.hypot(np.asarray(e1, dtype=np.float64), np.asarray(e2, dtype=np.float64))

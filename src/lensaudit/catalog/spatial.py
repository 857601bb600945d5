"""Angular matching (pure functions over arrays); HEALPix indexing and the split rule are
:mod:`lensaudit.artifacts.identity`'s, re-exported here for the catalog stages."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from lensaudit.artifacts.identity import assign_split, healpix_nested, pixel_fraction

__all__ = ["arcsec_of_chord", "assign_split", "chord_of_arcsec", "healpix_nested", "nearest_within", "pixel_fraction",
           "unit_vectors"]


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.deg2rad(np.asarray(ra_deg, float)), np.deg2rad(np.asarray(dec_deg, float))
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def chord_of_arcsec(theta_arcsec: float) -> float:
    return 2.0 * np.sin(np.deg2rad(theta_arcsec / 3600.0) / 2.0)


def arcsec_of_chord(chord: np.ndarray) -> np.ndarray:
    return np.rad2deg(2.0 * np.arcsin(np.clip(np.asarray(chord) / 2.0, 0, 1))) * 3600.0


def nearest_within(tree: cKDTree, ra_deg: np.ndarray, dec_deg: np.ndarray, radius_arcsec: float, k: int = 2):
    """The ``k`` nearest tree points within ``radius_arcsec`` of each position.

    Returns (index (n, k) with ``tree.n`` for none, separation (n, k) arcsec, inf for none).
    """
    n = len(ra_deg)
    if n == 0 or tree.n == 0 or radius_arcsec <= 0:
        return np.full((n, k), tree.n, dtype=np.int64), np.full((n, k), np.inf)
    d, i = tree.query(unit_vectors(ra_deg, dec_deg), k=k, distance_upper_bound=chord_of_arcsec(radius_arcsec))
    d, i = np.asarray(d).reshape(n, k), np.asarray(i).reshape(n, k)
    sep = np.where(np.isfinite(d), arcsec_of_chord(np.where(np.isfinite(d), d, 0.0)), np.inf)
    return i.astype(np.int64), sep

"""HEALPix indexing, spatial splits and angular matching (pure functions over arrays).

The split of an object is a function of its HEALPix pixel only (nside 128, NESTED by default):
the first 4 bytes of SHA-256(``"{pixel}_{seed}"``), read big-endian and divided by 2^32, give a
fraction u in [0, 1); the split is the first in the fixed order (train, val, test) whose
cumulative fraction exceeds u. Positives and negatives use the same function, so a pixel never
straddles two splits.
"""

from __future__ import annotations

import hashlib

import astropy.units as u
import numpy as np
from astropy_healpix import core as _hp
from scipy.spatial import cKDTree


def healpix_nested(ra_deg: np.ndarray, dec_deg: np.ndarray, nside: int) -> np.ndarray:
    """NESTED HEALPix pixel (int64) of each position (degrees)."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    if ra.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(_hp.lonlat_to_healpix(ra * u.deg, dec * u.deg, nside, order="nested"), dtype=np.int64)


def pixel_fraction(pixels: np.ndarray, seed: int) -> np.ndarray:
    """u in [0, 1) per pixel: first 4 bytes of SHA-256(f"{pixel}_{seed}") big-endian / 2^32."""
    pix = np.asarray(pixels, dtype=np.int64)
    uniq, inv = np.unique(pix, return_inverse=True)
    frac = np.array([int.from_bytes(hashlib.sha256(f"{p}_{seed}".encode()).digest()[:4], "big") / 2.0**32
                     for p in uniq.tolist()], dtype=np.float64)
    return frac[inv.reshape(pix.shape)] if uniq.size else np.zeros(pix.shape)


def assign_split(pixels: np.ndarray, seed: int, ordered_fractions: list[tuple[str, float]]) -> np.ndarray:
    """Split name per pixel for fractions given in split order, e.g. [("train", .7), ("val", .3)]."""
    u_ = pixel_fraction(pixels, seed)
    names = [n for n, _ in ordered_fractions]
    edges = np.cumsum([f for _, f in ordered_fractions])
    edges[-1] = np.inf  # guard against rounding: every u lands somewhere
    return np.asarray(names, dtype=object)[np.searchsorted(edges, u_, side="right")]


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

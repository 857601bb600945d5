"""Identity: object ids, HEALPix pixels and the spatial split rule, written once for every stage.

* An object's id is its Tractor identity ``<brickname>_<objid>`` (:func:`object_id`): the catalog,
  the mock survey and everything downstream join on it.
* The split of a position is a function of its HEALPix pixel only (nside 128, NESTED by default):
  the first 4 bytes of SHA-256(``"{pixel}_{seed}"``), read big-endian and divided by 2^32, give a
  fraction u in [0, 1); the split is the first in the fixed order (train, val, test) whose cumulative
  fraction exceeds u. Positives and negatives use the same function, so a pixel never straddles two
  splits. :class:`SplitRule` holds one manifest's rule (from its metadata) and places *any* position,
  catalogued or not (the mock's true lenses, injections), so nothing is dropped for lack of a row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import astropy.units as u
import numpy as np
import pandas as pd
from astropy_healpix import core as _hp

from lensaudit.artifacts.tables import ArtifactError


def object_id(brickname, objid) -> np.ndarray:
    """``<brickname>_<objid>`` per object (object array of str), the id every lensaudit table joins on."""
    return (pd.Series(np.asarray(brickname, dtype=object), dtype=object) + "_"
            + pd.Series(np.asarray(objid)).astype(str)).to_numpy(dtype=object)


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


@dataclass(frozen=True)
class SplitRule:
    """One manifest's split rule: HEALPix ``nside`` (NESTED), hash ``seed`` and ``fractions`` in split order."""

    nside: int
    seed: int
    fractions: tuple[tuple[str, float], ...]

    @classmethod
    def from_metadata(cls, meta: dict, source: str = "manifest") -> SplitRule:
        """The rule ``catalog build`` stored in a manifest's metadata (:func:`read_manifest_metadata`)."""
        try:
            if not meta.get("nest", True):
                raise ArtifactError(f"{source}: RING HEALPix ordering is not lensaudit's split rule")
            return cls(int(meta["nside"]), int(meta["split_seed"]),
                       tuple((s, float(meta["fractions"][s])) for s in meta["split_order"]))
        except KeyError as exc:
            raise ArtifactError(f"{source}: its metadata has no split rule ({exc.args[0]!r} missing)") from None

    def pixels(self, ra_deg, dec_deg) -> np.ndarray:
        return healpix_nested(ra_deg, dec_deg, self.nside)

    def split_of(self, ra_deg, dec_deg) -> np.ndarray:
        """The split of each position (degrees) under this rule: every position has one."""
        return assign_split(self.pixels(ra_deg, dec_deg), self.seed, list(self.fractions))

"""Host cutouts for injections: negatives of the audited splits only, matched to grid cells by PSF and depth.

A host is a manifest row with ``label == 0`` in one of the configured splits (never the training
split: the model has seen those cutouts) whose cutout is in the store. Catalogued candidates are never
negatives; undiscovered lenses among the negatives stay hosts, as they do on the sky (nothing here reads
a truth table: an uncatalogued lens adds its own arc to an injection, and on the mock the closure test
measures that effect with the rest). The host table is saved with the run.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from lensaudit.errors import InputError
from lensaudit.selection.grid import Grid
from lensaudit.survey.constants import MAG_ZEROPOINT
from lensaudit.survey.photometry import depth_to_mag5
from lensaudit.utils.hashing import hashed_uniform
from lensaudit.utils.seeds import derive_seed, stream_id

log = logging.getLogger(__name__)
HOST_COLUMNS = ("psfsize_g", "psfsize_r", "psfsize_z", "psfdepth_r")


def select_hosts(manifest: pd.DataFrame, splits, store_ids) -> pd.DataFrame:
    """The host table: id, split, PSF FWHM per band (arcsec), r depth (5-sigma AB mag), r magnitude."""
    need = ("id", "split", "label", *HOST_COLUMNS)
    miss = [c for c in need if c not in manifest]
    if miss:
        raise InputError(f"manifest: host selection needs column(s) {miss}")
    if "train" in splits:
        raise InputError("hosts: the training split is never a host source (the model has seen those cutouts)")
    m = manifest[manifest["split"].isin(list(splits)) & (manifest["label"] == 0)]
    m = m[m["id"].astype(str).isin(set(map(str, store_ids)))]
    h = pd.DataFrame({"id": m["id"].astype(str).to_numpy(), "split": m["split"].to_numpy(),
                      **{f"host_{c}": m[c].to_numpy(float) for c in ("psfsize_g", "psfsize_r", "psfsize_z")},
                      "host_depth_r": depth_to_mag5(m["psfdepth_r"].to_numpy(float))})
    if "flux_r" in m:
        with np.errstate(divide="ignore", invalid="ignore"):
            h["host_mag_r"] = MAG_ZEROPOINT - 2.5 * np.log10(m["flux_r"].to_numpy(float))
    ok = np.isfinite(h[["host_psfsize_g", "host_psfsize_r", "host_psfsize_z", "host_depth_r"]].to_numpy()).all(axis=1) \
        & (h[["host_psfsize_g", "host_psfsize_r", "host_psfsize_z"]].to_numpy() > 0).all(axis=1)
    if (~ok).any():
        log.warning("hosts: %d negatives without a valid PSF size or depth left out", int((~ok).sum()))
    h = h[ok].sort_values("id", kind="stable").reset_index(drop=True)
    if not len(h):
        raise InputError(f"hosts: no negative of splits {list(splits)} has a cutout in the store")
    return h


def screen_hosts(hosts: pd.DataFrame, cubes_of, batch: int = 512) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Hosts whose cutouts can take an arc: every pixel finite and no band all zero (the service's 0.0 off the
    footprint). ``cubes_of(ids)`` returns the cutouts (n, 3, N, N). Returns (kept hosts, ids left out per reason)."""
    nonfinite, zero_band = [], []
    keep = np.ones(len(hosts), bool)
    ids = hosts["id"].astype(str).to_numpy()
    for lo in range(0, len(hosts), batch):
        c = np.asarray(cubes_of(list(ids[lo : lo + batch])))
        bad_nan = ~np.isfinite(c).reshape(len(c), -1).all(axis=1)
        bad_zero = (np.nan_to_num(c) == 0).reshape(len(c), c.shape[1], -1).all(axis=2).any(axis=1)
        keep[lo : lo + len(c)] = ~(bad_nan | bad_zero)
        nonfinite += ids[lo : lo + len(c)][bad_nan].tolist()
        zero_band += ids[lo : lo + len(c)][bad_zero & ~bad_nan].tolist()
    excluded = {"non-finite pixels": nonfinite, "a band all zero": zero_band}
    for why, bad in excluded.items():
        if bad:
            log.warning("hosts: %d cutout(s) with %s left out, e.g. %s", len(bad), why, bad[:5])
    kept = hosts[keep].reset_index(drop=True)
    kept.attrs.update(hosts.attrs)
    if not len(kept):
        raise InputError(f"hosts: every candidate host's cutout has non-finite pixels or an all-zero band "
                         f"({len(nonfinite)} and {len(zero_band)})")
    return kept, excluded


def host_cells(hosts: pd.DataFrame, grid: Grid) -> dict[tuple[int, int], np.ndarray]:
    """Rows of ``hosts`` per (PSF bin, depth bin) of the grid."""
    ip = grid.bin_of("psf_fwhm", hosts["host_psfsize_r"])
    idp = grid.bin_of("depth", hosts["host_depth_r"])
    out = {}
    for i in range(grid.shape[1]):
        for j in range(grid.shape[2]):
            out[(i, j)] = np.flatnonzero((ip == i) & (idp == j))
    return out


def pick_hosts(cell_rows: np.ndarray, index: np.ndarray, seed: int) -> np.ndarray:
    """A host row per injection index: uniform among ``cell_rows``, keyed by (seed, index)."""
    if not len(cell_rows):
        return np.full(len(index), -1)
    u = hashed_uniform(derive_seed(seed, "selection.host") & 0x7FFFFFFFFFFFFFFF, np.asarray(index, np.int64),
                       stream_id("host"))
    return cell_rows[np.minimum((u * len(cell_rows)).astype(np.int64), len(cell_rows) - 1)]


__all__ = ["HOST_COLUMNS", "host_cells", "pick_hosts", "select_hosts"]

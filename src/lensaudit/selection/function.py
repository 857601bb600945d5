"""The selection function as a product: a per-cell completeness table with intervals, and
:class:`SelectionFunction` to read it back and interpolate.

The file is Parquet (the table) with the grid edges, thresholds and provenance in its metadata; a
FITS copy (``save_fits``) carries the same table for users outside Python. Interpolation is
multilinear between cell centres in (theta_E, PSF FWHM, depth, arc magnitude); between an outer
edge and the outermost centre the nearest centre's value holds; outside the edges it refuses (a
selection function measured on a grid says nothing beyond it). Cells below the minimum count
interpolate to NaN. Written by hand because scipy's ``RegularGridInterpolator`` needs two points
per axis and has no notion of half-bins at the edges.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import OperatingPoint, read_artifact_meta, read_artifact_table, write_artifact_table
from lensaudit.artifacts.kinds import SELECTION_FUNCTION
from lensaudit.artifacts.operating import HEADLINE
from lensaudit.errors import InputError
from lensaudit.selection.grid import AXES, Grid
from lensaudit.selection.intervals import completeness_columns

META_KEY = SELECTION_FUNCTION.meta_key
VALUE_COLUMNS = ("completeness", "lo68", "hi68", "lo95", "hi95")


def completeness_table(recs: pd.DataFrame, grid: Grid, ops: list[OperatingPoint], min_count: int) -> pd.DataFrame:
    """One row per (cell, operating point): bin edges, n, k (``p >= t``), completeness, Jeffreys 68/95 percent
    limits, status."""
    n_cells = grid.n_cells
    cell = recs["cell"].to_numpy(np.int64) if len(recs) else np.zeros(0, np.int64)
    n = np.bincount(cell, minlength=n_cells)
    idx = np.unravel_index(np.arange(n_cells), grid.shape)
    base = {}
    for a, i in zip(AXES, idx, strict=True):
        base[f"i_{a}"] = i
        base[f"{a}_lo"] = grid.edges[a][i]
        base[f"{a}_hi"] = grid.edges[a][i + 1]
    frames = []
    for op in ops:
        k = np.bincount(cell, weights=op.detected(recs["probability"]).astype(float), minlength=n_cells) if len(recs) \
            else np.zeros(n_cells)
        frames.append(pd.DataFrame({"cell": np.arange(n_cells), **base, "threshold": op.name,
                                    "threshold_value": op.threshold, "n": n, "k": k.astype(np.int64),
                                    **completeness_columns(k, n, min_count)}))
    return pd.concat(frames, ignore_index=True)


class SelectionFunction:
    """Completeness C(theta_E, PSF, depth, arc magnitude) at named thresholds, with Jeffreys intervals."""

    def __init__(self, table: pd.DataFrame, meta: dict):
        self.table = table
        self.meta = meta
        self.grid = Grid({a: np.asarray(meta["edges"][a], float) for a in AXES})
        self.operating_points = [OperatingPoint.from_dict(t, "selection function") for t in meta["thresholds"]]
        self.thresholds = [op.name for op in self.operating_points]

    # ----------------------------------------------------------------- files
    def save(self, path: str | os.PathLike) -> Path:
        return write_artifact_table(self.table, path, SELECTION_FUNCTION, self.meta)

    def save_fits(self, path: str | os.PathLike) -> Path:
        from astropy.table import Table

        from lensaudit.utils.io import atomic_path

        t = Table.from_pandas(self.table)
        t.meta["LA_META"] = json.dumps(self.meta)[:60]  # a pointer; the full metadata is in the Parquet file
        t.meta["FAMILY"] = self.meta.get("family", "")
        path = Path(path)
        with atomic_path(path) as tmp:
            t.write(tmp, format="fits", overwrite=True)  # the temporary file exists, empty
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SelectionFunction:
        meta = read_artifact_meta(path, SELECTION_FUNCTION)
        if "edges" not in meta:
            raise InputError(f"{path}: not a lensaudit selection-function file (no grid metadata)")
        return cls(read_artifact_table(path, SELECTION_FUNCTION), meta)

    # ----------------------------------------------------------------- queries
    def cube(self, threshold: str, column: str = "completeness") -> np.ndarray:
        """Values on the grid (theta_e, psf_fwhm, depth, arc_mag) for one threshold."""
        if threshold not in self.thresholds:
            raise InputError(f"threshold {threshold!r} not in this selection function ({self.thresholds})")
        t = self.table[self.table["threshold"] == threshold].sort_values("cell")
        return t[column].to_numpy(float).reshape(self.grid.shape)

    def completeness(self, theta_e, psf_fwhm, depth, arc_mag, threshold: str = HEADLINE) -> dict[str, np.ndarray]:
        """Interpolated completeness and its 68/95 percent limits at points (arrays broadcast together):
        theta_E arcsec, r-band PSF FWHM arcsec, r-band 5-sigma depth AB mag, lensed arc r magnitude AB."""
        pts = dict(zip(AXES, np.broadcast_arrays(*(np.asarray(v, float) for v in (theta_e, psf_fwhm, depth, arc_mag))),
                       strict=True))
        for a, v in pts.items():
            e = self.grid.edges[a]
            bad = ~np.isfinite(v) | (v < e[0]) | (v > e[-1])
            if bad.any():
                raise InputError(f"selection function: {a} = {v[bad].ravel()[0]:g} lies outside the measured grid "
                                 f"[{e[0]:g}, {e[-1]:g}]; it does not extrapolate")
        lo_i, w = {}, {}
        for a, v in pts.items():
            c = self.grid.centres(a)
            x = np.clip(v, c[0], c[-1])
            if len(c) == 1:
                lo_i[a], w[a] = np.zeros(v.shape, int), np.zeros(v.shape)
                continue
            i = np.clip(np.searchsorted(c, x, side="right") - 1, 0, len(c) - 2)
            lo_i[a], w[a] = i, (x - c[i]) / (c[i + 1] - c[i])
        out = {}
        for col in VALUE_COLUMNS:
            cube = self.cube(threshold, col)
            acc = np.zeros(next(iter(pts.values())).shape)
            for corner in itertools.product((0, 1), repeat=len(AXES)):
                wt = np.ones_like(acc)
                ix = []
                for a, cbit in zip(AXES, corner, strict=True):
                    wt = wt * (w[a] if cbit else 1 - w[a])
                    ix.append(np.minimum(lo_i[a] + cbit, self.grid.shape[list(AXES).index(a)] - 1))
                val = cube[tuple(ix)]
                acc = acc + np.where(wt > 0, wt * val, 0.0)       # a NaN cell with weight > 0 makes the point NaN
            out[col] = acc
        return out

    def overall(self, threshold: str | None = None) -> dict:
        """Marginal completeness over every injection of the grid, per threshold (k / n with Jeffreys limits)."""
        out = {}
        for th in [threshold] if threshold else self.thresholds:
            t = self.table[self.table["threshold"] == th]
            k, n = int(t["k"].sum()), int(t["n"].sum())
            c = completeness_columns(k, n, 1)
            out[th] = {"k": k, "n": n, **{key: float(c[key]) for key in VALUE_COLUMNS}}
        return out


__all__ = ["META_KEY", "SelectionFunction", "completeness_table"]

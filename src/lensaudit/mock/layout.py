"""A mock survey directory as the renderer and the service read it: its files, its projection and
brick-cell geometry, and :class:`MockSurvey`, the loaded directory (written by :mod:`lensaudit.mock.survey`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import MockSurveyDir
from lensaudit.errors import LensauditError
from lensaudit.survey.constants import BRICK_SIZE_DEG, PIXEL_SCALE_ARCSEC

#: Exposure-map cells per brick side.
CELLS = 4


class SurveyError(LensauditError, ValueError):
    """A mock survey directory is incomplete or a request is invalid."""


# ----------------------------------------------------------------------------- projection
def tan_project(ra_deg, dec_deg, ra0: float, dec0: float, pixscale: float = PIXEL_SCALE_ARCSEC):
    """Gnomonic projection about (ra0, dec0) to global pixel offsets (x west-positive, y north), pixels."""
    a, d = np.deg2rad(np.asarray(ra_deg, float)), np.deg2rad(np.asarray(dec_deg, float))
    a0, d0 = np.deg2rad(ra0), np.deg2rad(dec0)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    k = np.rad2deg(1.0) * 3600.0 / pixscale
    return -xi * k, eta * k


def tan_deproject(x, y, ra0: float, dec0: float, pixscale: float = PIXEL_SCALE_ARCSEC):
    """Inverse of :func:`tan_project`: global pixel offsets to (ra, dec) degrees."""
    k = np.rad2deg(1.0) * 3600.0 / pixscale
    xi, eta = -np.asarray(x, float) / k, np.asarray(y, float) / k
    d0, a0 = np.deg2rad(dec0), np.deg2rad(ra0)
    rho = np.hypot(xi, eta)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(np.cos(c) * np.sin(d0) + np.where(rho > 0, eta * np.sin(c) * np.cos(d0) / rho, 0))
        ra = a0 + np.arctan2(xi * np.sin(c), rho * np.cos(d0) * np.cos(c) - eta * np.sin(d0) * np.sin(c))
    return np.rad2deg(ra) % 360.0, np.rad2deg(dec)


def brick_cell(ra, dec, footprint: dict, nside: int, cells: int = CELLS):
    """(brick index, cell column, cell row) of sky positions on the survey's brick grid; brick -1 outside."""
    colf = (np.asarray(ra, float) - footprint["ra_min"]) / BRICK_SIZE_DEG
    rowf = (np.asarray(dec, float) - footprint["dec_min"]) / BRICK_SIZE_DEG
    col, row = np.floor(colf).astype(int), np.floor(rowf).astype(int)
    ok = (col >= 0) & (col < nside) & (row >= 0) & (row < nside)
    cx = np.clip(np.floor((colf - col) * cells).astype(int), 0, cells - 1)
    cy = np.clip(np.floor((rowf - row) * cells).astype(int), 0, cells - 1)
    return np.where(ok, row * nside + col, -1), cx, cy



@dataclass
class MockSurvey:
    """A loaded mock survey directory."""

    root: Path
    meta: dict
    bricks: pd.DataFrame
    sources: pd.DataFrame
    lenses: pd.DataFrame
    exposure: np.ndarray
    artefacts: pd.DataFrame

    @staticmethod
    def check(root: str | os.PathLike) -> dict:
        """``survey.json``'s contents once ``root`` is a complete mock survey of a format this lensaudit renders;
        otherwise a :class:`SurveyError` naming the folder and what is wrong (reads no table)."""
        root = Path(root)
        md = MockSurveyDir(root)
        missing = [str(f.relative_to(root)) for f in md.required if not f.exists()]
        if missing:
            raise SurveyError(f"mock survey {root} is incomplete: missing {missing} (re-run `lensaudit mock build`)")
        meta = json.loads(md.survey_json.read_text())
        if meta.get("format") != "lensaudit-mock-survey":
            raise SurveyError(f"mock survey {root}: {md.survey_json.name} is not a lensaudit mock survey")
        if int(meta.get("version", 1)) < 2:
            raise SurveyError(f"mock survey {root}: format version {meta.get('version', 1)} is older than this lensaudit "
                              f"renders (2); rebuild it with `lensaudit mock build`")
        return meta

    @classmethod
    def load(cls, root: str | os.PathLike) -> MockSurvey:
        root = Path(root)
        meta = cls.check(root)
        md = MockSurveyDir(root)
        with np.load(md.exposure, allow_pickle=False) as z:
            exposure = z["nobs"]
        return cls(root, meta, pd.read_parquet(md.bricks), pd.read_parquet(md.sources), pd.read_parquet(md.lenses),
                   exposure, pd.read_parquet(md.artefacts))

    def truth(self) -> pd.DataFrame:
        """The truth table (evaluation code only)."""
        return pd.read_parquet(MockSurveyDir(self.root).truth)

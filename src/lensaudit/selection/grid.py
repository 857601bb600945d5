"""The selection-function grid: named axes with bin edges, and cells as their product.

Defaults follow the reference DR10 injection study: theta_E 0.5-3.0 arcsec in 0.25 steps, r-band PSF
FWHM 0.9-1.8 arcsec in 0.15 steps, r-band 5-sigma point-source depth 22.5-24.5 mag in 0.5 steps, and
the lensed arc r magnitude 19-25 in 1-mag steps.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Axis name -> (unit, the injection-record column it bins).
AXES = {"theta_e": ("arcsec", "theta_e"), "psf_fwhm": ("arcsec FWHM, r band", "host_psfsize_r"),
        "depth": ("AB mag, r-band 5-sigma point source", "host_depth_r"), "arc_mag": ("AB mag, lensed arc, r", "arc_mag_r")}


class AxisSpec(BaseModel):
    """Edges given explicitly, or as start, stop and step (stop included; the step must divide the range)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: float | None = None
    stop: float | None = None
    step: float | None = Field(None, gt=0)
    edges: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> AxisSpec:
        if self.edges is None and None in (self.start, self.stop, self.step):
            raise ValueError("an axis needs either edges or start, stop and step")
        if self.edges is None:
            n = (self.stop - self.start) / self.step
            if abs(n - round(n)) > 1e-6 * max(1.0, abs(n)):
                raise ValueError(f"axis step {self.step:g} does not divide the range {self.start:g}-{self.stop:g} "
                                 f"({n:.3f} steps): the top edge would move; give a step that divides it, or edges")
        e = self.bin_edges()
        if len(e) < 2:
            raise ValueError(f"an axis needs at least one bin (edges {list(e)}): the grid axis is empty")
        if not np.all(np.diff(e) > 0) or not np.isfinite(e).all():
            raise ValueError(f"axis edges must be finite and increasing, got {list(e)}")
        return self

    def bin_edges(self) -> np.ndarray:
        if self.edges is not None:
            return np.asarray(self.edges, float)
        n = int(round((self.stop - self.start) / self.step))
        return self.start + self.step * np.arange(n + 1)


class GridConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    theta_e: AxisSpec = AxisSpec(start=0.5, stop=3.0, step=0.25)
    psf_fwhm: AxisSpec = AxisSpec(start=0.9, stop=1.8, step=0.15)
    depth: AxisSpec = AxisSpec(start=22.5, stop=24.5, step=0.5)
    arc_mag: AxisSpec = AxisSpec(start=19.0, stop=25.0, step=1.0)

    @model_validator(mode="after")
    def _physical(self) -> GridConfig:
        if self.theta_e.bin_edges()[0] <= 0:
            raise ValueError("grid.theta_e: Einstein radii must be > 0 arcsec")
        if self.psf_fwhm.bin_edges()[0] <= 0:
            raise ValueError("grid.psf_fwhm: PSF FWHM must be > 0 arcsec")
        return self

    def edges(self) -> dict[str, np.ndarray]:
        return {a: getattr(self, a).bin_edges() for a in AXES}


class Grid:
    """Cells of the product of the axes, in C order (theta_e slowest, arc_mag fastest)."""

    def __init__(self, cfg: GridConfig | dict[str, np.ndarray]):
        self.edges = cfg.edges() if isinstance(cfg, GridConfig) else {a: np.asarray(cfg[a], float) for a in AXES}
        self.shape = tuple(len(self.edges[a]) - 1 for a in AXES)

    @property
    def n_cells(self) -> int:
        return int(np.prod(self.shape))

    def bin_of(self, axis: str, values) -> np.ndarray:
        """Bin index of values along ``axis`` (-1 outside the edges; the last edge belongs to the last bin)."""
        e = self.edges[axis]
        v = np.asarray(values, float)
        i = np.searchsorted(e, v, side="right") - 1
        i = np.where(v == e[-1], len(e) - 2, i)
        return np.where((v < e[0]) | (v > e[-1]) | ~np.isfinite(v), -1, i)

    def centres(self, axis: str) -> np.ndarray:
        e = self.edges[axis]
        return (e[:-1] + e[1:]) / 2


__all__ = ["AXES", "AxisSpec", "Grid", "GridConfig"]

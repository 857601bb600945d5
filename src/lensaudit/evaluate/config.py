"""Evaluation settings (every threshold, bin edge and resample count is stated here)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    split: str | None = Field("val", description="evaluate this split (None: every row)")
    thresholds: tuple[float, ...] = (0.3, 0.5)
    target_fprs: tuple[float, ...] = (1e-3, 1e-4)
    top_fraction: float = Field(1e-4, gt=0, lt=1, description="top 0.01 percent, as in DR10 searches")
    prevalences: tuple[float, ...] = Field((1e-3, 1e-4), description="deployment lens fractions for precision")
    n_boot: int = Field(2000, ge=100)
    block_bootstrap: bool = Field(True, description="also resample whole HEALPix pixels")
    seed: int = 0
    min_count: int = Field(10, ge=1, description="strata with fewer positives (or negatives) are 'insufficient'")
    calibration_bins: int = Field(10, ge=2)
    high_score: float = Field(0.5, description="reliability in the high-score region: probabilities above this")
    psfsize_edges_arcsec: tuple[float, ...] = (1.0, 1.2, 1.4, 1.6)
    depth_edges_mag: tuple[float, ...] = Field((23.5, 24.0, 24.5), description="r-band 5-sigma PSF depth, AB mag")
    ebv_edges_mag: tuple[float, ...] = (0.03, 0.06, 0.1)
    shortcut_yellow: float = 0.60
    shortcut_red: float = 0.70

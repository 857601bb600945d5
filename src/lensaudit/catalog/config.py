"""Typed configuration of the training-set build (every cut and threshold lives here).

Defaults follow the published DR10 protocol (Inchausti et al. 2025, arXiv:2508.20087): DECaLS
footprint -18 < Dec < 32 deg, >= 3 exposures in each of g, r, z, z < 20 AB mag, types SER, DEV,
REX, MASKBITS 1, 5, 6, 7, 11, 12, 13 excluded, nothing within 11 arcsec of a known candidate,
z-exposure bins 3-5, 6-10, 11+, ~100 negatives per positive with N1:N2 = 85:15, HEALPix
nside 128 (NESTED) spatial splits.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lensaudit.survey.constants import TRACTOR_TYPES
from lensaudit.survey.maskbits import MASKBITS

SPLIT_NAMES = ("train", "val", "test")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CutsConfig(_Strict):
    """Negative-pool cuts, applied in this order and each counted."""

    dec_min_deg: float = Field(-18.0, description="footprint: Dec > dec_min_deg (deg)")
    dec_max_deg: float = Field(32.0, description="footprint: Dec < dec_max_deg (deg)")
    min_nobs: int = Field(3, ge=0, description="exposures required in each of g, r, z")
    max_mag_z: float = Field(20.0, description="z < max_mag_z, AB mag from FLUX_Z (not extinction-corrected)")
    types: tuple[str, ...] = ("SER", "DEV", "REX")
    excluded_maskbits: tuple[int, ...] = (1, 5, 6, 7, 11, 12, 13)
    exclusion_radius_arcsec: float = Field(11.0, ge=0, description="no negative within this of any candidate")

    @field_validator("types")
    @classmethod
    def _types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [t for t in v if t not in TRACTOR_TYPES]
        if bad or not v:
            raise ValueError(f"unknown Tractor type(s) {bad}; choose from {list(TRACTOR_TYPES)}")
        return v

    @field_validator("excluded_maskbits")
    @classmethod
    def _bits(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        known = {int(m).bit_length() - 1 for m in MASKBITS}
        bad = [b for b in v if b not in known]
        if bad:
            raise ValueError(f"unknown MASKBITS bit(s) {bad}; DR10 defines bits {sorted(known)}")
        return v


class ConfuserProxies(_Strict):
    """Catalog proxies that tag a negative as a hard confuser (pool N2); first match names the category."""

    ring_min_sersic: float = Field(4.0, description="ring proxy: DEV, or SER with SERSIC >= this ...")
    ring_min_flux_r: float = Field(5.0, description="... and FLUX_R >= this (nanomaggies)")
    edge_on_min_ellipticity: float = Field(0.50, description="edge-on proxy: |e| from SHAPE_E1/E2 >= this ...")
    edge_on_min_shape_r: float = Field(0.6, description="... and SHAPE_R >= this (arcsec)")
    blue_max_g_minus_r: float = Field(0.4, description="blue clumpy: g - r <= this (AB mag) ...")
    blue_max_mag_r: float = Field(20.5, description="... and r <= this (AB mag)")
    large_min_shape_r: float = Field(2.0, description="large galaxy: SHAPE_R >= this (arcsec) ...")
    large_min_flux_r: float = Field(3.0, description="... and FLUX_R >= this (nanomaggies)")
    order: tuple[Literal["ring", "edge_on", "blue_clumpy", "large_galaxy"], ...] = (
        "ring", "edge_on", "blue_clumpy", "large_galaxy")


class SplitScheme(_Strict):
    """Fractions in the fixed split order (train, val, test); they must sum to 1."""

    name: str
    fractions: dict[Literal["train", "val", "test"], float]

    @model_validator(mode="after")
    def _sum(self) -> SplitScheme:
        if "train" not in self.fractions:
            raise ValueError(f"scheme {self.name}: needs a train fraction")
        if any(f <= 0 for f in self.fractions.values()):
            raise ValueError(f"scheme {self.name}: fractions must be positive, got {self.fractions}")
        if abs(sum(self.fractions.values()) - 1.0) > 1e-9:
            raise ValueError(f"scheme {self.name}: fractions sum to {sum(self.fractions.values())}, not 1")
        return self

    def ordered(self) -> list[tuple[str, float]]:
        return [(s, self.fractions[s]) for s in SPLIT_NAMES if s in self.fractions]


class SplitsConfig(_Strict):
    nside: int = Field(128, description="HEALPix nside (NESTED ordering)")
    seed: int = Field(42, ge=0, description="split hash seed: SHA-256 of '{pixel}_{seed}'")
    schemes: tuple[SplitScheme, ...] = (
        SplitScheme(name="70_30", fractions={"train": 0.7, "val": 0.3}),
        SplitScheme(name="70_15_15", fractions={"train": 0.7, "val": 0.15, "test": 0.15}),
    )

    @field_validator("nside")
    @classmethod
    def _nside(cls, v: int) -> int:
        if v < 1 or v & (v - 1) or v > 2**29:
            raise ValueError(f"nside must be a power of two in [1, 2^29], got {v}")
        return v


class HostMatchConfig(_Strict):
    """Host-matched negatives: within each (z-exposure bin, type) stratum, negatives are drawn per cell of a
    grid over host properties (quantile bins of the positives' z magnitude, g - r colour and size), in
    proportion to the positives in each cell, so that "massive red host" alone does not separate the
    classes. The verification compares positives and negatives per quantity with KS tests."""

    enabled: bool = False
    quantities: tuple[Literal["mag_z", "g_r", "shape_r"], ...] = ("mag_z", "g_r", "shape_r")
    bins: int = Field(3, ge=2, le=10, description="quantile bins of the positives per quantity")
    max_ks: float = Field(0.1, gt=0, le=1, description="verification fails when a quantity's KS statistic "
                                                         "between positives and negatives exceeds this and the "
                                                         "difference is significant (p < 0.01)")

    @field_validator("quantities")
    @classmethod
    def _q(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"host_match.quantities must be distinct and not empty, got {v}")
        return v


class SamplingConfig(_Strict):
    ratio: float = Field(100.0, gt=0, description="negatives per positive, per (z-exposure bin, type) stratum")
    n2_fraction: float = Field(0.15, ge=0, le=1, description="fraction of negatives drawn from the N2 pool")
    seed: int = Field(42, ge=0, description="seed of the stable hash order within strata")
    nobs_z_bins: tuple[int, ...] = Field((3, 6, 11), description="lower edges: 3-5, 6-10, 11+")
    host_match: HostMatchConfig = HostMatchConfig()
    fill_short_pool: bool = Field(
        False, description="when one pool (N1 or N2) of a stratum has too few eligible negatives, take the "
                           "difference from the other pool of the same stratum (reported in shortfalls.csv); "
                           "off by default: shortfalls are never filled unless asked")

    @field_validator("nobs_z_bins")
    @classmethod
    def _bins(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or list(v) != sorted(set(v)):
            raise ValueError(f"nobs_z_bins must be strictly increasing lower edges, got {v}")
        return v


class PositivesConfig(_Strict):
    match_radius_arcsec: float = Field(1.0, gt=0, description="nearest Tractor source within this")
    tier_weights: dict[Literal["A", "B"], float] = Field(
        default_factory=lambda: {"A": 1.0, "B": 1.0},
        description="per-tier sample weight (the tier-weighted variant uses A 1.0, B 0.5)")


class EvalSetConfig(_Strict):
    """A further positive channel kept apart as an evaluation set (e.g. the DESI DR1 SL VAC)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_\-]+$")
    path: str
    format: Literal["desi_sl_vac", "candidates_csv"] = "desi_sl_vac"


class CatalogConfig(_Strict):
    """One training-set build: inputs, cuts, proxies, splits, sampling, engine."""

    sweeps: str = Field(..., description="directory of sweep-*.fits files (or of ingested Parquet)")
    candidates: str = Field(..., description="lens-candidate CSV in the desi_lens_candidates.csv format; "
                                             "reference:desi_lens_candidates.csv names the copy shipped in the package")
    out: str = Field("catalog_out", description="output directory")
    engine: Literal["local", "spark"] = "local"
    workers: int = Field(1, ge=1, description="local engine: processes (1 = in-process)")
    spark_master: str | None = Field(
        "local[*]", description="spark engine: master URL; null leaves it to spark-submit (cluster runs)")
    on_bad_rows: Literal["error", "skip"] = Field(
        "skip", description="rows with NaN/out-of-range coordinates or duplicate ids: counted skip or error")
    cuts: CutsConfig = CutsConfig()
    confusers: ConfuserProxies = ConfuserProxies()
    positives: PositivesConfig = PositivesConfig()
    splits: SplitsConfig = SplitsConfig()
    sampling: SamplingConfig = SamplingConfig()
    eval_sets: tuple[EvalSetConfig, ...] = Field((), description="extra positives, written as evalset_<name>.parquet")

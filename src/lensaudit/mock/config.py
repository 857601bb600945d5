"""Configuration of a mock DR10 survey (validated; every rate is stated here)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ConfuserRates(BaseModel):
    """Confusers per square degree, by category (painted onto existing catalog galaxies/stars)."""

    model_config = ConfigDict(extra="forbid")
    ring: float = Field(15.0, ge=0)
    spiral: float = Field(60.0, ge=0)
    merger: float = Field(40.0, ge=0)
    edge_on: float = Field(80.0, ge=0)
    blue_clumpy: float = Field(60.0, ge=0)
    star_artefact: float = Field(20.0, ge=0)


class MockConfig(BaseModel):
    """A mock DR10 survey: a square patch on the brick grid with a known lens population."""

    model_config = ConfigDict(extra="forbid")
    area_deg2: float = Field(0.25, ge=0.0625, le=25.0, description="patch area, deg^2 (whole 0.25 deg bricks)")
    seed: int = Field(42, ge=0, lt=2**32)
    ra_center_deg: float = Field(150.125, ge=5.0, lt=355.0)
    dec_center_deg: float = Field(1.125, ge=-17.0, le=30.0, description="inside the DECaLS footprint")
    galaxy_r_mag_range: tuple[float, float] = (16.0, 24.0)
    star_fraction: float = Field(0.35, ge=0, le=2, description="stars per galaxy")
    lens_rate_per_deg2: float = Field(200.0, ge=0, le=5000, description="true lenses per deg^2 (boosted)")
    theta_e_range_arcsec: tuple[float, float] = (0.5, 3.0)
    source_r_mag_range: tuple[float, float] = (22.0, 25.0)
    confusers: ConfuserRates = ConfuserRates()
    tier_a_max_arc_mag: float = Field(21.8, description="lenses with lensed r mag brighter than this are Tier A")
    tier_b_max_arc_mag: float = Field(23.2, description="fainter lenses up to this are Tier B")
    tier_b_lens_completeness: float = Field(0.7, ge=0, le=1, description="fraction of eligible lenses catalogued")
    tier_b_false_fraction: float = Field(0.25, ge=0, lt=1, description="fraction of Tier-B that are non-lenses")

    @model_validator(mode="after")
    def _check(self) -> MockConfig:
        for name in ("galaxy_r_mag_range", "theta_e_range_arcsec", "source_r_mag_range"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"{name}: lower bound {lo} must be below upper bound {hi}")
        return self

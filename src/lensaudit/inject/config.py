"""Typed settings of the injection engine: parameter priors, source families and rendering.

Every prior is stated here with its units and can be changed in YAML; nothing in this package
reads the mock's truth table. Defaults follow the published DR10 injection protocol where it
states one (SIE + shear, source area-weighted within 0.1-0.4 theta_E, observer-frame colours
g - r ~ N(1.15, 0.30), r - z ~ N(0.85, 0.20)) and are otherwise broad and uninformative.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Interval = tuple[float, float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ordered(name: str, v: Interval, lo: float | None = None, hi: float | None = None) -> Interval:
    a, b = float(v[0]), float(v[1])
    if not a <= b:
        raise ValueError(f"{name}: lower bound {a} above upper bound {b}")
    if lo is not None and a < lo or hi is not None and b > hi:
        raise ValueError(f"{name}: ({a}, {b}) outside the physical range [{lo}, {hi}]")
    return (a, b)


class Priors(_Strict):
    """Distributions of the lens, source position and brightness (shared by every family)."""

    theta_e_arcsec: Interval = Field((0.5, 3.0), description="Einstein radius, arcsec, uniform (a grid cell narrows it)")
    q_lens: Interval = Field((0.5, 1.0), description="SIE minor/major axis ratio, uniform")
    shear_max: float = Field(0.1, ge=0, lt=1, description="external shear modulus, uniform in [0, shear_max]; angle uniform")
    centre_jitter_arcsec: float = Field(0.05, ge=0, description="sd per axis of the lens centre about the host centre, arcsec")
    beta_frac: Interval = Field((0.1, 0.4), description="source offset / theta_E, area-weighted (uniform in beta^2)")
    brightness: Literal["lensed", "source"] = Field(
        "lensed", description="lensed: arc_mag_r is the total lensed r magnitude of the rendered arc (the grid axis); "
                              "source: src_mag_r is the unlensed source magnitude")
    arc_mag_r: Interval = Field((19.0, 24.0), description="lensed arc r magnitude, AB, uniform")
    src_mag_r: Interval = Field((21.0, 25.0), description="unlensed source r magnitude, AB, uniform (brightness: source)")
    g_r: tuple[float, float] = Field((1.15, 0.30), description="observer-frame g - r (mean, sd), AB, parametric families")
    r_z: tuple[float, float] = Field((0.85, 0.20), description="observer-frame r - z (mean, sd), AB, parametric families")
    src_re_arcsec: Interval = Field((0.1, 0.6), description="circularised half-light radius, arcsec, log-uniform")
    src_n: Interval = Field((0.5, 4.0), description="Sersic index, uniform")
    src_q: Interval = Field((0.4, 1.0), description="source axis ratio, uniform")

    @model_validator(mode="after")
    def _ranges(self) -> Priors:
        _ordered("priors.theta_e_arcsec", self.theta_e_arcsec, 1e-3, 10.0)
        if self.theta_e_arcsec[0] <= 0:
            raise ValueError("priors.theta_e_arcsec: theta_E must be > 0 arcsec")
        _ordered("priors.q_lens", self.q_lens, 1e-3, 1.0)
        _ordered("priors.beta_frac", self.beta_frac, 0.0, 2.0)
        _ordered("priors.arc_mag_r", self.arc_mag_r, 10.0, 35.0)
        _ordered("priors.src_mag_r", self.src_mag_r, 10.0, 35.0)
        _ordered("priors.src_re_arcsec", self.src_re_arcsec, 1e-3, 10.0)
        _ordered("priors.src_n", self.src_n, 0.2, 8.0)
        _ordered("priors.src_q", self.src_q, 0.05, 1.0)
        for name in ("g_r", "r_z"):
            if getattr(self, name)[1] < 0:
                raise ValueError(f"priors.{name}: sd must be >= 0")
        return self


class FamilyConfig(_Strict):
    """One named source family."""

    name: str = Field(..., min_length=1)
    kind: Literal["sersic", "clumpy", "stamps", "planted"]
    stamp_library: str | None = Field(None, description="stamps: the stamp library FITS file, or one half of it: "
                                                        "PATH:A or PATH:B (a universe whose true sources come from "
                                                        "one half is audited with the other)")
    n_knots: tuple[int, int] = Field((2, 8), description="clumpy: number of star-forming knots, uniform integer")
    knot_fraction: Interval = Field((0.2, 0.5), description="clumpy: fraction of the source light in knots")
    knot_sigma_arcsec: Interval = Field((0.03, 0.08), description="clumpy: Gaussian knot width, arcsec")
    knot_colour_offset: tuple[float, float] = Field((-0.4, 0.15), description="clumpy: knot g - r (and 0.75x r - z) "
                                                                               "offset from the disc (mean, sd), mag")

    @model_validator(mode="after")
    def _needs(self) -> FamilyConfig:
        if self.kind == "stamps" and not self.stamp_library:
            raise ValueError(f"family {self.name!r}: kind 'stamps' needs stamp_library (a FITS file)")
        if not 0 <= self.n_knots[0] <= self.n_knots[1] <= 16:
            raise ValueError(f"family {self.name!r}: n_knots must satisfy 0 <= lo <= hi <= 16")
        return self

    @property
    def planted(self) -> bool:
        """A deliberately unrealistic family (no PSF convolution, no noise): a test of the realism gate."""
        return self.kind == "planted"


class EngineConfig(_Strict):
    """How arcs are rendered and added to host cutouts."""

    render_box_pix: int = Field(51, ge=9, description="side of the region ray-traced around the centre, pixels (odd)")
    oversample: int = Field(3, ge=1, le=10, description="sub-pixels per pixel side; block-averaged to 0.262 arcsec")
    psf_model: Literal["moffat", "gaussian"] = "moffat"
    moffat_beta: float = Field(3.5, gt=1.0, description="Moffat beta (DECam cores are near 3-4)")
    psf_kernel_pix: int = Field(25, ge=5, description="PSF kernel side, pixels (odd); normalised to sum 1 within it")
    shot_noise: bool = Field(True, description="add the arc's Poisson noise (Gaussian approximation)")
    gain_e_per_nmgy: tuple[float, float, float] = Field(
        (1000.0, 1200.0, 600.0), description="g, r, z electrons per nanomaggy of a coadd (DECam zeropoints x one 90 s "
                                             "exposure: a conservative, noisier choice)")
    noise_correlation: Literal["none", "host"] = Field(
        "host", description="host: correlate the arc noise like the host's pixels (lag-1 correlation measured on the "
                            "stamp border)")
    keep_freed_memory: bool = Field(True, description="raise glibc's mmap/trim thresholds so freed tensors are reused "
                                                      "(about 2.5x faster on CPU; see lensaudit.utils.alloc)")
    chunk: int = Field(16, ge=1, description="injections rendered together (memory; results do not depend on it)")
    render_batch: int | None = Field(
        None, ge=1, description="injections ray-traced at once within a chunk, eager path (None: 8 on a CPU, whose "
                                "temporaries of 8 x (render_box_pix x oversample)^2 floats stay in the core's cache, "
                                "about twice as fast as 64 at once; the whole chunk on a GPU); results do not depend on "
                                "it (to float32 rounding, as with chunk)")
    device: str = Field("cpu", description="cpu, cuda or auto")
    dtype: Literal["float32", "float64"] = "float32"
    compile: bool = Field(False, description="torch.compile the ray tracing and source light (about 2.5x faster on "
                                             "CPU after a compilation of tens of seconds: pays from about 10^4 "
                                             "injections); arcs equal the eager ones to float32 round-off, not bit "
                                             "for bit")

    @field_validator("render_box_pix", "psf_kernel_pix")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd, got {v}")
        return v


__all__ = ["EngineConfig", "FamilyConfig", "Priors"]

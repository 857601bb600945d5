"""Configuration of a mock DR10 survey (validated; every rate, range and prior is stated here).

The mock's true lenses are deliberately *richer* than any injection family (the sky is richer
than any simulation): power-law elliptical mass with external shear, m = 3 and m = 4
multipoles, mass-light misalignment, satellites and group convergence for a minority; sources
at z_s 1-3 rendered as textured images (Gaussian-random-field discs, bulges, arms, bars,
several components, star-forming knots, dust, colour gradients; 15 percent red and passive);
a PSF per brick and band that the catalog does not describe exactly; noise from exposure maps
that vary inside a brick; a faint galaxy background to r = 27; artefacts. The earlier family
(SIE + shear, Sersic + Gaussian knots) stays available as ``lenses.family: simple``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _ordered(name: str, pair: tuple[float, float], lo: float | None = None, hi: float | None = None) -> None:
    a, b = pair
    if not a < b:
        raise ValueError(f"{name}: lower bound {a} must be below upper bound {b}")
    if lo is not None and a < lo:
        raise ValueError(f"{name}: {a} is below the physical minimum {lo}")
    if hi is not None and b > hi:
        raise ValueError(f"{name}: {b} is above the physical maximum {hi}")


class Prior(_Strict):
    """A normal prior truncated to [lo, hi]."""

    mean: float
    sd: float = Field(..., ge=0)
    lo: float
    hi: float

    @model_validator(mode="after")
    def _check(self) -> Prior:
        _ordered("prior range", (self.lo, self.hi))
        if not self.lo <= self.mean <= self.hi:
            raise ValueError(f"prior mean {self.mean} outside its range [{self.lo}, {self.hi}]")
        return self


class LensPopulation(_Strict):
    """The mock's true lenses (truth for measuring, never for fitting)."""

    family: Literal["rich", "simple"] = Field("rich", description="rich (default) or simple (SIE + Sersic, for tests)")
    rate_per_eligible_red: float = Field(
        0.04, gt=0, le=0.04,
        description="lenses per eligible red (DEV/SER, z < 20 AB) galaxy; at most 1 in 25. Real DR10: about 5,100 "
                    "catalogued candidates over about 14,000 deg^2 against roughly 10^3 eligible red galaxies per "
                    "deg^2, i.e. of order 1 in 3,000")
    host_max_mag_z: float = Field(20.0, description="hosts are red DEV/SER galaxies brighter than this (z band, AB)")
    theta_e_arcsec: tuple[float, float] = Field((0.5, 3.0), description="Einstein radius range, arcsec")
    theta_e_at_r19: float = Field(1.8, gt=0, le=5, description="median theta_E (arcsec) of an r = 19 host, before "
                                  "truncation to theta_e_arcsec; 0.2 dex log-normal scatter")
    theta_e_mag_scaling: float = Field(0.1, ge=0, le=0.2, description="d log10 theta_E / d(-r_host): 0.2 would be "
                                       "theta_E ~ L^0.5 at one distance; apparent magnitude mixes distances, so less")
    slope: Prior = Prior(mean=2.0, sd=0.15, lo=1.6, hi=2.4)
    axis_ratio: Prior = Prior(mean=0.75, sd=0.15, lo=0.3, hi=0.99)
    misalignment_deg: float = Field(5.0, ge=0, le=45, description="sd of the mass-light position-angle offset, deg")
    shear_sd: float = Field(0.05, ge=0, le=0.3, description="external shear, sd per component")
    multipole_sd: float = Field(0.01, ge=0, le=0.1, description="m = 3, 4 amplitudes a_m / theta_E, sd")
    satellite_fraction: float = Field(0.2, ge=0, le=1, description="lenses with a satellite (SIS) nearby")
    satellite_theta_e_frac: tuple[float, float] = Field((0.05, 0.2), description="satellite theta_E / main theta_E")
    group_fraction: float = Field(0.1, ge=0, le=1, description="lenses in a group (uniform convergence)")
    group_kappa: tuple[float, float] = Field((0.03, 0.12), description="group convergence range")
    source_z: tuple[float, float] = Field((1.0, 3.0), description="source redshift range")
    source_mag_r: tuple[float, float] = Field((21.0, 25.0), description="intrinsic (unlensed) source r magnitude range, "
                                               "AB; fainter sources are seldom seen at DR10 depth")
    source_counts_slope: float = Field(0.33, gt=0, le=1, description="source number counts dN/dm ~ 10^(slope m)")
    red_source_fraction: float = Field(0.15, ge=0, le=1, description="passive (red, smooth) sources")
    source_re_arcsec: tuple[float, float] = Field((0.1, 0.6), description="source disc half-light radius range")
    source_colour_shift: tuple[float, float] = Field((0.0, 0.0), description="procedural sources: added to every "
                                                     "drawn (g - r, r - z), AB mag (a perturbed universe)")
    beta_max: float = Field(0.5, gt=0, le=2, description="source offsets area-weighted within beta_max x theta_E")
    sources: str = Field("procedural", description="the lensed sources' population: procedural (the mock's own "
                         "generator), or a stamp library half: xdf:A or xdf:B (real galaxies of the Hubble XDF, "
                         "built once) or PATH:A / PATH:B (a library file, e.g. from ``lensaudit sources build-xdf``)")
    size_luminosity: tuple[float, float, float, float] = Field(
        (0.15, 24.0, 0.27, 0.2), description="library sources: half-light radius r_e = r0 x 10^(-0.4 beta (m - m0)) "
        "arcsec with log-normal scatter (r0 arcsec, m0 r-band AB, beta, sd dex): the size-luminosity relation of "
        "star-forming galaxies (Shibuya, Ouchi & Harikane 2015, r_e ~ L^0.27, ~0.2 dex), about 1.2 kpc at m = 24 for "
        "z ~ 1-3. Each source takes a stamp of about that size and is rescaled to it")
    stamp_scale_range: tuple[float, float] = Field((0.5, 3.0), description="library sources: the stamp rescaling to "
                                                   "the drawn r_e is clipped to this range")

    @model_validator(mode="after")
    def _check(self) -> LensPopulation:
        _ordered("lenses.theta_e_arcsec", self.theta_e_arcsec, 0.05, 10.0)
        _ordered("lenses.satellite_theta_e_frac", self.satellite_theta_e_frac, 0.0, 1.0)
        _ordered("lenses.group_kappa", self.group_kappa, 0.0, 0.5)
        _ordered("lenses.source_z", self.source_z, 0.2, 6.0)
        _ordered("lenses.source_mag_r", self.source_mag_r, 15.0, 30.0)
        _ordered("lenses.source_re_arcsec", self.source_re_arcsec, 0.01, 3.0)
        if not (1.0 < self.slope.lo and self.slope.hi < 3.0):
            raise ValueError(f"lenses.slope: range [{self.slope.lo}, {self.slope.hi}] must lie inside (1, 3)")
        if self.sources != "procedural":
            from lensaudit.sources.library import split_spec

            path, half = split_spec(self.sources)
            if half is None:
                raise ValueError(f"lenses.sources: {self.sources!r} names no half; use procedural, PATH:A or PATH:B")
            if self.family != "rich":
                raise ValueError("lenses.sources: a stamp library needs lenses.family rich")
        _ordered("lenses.stamp_scale_range", self.stamp_scale_range, 0.05, 20.0)
        if not (self.size_luminosity[0] > 0 and self.size_luminosity[3] >= 0):
            raise ValueError("lenses.size_luminosity: r0 must be > 0 arcsec and the scatter >= 0 dex")
        if not (0.0 < self.axis_ratio.lo and self.axis_ratio.hi <= 1.0):
            raise ValueError(f"lenses.axis_ratio: q range [{self.axis_ratio.lo}, {self.axis_ratio.hi}] must lie in (0, 1]")
        return self


class Grading(_Strict):
    """The mock grader: a person looking at the cutout decides from detectability, with noise.

    P(catalogued) and P(Tier A | catalogued) rise with the arc's visible peak S/N (its brightest pixel
    against the noise and ``host_confusion`` x the host light, in its best band), with theta_E / FWHM
    and with the magnification (how arc-like the images look),
    each a normal CDF (probit; in log10 for S/N and magnification); ``noise_dex`` scatters each lens's
    perceived S/N. Tier-B contaminants are drawn from the confuser population."""

    host_confusion: float = Field(0.4, ge=0, le=1, description="the grader sees the arc S/N with the host light "
                                  "adding (this x host)^2 to each pixel's variance (``arc_snr_visible``)")
    snr_catalogued: float = Field(3.5, gt=0, description="visible peak S/N at which half of the lenses are catalogued")
    snr_tier_a: float = Field(7.0, gt=0, description="visible peak S/N at which half of the catalogued lenses are Tier A")
    width_dex: float = Field(0.15, gt=0, description="probit width (sd) in log10 S/N")
    resolution_catalogued: float = Field(0.45, gt=0, description="theta_E / FWHM for half catalogued")
    resolution_tier_a: float = Field(0.7, gt=0, description="theta_E / FWHM for half Tier A")
    resolution_width: float = Field(0.1, gt=0)
    magnification_catalogued: float = Field(3.0, gt=0, description="magnification (r) for half catalogued: a person "
                                             "recognises a lens by stretched arcs and counter-images, not by flux")
    magnification_tier_a: float = Field(5.0, gt=0, description="magnification (r) for half Tier A")
    magnification_width_dex: float = Field(0.1, gt=0)
    noise_dex: float = Field(0.1, ge=0, description="scatter of the perceived S/N, dex")
    tier_b_false_fraction: float = Field(0.10, ge=0, lt=1, description="fraction of Tier B that are not lenses "
                                         "(an assumption: DR10 Tier-B purity is not measured)")

    @model_validator(mode="after")
    def _check(self) -> Grading:
        if self.snr_tier_a < self.snr_catalogued:
            raise ValueError("grading: snr_tier_a must not be below snr_catalogued")
        return self


class PsfModel(_Strict):
    """Per brick and band: an elliptical Moffat core with its own beta plus a broad Moffat wing."""

    beta: tuple[float, float] = Field((2.5, 4.5), description="Moffat beta range of the core")
    wing_fraction: tuple[float, float] = Field((0.03, 0.12), description="fraction of light in the wing")
    ellipticity_max: float = Field(0.08, ge=0, lt=0.5, description="core ellipticity (1 - b/a) / (1 + b/a), max")
    psfsize_scatter: float = Field(0.05, ge=0, le=0.3, description="catalog PSFSIZE = true FWHM x (1 + N(0, this))")

    @model_validator(mode="after")
    def _check(self) -> PsfModel:
        _ordered("psf.beta", self.beta, 1.5, 10.0)
        _ordered("psf.wing_fraction", self.wing_fraction, 0.0, 0.5)
        return self


class Confusers(_Strict):
    """Confusers: morphology fractions among host classes (published fractions) and rates per deg^2."""

    spiral_fraction_of_discs: float = Field(0.6, ge=0, le=1, description="discs with spiral arms (Galaxy Zoo 2: ~2/3)")
    bar_fraction_of_discs: float = Field(0.3, ge=0, le=1, description="discs with a bar (Masters et al. 2011: ~30%)")
    ring_fraction_of_early: float = Field(0.04, ge=0, le=1, description="S0/early types with a star-forming ring")
    shell_fraction_of_early: float = Field(0.06, ge=0, le=1,
                                           description="early types with tidal shells or streams at DR10 depth")
    companion_fraction_of_early: float = Field(0.05, ge=0, le=1,
                                               description="early types with tangentially aligned blue companions")
    merger_per_deg2: float = Field(40.0, ge=0)
    edge_on_per_deg2: float = Field(80.0, ge=0)
    blue_clumpy_per_deg2: float = Field(60.0, ge=0)
    star_artefact_per_deg2: float = Field(20.0, ge=0, description="bright stars with spikes, halos and ghosts")

    @model_validator(mode="after")
    def _check(self) -> Confusers:
        if self.spiral_fraction_of_discs + self.bar_fraction_of_discs > 1:
            raise ValueError("confusers: spiral and bar fractions of discs add up to more than 1")
        if self.ring_fraction_of_early + self.shell_fraction_of_early + self.companion_fraction_of_early > 1:
            raise ValueError("confusers: ring, shell and companion fractions of early types add up to more than 1")
        return self


class Artefacts(_Strict):
    satellite_trails_per_deg2: float = Field(3.0, ge=0, description="residual satellite trails (one band each)")
    cosmic_rays_per_deg2: float = Field(400.0, ge=0, description="cosmic-ray residuals where a band has <= 2 exposures")
    bleed_star_max_mag: float = Field(12.5, description="stars brighter than this (r, AB) bleed along columns")


class StampLibrarySettings(_Strict):
    """The deep-field stamp library ``mock build`` writes for the ``stamps`` injection family: sources from the
    mock's own source generator under their own seed stream (never its true lenses' sources), rendered as a
    deep space-telescope library is: fine pixels, a small PSF and a little noise."""

    n_stamps: int = Field(120, ge=0, le=5000, description="stamps to write (0: no library)")
    pixscale_arcsec: float = Field(0.03, gt=0, le=0.2)
    size_pix: int = Field(160, ge=16, le=512)
    mag_r_range: tuple[float, float] = Field((20.0, 23.0), description="r magnitudes of the library's sources, AB "
                                                                       "(bright in the deep imaging)")
    psf_fwhm_arcsec: float = Field(0.08, gt=0, description="Gaussian PSF of the deep imaging")
    sb_limit_1sigma: float = Field(30.0, description="1-sigma surface-brightness noise in 1 arcsec^2, AB mag / arcsec^2 "
                                                           "(about the Hubble Ultra Deep Field)")


class SeeingTail(_Strict):
    """A perturbation of the observing conditions: a random ``fraction`` of the bricks observed in seeing worse by
    ``factor`` (every band's PSF FWHM multiplied; depths kept), beyond the real DR10 distribution."""

    fraction: float = Field(0.0, ge=0, le=1)
    factor: float = Field(1.3, ge=1.0, le=3.0)


class MockConfig(_Strict):
    """A mock DR10 survey: a square patch on the brick grid with a known lens population."""

    area_deg2: float = Field(0.25, ge=0.0625, le=64.0, description="patch area, deg^2 (whole 0.25 deg bricks)")
    seed: int = Field(42, ge=0, lt=2**32)
    ra_center_deg: float = Field(150.125, ge=5.0, lt=355.0)
    dec_center_deg: float = Field(1.125, ge=-17.0, le=30.0, description="inside the DECaLS footprint")
    galaxy_r_mag_range: tuple[float, float] = Field((16.0, 24.0), description="catalogued galaxies, AB")
    faint_background_r_mag: float = Field(27.0, ge=24.0, le=30.0,
                                          description="uncatalogued galaxies from the catalog limit to this, AB")
    star_fraction: float = Field(0.35, ge=0, le=2, description="stars per galaxy")
    lenses: LensPopulation = LensPopulation()
    grading: Grading = Grading()
    psf: PsfModel = PsfModel()
    confusers: Confusers = Confusers()
    artefacts: Artefacts = Artefacts()
    stamp_library: StampLibrarySettings = StampLibrarySettings()
    seeing_tail: SeeingTail = SeeingTail()

    @model_validator(mode="after")
    def _check(self) -> MockConfig:
        _ordered("galaxy_r_mag_range", self.galaxy_r_mag_range, 10.0, 26.0)
        if self.faint_background_r_mag <= self.galaxy_r_mag_range[1]:
            raise ValueError(f"faint_background_r_mag {self.faint_background_r_mag} must be fainter than the catalog "
                             f"limit {self.galaxy_r_mag_range[1]}")
        return self

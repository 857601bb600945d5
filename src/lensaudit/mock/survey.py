"""Building and loading a mock DR10 survey directory.

Layout::

    survey.json                 config, projection, footprint, counts, provenance (written last)
    README.txt                  what every file holds, and how the truth was made
    bricks.parquet              per-brick footprint, observing conditions, the true PSF per band,
                                the catalog's PSFSIZE, noise calibration
    sweeps/sweep-*.fits         sweep-format FITS (real DR10 columns, dtypes, units; SWEEP HDU)
    candidates.csv              lens candidates in the real desi_lens_candidates.csv format
    truth/truth.parquet         every lens and confuser with its parameters and measured truth
                                (evaluation only: never for fitting a model, threshold or prior)
    internal/sources.parquet    true parameters of every catalogued object (not a DR10 product)
    internal/lenses.parquet     mass model and source of every lens
    internal/exposure.npz       exposure counts per brick, band and cell (cells x cells per brick)
    internal/artefacts.parquet  residual satellite trails
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import MockSurveyDir
from lensaudit.artifacts.identity import object_id
from lensaudit.mock.conditions import add_psf_and_noise, draw_brick_conditions, draw_exposure_maps
from lensaudit.mock.config import MockConfig
from lensaudit.mock.layout import CELLS, MockSurvey, SurveyError, brick_cell, tan_project
from lensaudit.mock.population import FEATURE_KINDS, add_features, add_lenses, eligible_red, sample_sources
from lensaudit.reference import ReferenceData, load_reference
from lensaudit.survey.columns import sweep_numpy_dtype
from lensaudit.survey.constants import BRICK_SIZE_DEG, PIXEL_SCALE_ARCSEC, RELEASE_DR10
from lensaudit.survey.geometry import brickname, sweep_boxes, sweep_filename
from lensaudit.survey.maskbits import MASKBITS
from lensaudit.survey.photometry import mw_transmission
from lensaudit.survey.sweepio import write_sweep_fits
from lensaudit.utils.io import atomic_path, atomic_write_json, atomic_write_text
from lensaudit.utils.provenance import run_info
from lensaudit.utils.seeds import rng

log = logging.getLogger(__name__)
# ----------------------------------------------------------------------------- build
def _brick_grid(cfg: MockConfig) -> pd.DataFrame:
    nside = max(1, int(round(np.sqrt(cfg.area_deg2) / BRICK_SIZE_DEG)))
    dec_lo = np.floor((cfg.dec_center_deg - nside * BRICK_SIZE_DEG / 2) / BRICK_SIZE_DEG) * BRICK_SIZE_DEG
    ra_lo = np.floor((cfg.ra_center_deg - nside * BRICK_SIZE_DEG / 2) / BRICK_SIZE_DEG) * BRICK_SIZE_DEG
    rows = []
    for j in range(nside):
        for i in range(nside):
            ra1, dec1 = ra_lo + i * BRICK_SIZE_DEG, dec_lo + j * BRICK_SIZE_DEG
            rows.append({"ra1": ra1, "ra2": ra1 + BRICK_SIZE_DEG, "dec1": dec1, "dec2": dec1 + BRICK_SIZE_DEG})
    b = pd.DataFrame(rows)
    b["ra"] = (b.ra1 + b.ra2) / 2
    b["dec"] = (b.dec1 + b.dec2) / 2
    b["brickname"] = brickname(b["ra"].to_numpy(), b["dec"].to_numpy())
    b["brickid"] = (((b["dec1"] + 90) / BRICK_SIZE_DEG).round().astype(int) * 1440
                    + (b["ra1"] / BRICK_SIZE_DEG).round().astype(int) + 1)
    return b


def build_survey(cfg: MockConfig, out: str | os.PathLike, reference: ReferenceData | None = None) -> dict:
    """Build a mock survey into ``out`` (deterministic for cfg.seed and the reference data); returns a summary.

    ``reference``: the real DR10 conditions to draw from (default: :func:`lensaudit.reference.load_reference`).
    """
    out = Path(out)
    reference = reference or load_reference()
    bricks = _brick_grid(cfg)
    area = float(len(bricks) * BRICK_SIZE_DEG**2 * np.cos(np.deg2rad(cfg.dec_center_deg)))
    # one named seed stream per sub-population and purpose: more draws in one never shift another
    bricks = pd.concat([bricks, draw_brick_conditions(len(bricks), reference, rng(cfg.seed, "mock.conditions"))],
                       axis=1)
    if cfg.seeing_tail.fraction > 0:            # a perturbed universe: worse seeing in some bricks (own stream)
        worse = rng(cfg.seed, "mock.seeing_tail").random(len(bricks)) < cfg.seeing_tail.fraction
        for b in "grz":
            bricks.loc[worse, f"psfsize_{b}"] *= cfg.seeing_tail.factor
    src = sample_sources(cfg, bricks, rng(cfg.seed, "mock.sources"))
    src["_key"] = np.arange(len(src))
    library = None
    if cfg.lenses.sources != "procedural":      # the true lenses' sources: a stamp library half, copied in
        from lensaudit.sources.xdf import open_library

        library = open_library(cfg.lenses.sources)
        library.write(MockSurveyDir(out).source_library)
    src, lenses = add_lenses(cfg, src, cfg.seed, library)
    if not len(lenses):
        raise SurveyError(f"mock config: area {cfg.area_deg2} deg^2 with {cfg.lenses.rate_per_eligible_red} lenses per "
                          f"eligible red galaxy gives no lens; increase area_deg2 or lenses.rate_per_eligible_red")
    lenses["_key"] = src["_key"].to_numpy()[lenses.pop("src_row").to_numpy()]
    src = add_features(cfg, src, area, cfg.seed)
    src.loc[src["_key"].isna(), "_key"] = -1
    # keep sources inside the footprint and (re)assign bricks
    fp = {"ra_min": float(bricks.ra1.min()), "ra_max": float(bricks.ra2.max()), "dec_min": float(bricks.dec1.min()),
          "dec_max": float(bricks.dec2.max())}
    nside = int(round(np.sqrt(len(bricks))))
    bidx, cx, cy = brick_cell(src.ra.to_numpy(), src.dec.to_numpy(), fp, nside)
    src = src.assign(brick_idx=bidx, cell_x=cx, cell_y=cy)[bidx >= 0]
    src = src.sort_values(["brick_idx", "ra"], kind="stable").reset_index(drop=True)
    src["objid"] = src.groupby("brick_idx").cumcount().astype(np.int32)
    src["brickname"] = bricks["brickname"].to_numpy()[src.brick_idx]
    src["id"] = object_id(src["brickname"], src["objid"])
    ra0, dec0 = cfg.ra_center_deg, cfg.dec_center_deg
    src["gx"], src["gy"] = tan_project(src.ra.to_numpy(), src.dec.to_numpy(), ra0, dec0)
    key_to_id = dict(zip(src["_key"].astype(int), src["id"], strict=True))
    lenses["id"] = lenses.pop("_key").astype(int).map(key_to_id)
    lenses = lenses[lenses["id"].notna()].reset_index(drop=True)
    src = src.drop(columns="_key")

    bricks = add_psf_and_noise(bricks, cfg.psf, rng(cfg.seed, "mock.psf"))
    exposure = draw_exposure_maps(bricks, rng(cfg.seed, "mock.exposure"), CELLS)
    artefacts = draw_trails(cfg, bricks, rng(cfg.seed, "mock.trails"), ra0, dec0)
    src["maskbits"] = (_maskbits_near_bright_stars(src) | _maskbits_bleed(src, cfg.artefacts.bleed_star_max_mag)
                       | _maskbits_trails(src, artefacts))

    md = MockSurveyDir(out)
    for d in (md.sweeps, md.truth.parent, md.sources.parent):
        d.mkdir(parents=True, exist_ok=True)
    sweep_files = write_sweeps(src, bricks, exposure, md.sweeps, rng(cfg.seed, "mock.sweeps"))
    with atomic_path(md.sources) as tmp:
        src.to_parquet(tmp, index=False)
    with atomic_path(md.lenses) as tmp:
        lenses.to_parquet(tmp, index=False)
    with atomic_path(md.artefacts) as tmp:
        artefacts.to_parquet(tmp, index=False)
    with atomic_path(md.exposure) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, nobs=exposure)
    with atomic_path(md.bricks) as tmp:
        bricks.to_parquet(tmp, index=False)
    meta = {"format": "lensaudit-mock-survey", "version": 2, "config": cfg.model_dump(mode="json"),
            "projection": {"type": "TAN", "ra0": ra0, "dec0": dec0, "pixscale_arcsec": PIXEL_SCALE_ARCSEC},
            "footprint": fp, "cells_per_brick_side": CELLS}

    # truth is measured on what the renderer draws
    from lensaudit.mock.render import Renderer
    from lensaudit.mock.truth import grade, lens_truth, pick_contaminants

    survey = MockSurvey(out, meta, bricks, src, lenses, exposure, artefacts)
    measured = lens_truth(Renderer(survey), lenses, cfg.grading.host_confusion)
    tiers = grade(measured, cfg.grading, rng(cfg.seed, "mock.grading"))
    measured["tier"] = tiers
    n_b = int((tiers == "B").sum())
    f = cfg.grading.tier_b_false_fraction
    false = pick_contaminants(src, int(round(n_b * f / (1 - f))), rng(cfg.seed, "mock.contaminants"))
    cand = make_candidates(src, measured, false, lenses, rng(cfg.seed, "mock.candidates"))
    if not len(cand):
        raise SurveyError(f"mock config: area {cfg.area_deg2} deg^2 gives {len(lenses)} lenses but no candidate passes "
                          f"the grader; increase area_deg2 (survey.json not written: {out} is incomplete)")
    with atomic_path(md.candidates) as tmp:
        cand.drop(columns=["_id", "_is_lens"]).to_csv(tmp, index=False)
    truth = src[src.kind != "normal"].merge(lenses.drop(columns=[c for c in lenses if c.startswith("knot")]),
                                             on="id", how="left")
    truth = truth.merge(measured, on="id", how="left")
    truth["in_candidates"] = truth["id"].isin(cand["_id"])
    truth = truth.merge(cand[["_id", "grading"]].rename(columns={"_id": "id"}), on="id", how="left")
    with atomic_path(md.truth) as tmp:
        truth.drop(columns=["red"]).to_parquet(tmp, index=False)
    kinds = src["kind"].value_counts().to_dict()
    eligible = int(eligible_red(src, cfg.lenses.host_max_mag_z).sum())
    summary = {
        "n_sources": int(len(src)), "n_bricks": int(len(bricks)), "area_deg2": area, "kinds": kinds,
        "feature_counts": {k: kinds.get(k, 0) for k in FEATURE_KINDS},
        "n_lenses": int(len(lenses)), "n_eligible_red": eligible,
        "lenses_per_eligible_red": round(len(lenses) / max(eligible, 1), 5),
        "n_candidates": int(len(cand)), "n_tier_a": int((cand.grading == "confident").sum()),
        "n_tier_b": int((cand.grading == "probable").sum()),
        "tier_b_false_fraction_realised": float((~cand.loc[cand.grading == "probable", "_is_lens"]).mean())
        if (cand.grading == "probable").any() else 0.0,
        "median_arc_snr_tier_a": float(np.median(measured.loc[tiers == "A", "arc_snr"])) if (tiers == "A").any() else None,
        "sweep_files": [p.name for p in sweep_files],
    }
    from lensaudit.mock.stamps import build_stamp_library

    lib = build_stamp_library(cfg, md.stamp_library)
    summary["stamp_library"] = str(lib.relative_to(out)) if lib else None
    atomic_write_text(md.readme, _readme(cfg, summary))
    meta.update({"summary": summary, "run_info": run_info(seeds={"mock": cfg.seed},
                                                          extra={"reference_data": reference.provenance()})})
    atomic_write_json(md.survey_json, meta)  # written last: marks the survey complete
    return summary


def draw_trails(cfg: MockConfig, bricks: pd.DataFrame, rng_: np.random.Generator, ra0: float, dec0: float) -> pd.DataFrame:
    """Residual satellite trails: a line across a brick in one band, 1-4 sigma of that band's pixel noise."""
    area_brick = BRICK_SIZE_DEG**2 * np.cos(np.deg2rad(bricks["dec"].to_numpy()))
    n = rng_.poisson(cfg.artefacts.satellite_trails_per_deg2 * area_brick)
    rows = []
    for i in np.flatnonzero(n):
        b = bricks.iloc[i]
        for _ in range(int(n[i])):
            ra = b.ra1 + rng_.random() * BRICK_SIZE_DEG
            dec = b.dec1 + rng_.random() * BRICK_SIZE_DEG
            gx, gy = tan_project(ra, dec, ra0, dec0)
            band = int(rng_.integers(0, 3))
            rows.append({"kind": "satellite_trail", "brick_idx": int(i), "band": band, "gx": float(gx), "gy": float(gy),
                         "angle": float(rng_.uniform(0, np.pi)), "width_pix": float(rng_.uniform(1.0, 2.0)),
                         "amplitude_nmgy": float(rng_.uniform(1.0, 4.0) * b[f"sigma_white_{'grz'[band]}"])})
    return pd.DataFrame(rows, columns=["kind", "brick_idx", "band", "gx", "gy", "angle", "width_pix", "amplitude_nmgy"])


def _maskbits_bleed(src: pd.DataFrame, max_mag: float) -> np.ndarray:
    """SATUR_G/R/Z for objects on the bleed trail (a pixel column) of a star brighter than ``max_mag``."""
    mb = np.zeros(len(src), np.int32)
    stars = np.flatnonzero(src["is_star"].to_numpy() & (src["rmag"].to_numpy() < max_mag))
    gx, gy, rmag = src["gx"].to_numpy(), src["gy"].to_numpy(), src["rmag"].to_numpy()
    bits = int(MASKBITS.SATUR_G | MASKBITS.SATUR_R | MASKBITS.SATUR_Z)
    order = np.argsort(gx, kind="stable")
    gx_sorted = gx[order]
    for k in stars:
        length = 8.0 * 10 ** (0.4 * (max_mag - rmag[k]))
        # the objects within 3 pixels in x (a slightly wider slice of the sorted x, then the exact test)
        cand = order[np.searchsorted(gx_sorted, gx[k] - 3.5):np.searchsorted(gx_sorted, gx[k] + 3.5)]
        on = (np.abs(gx[cand] - gx[k]) < 3) & (np.abs(gy[cand] - gy[k]) < length)
        mb[cand[on]] |= bits
    return mb


def _maskbits_trails(src: pd.DataFrame, trails: pd.DataFrame) -> np.ndarray:
    """ALLMASK_<band> for objects within 4 pixels of a residual trail in their brick."""
    mb = np.zeros(len(src), np.int32)
    if not len(trails):
        return mb
    gx, gy, b = src["gx"].to_numpy(), src["gy"].to_numpy(), src["brick_idx"].to_numpy()
    bit_of = {0: MASKBITS.ALLMASK_G, 1: MASKBITS.ALLMASK_R, 2: MASKBITS.ALLMASK_Z}
    order = np.argsort(b, kind="stable")
    b_sorted = b[order]
    for t in trails.itertuples():
        rows = order[np.searchsorted(b_sorted, t.brick_idx, "left"):np.searchsorted(b_sorted, t.brick_idx, "right")]
        d = np.abs(-(gx[rows] - t.gx) * np.sin(t.angle) + (gy[rows] - t.gy) * np.cos(t.angle))
        mb[rows[d < 4]] |= int(bit_of[int(t.band)])
    return mb


def _readme(cfg: MockConfig, summary: dict) -> str:
    return f"""Mock DR10 survey written by lensaudit (seed {cfg.seed}, {summary['area_deg2']:.2f} deg^2).

truth/ is for measuring, never for fitting a model, a threshold or a prior.

The true lenses ({cfg.lenses.family} family): elliptical power-law mass (slope ~ N({cfg.lenses.slope.mean},
{cfg.lenses.slope.sd}) in [{cfg.lenses.slope.lo}, {cfg.lenses.slope.hi}]), external shear, m = 3 and 4 multipoles,
mass-light misalignment, satellites ({cfg.lenses.satellite_fraction:.0%}) and group convergence
({cfg.lenses.group_fraction:.0%}); sources at z_s {cfg.lenses.source_z[0]}-{cfg.lenses.source_z[1]} rendered as
textured images (disc with a Gaussian random field, bulges, arms, bars, offset components, knots, dust,
colour gradients; {cfg.lenses.red_source_fraction:.0%} red and passive), magnitudes from number counts.
{summary['n_lenses']} lenses among {summary['n_eligible_red']} eligible red galaxies (DEV/SER, z < 20).

truth.parquet, per lens, measured on the rendered pixels:
  mu_g/r/z           lensed flux / source flux, per band
  arc_mag_g/r/z      lensed magnitude per band (AB); arc_rmag = arc_mag_r
  arc_snr_g/r/z      matched-filter S/N of the arc alone (host subtracted) under the pixels' noise;
                     arc_snr combines g, r, z in quadrature; arc_peak_snr_* the brightest pixel's S/N
  arc_snr_visible_*  the S/N as the arc can be seen on its host: per-pixel variance plus
                     ({cfg.grading.host_confusion} x host light)^2; what the grader sees
  theta_e_over_fwhm  theta_E over the brick's true r-band FWHM
  tier               the mock grader's verdict (visible S/N, theta_E / FWHM, magnification):
                     A, B or '' (not catalogued); grading noise
                     {cfg.grading.noise_dex} dex; Tier-B contaminants drawn from the confusers
Confusers carry their kind and feature parameters (conf_*), colours of the feature itself
(conf_gr, conf_rz) included.

The PSF of every brick and band is an elliptical Moffat core (beta {cfg.psf.beta[0]}-{cfg.psf.beta[1]}) plus a wing;
the sweeps report PSFSIZE with {cfg.psf.psfsize_scatter:.0%} scatter around its true FWHM (as seen in the coadd
pixels). PSFDEPTH follows legacypipe: sum(p^2) / sigma^2 with p the true PSF and sigma the noise of the
inverse-variance map (which ignores the coadd's resampling correlation); a point source at the stated
5-sigma depth has matched-filter S/N 5 in these pixels. Noise follows exposure maps ({CELLS}x{CELLS} cells per
brick, internal/exposure.npz); NOBS, PSFDEPTH and GALDEPTH in the sweeps are those of each object's cell.
Uncatalogued galaxies reach r = {cfg.faint_background_r_mag}; residual satellite trails (ALLMASK_<band>),
cosmic-ray residuals where a band has <= 2 exposures, and bleed trails of stars brighter than
r = {cfg.artefacts.bleed_star_max_mag} (SATUR_<band>) are in the pixels.
"""


def _maskbits_near_bright_stars(src: pd.DataFrame) -> np.ndarray:
    """BRIGHT (G<13) or MEDIUM (G<16) MASKBITS within a magnitude-dependent radius of bright stars."""
    from scipy.spatial import cKDTree

    mb = np.zeros(len(src), np.int32)
    stars = src[(src.type == "PSF") & (src.rmag < 16)]
    if stars.empty:
        return mb
    tree = cKDTree(np.c_[src.gx.to_numpy(), src.gy.to_numpy()])
    for gx, gy, rmag in zip(stars.gx.to_numpy(), stars.gy.to_numpy(), stars.rmag.to_numpy(), strict=True):
        radius_pix = (1630.0 * 1.396 ** (-rmag)) / PIXEL_SCALE_ARCSEC  # DR9-style radius-magnitude law
        bit = MASKBITS.BRIGHT if rmag < 13 else MASKBITS.MEDIUM
        near = tree.query_ball_point((gx, gy), radius_pix if bit == MASKBITS.BRIGHT else 2 * radius_pix)
        mb[np.asarray(near, dtype=int)] |= int(bit)
    return mb


def write_sweeps(src: pd.DataFrame, bricks: pd.DataFrame, exposure: np.ndarray, out: Path,
                 rng: np.random.Generator) -> list[Path]:
    """Write sweep-format FITS files (one per 5x5 deg box) with the full DR10 sweep schema.

    NOBS, PSFDEPTH and GALDEPTH of an object are those of its exposure-map cell (depth scales
    with the exposure count); PSFSIZE is the catalog's report of the brick's PSF (true FWHM with
    scatter); fluxes carry noise of the object's depth and size."""
    bi = src["brick_idx"].to_numpy()

    def br(col: str) -> np.ndarray:
        """Column ``col`` of each object's brick (a take per column: no 2-million-row frame of every column)."""
        return bricks[col].to_numpy()[bi]

    n = len(src)
    arr: dict[str, object] = {}   # column -> its n values or one for every row; each box's rows: _fill_rows
    arr["RELEASE"] = RELEASE_DR10
    arr["BRICKID"] = br("brickid")
    arr["BRICKNAME"] = src.brickname.to_numpy().astype("S8")
    arr["OBJID"] = src.objid.to_numpy()
    arr["TYPE"] = src.type.to_numpy().astype("S3")
    arr["RA"], arr["DEC"] = src.ra.to_numpy(), src.dec.to_numpy()
    arr["RA_IVAR"] = arr["DEC_IVAR"] = 1.0 / (0.03 / 3600) ** 2
    ebv = br("ebv")
    arr["EBV"] = ebv
    snr_r = np.zeros(n)
    cx, cy = src["cell_x"].to_numpy(), src["cell_y"].to_numpy()
    for k, b in enumerate("grz"):
        B = b.upper()
        nobs = exposure[bi, k, cy, cx].astype(float)
        scale = nobs / br(f"nobs_mean_{b}")
        depth = br(f"psfdepth_{b}") * scale
        fwhm = br(f"psfsize_cat_{b}")
        # galaxies are measured less precisely than points: inflate by the size relative to the PSF
        size_fac = np.sqrt(1.0 + (2.0 * src.shape_r.to_numpy() / fwhm) ** 2)
        sig = size_fac / np.sqrt(depth)
        true = src[f"flux_{b}"].to_numpy()
        arr[f"FLUX_{B}"] = true + rng.normal(0, 1, n) * sig
        arr[f"FLUX_IVAR_{B}"] = 1.0 / sig**2
        arr[f"MW_TRANSMISSION_{B}"] = mw_transmission(ebv, b)
        arr[f"NOBS_{B}"] = nobs.astype(np.int16)
        arr[f"PSFSIZE_{B}"] = fwhm
        arr[f"PSFDEPTH_{B}"] = depth
        arr[f"GALDEPTH_{B}"] = br(f"galdepth_{b}") * scale
        arr[f"FIBERFLUX_{B}"] = true * 0.4
        arr[f"FIBERTOTFLUX_{B}"] = true * 0.45
        arr[f"RCHISQ_{B}"] = rng.gamma(20, 0.05, n)
        arr[f"FRACIN_{B}"] = 0.98
        if b == "r":
            snr_r = true / sig
    for B in ("W1", "W2", "W3", "W4"):
        arr[f"MW_TRANSMISSION_{B}"] = 1.0
    arr["FLUX_W1"] = src.flux_z.to_numpy() * 0.8
    arr["FLUX_IVAR_W1"] = 1.0 / 0.5**2
    arr["NOBS_W1"] = arr["NOBS_W2"] = 80
    arr["MW_TRANSMISSION_I"] = mw_transmission(ebv, "i")
    chi = np.clip(snr_r, 0, None) ** 2
    t = src.type.to_numpy()
    arr["DCHISQ"] = np.stack([chi, chi * np.where(t == "PSF", 0.98, 1.01), chi * np.where(t == "DEV", 1.03, 1.0),
                              chi * np.where(t == "EXP", 1.03, 1.0), chi * np.where(t == "SER", 1.04, 1.0)], axis=1)
    arr["SHAPE_R"] = src.shape_r.to_numpy()
    arr["SHAPE_E1"], arr["SHAPE_E2"] = src.shape_e1.to_numpy(), src.shape_e2.to_numpy()
    for c in ("SHAPE_R_IVAR", "SHAPE_E1_IVAR", "SHAPE_E2_IVAR"):
        arr[c] = np.where(t == "PSF", 0.0, 100.0)
    arr["SERSIC"] = np.where(t == "PSF", 0.0, src.sersic.to_numpy())
    arr["SERSIC_IVAR"] = np.where(t == "SER", 10.0, 0.0)
    star_g = src.is_star.to_numpy() & (src.rmag.to_numpy() < 20.5)
    arr["REF_CAT"] = np.where(star_g, b"GE", b"  ")
    arr["REF_ID"] = np.where(star_g, np.arange(n) + 10**15, -1)
    arr["REF_EPOCH"] = np.where(star_g, 2016.0, 0.0)
    arr["GAIA_PHOT_G_MEAN_MAG"] = np.where(star_g, src.rmag.to_numpy() + 0.1, 0.0)
    arr["MASKBITS"] = src.maskbits.to_numpy()
    arr["FITBITS"] = np.where(star_g, 1 << 7, 0)
    files = []
    boxes = sweep_boxes(src.ra.to_numpy(), src.dec.to_numpy())
    # one integer per box, ordered as (ramin, decmin): 36 declination boxes of 5 deg
    key = np.rint(boxes[:, 0] / 5.0).astype(np.int64) * 64 + np.rint((boxes[:, 2] + 90.0) / 5.0).astype(np.int64)
    for k in np.unique(key):
        sel = key == k
        ramin, ramax, decmin, decmax = boxes[np.argmax(sel)]
        rows = _fill_rows(np.zeros(int(sel.sum()), dtype=sweep_numpy_dtype()),
                          {c: v[sel] if isinstance(v, np.ndarray) and v.ndim else v for c, v in arr.items()})
        path = write_sweep_fits(rows, out / sweep_filename(ramin, ramax, decmin, decmax),
                                (ramin, ramax, decmin, decmax), version="lensaudit-mock", consume=True)
        files.append(path)
    return files


#: rows of the sweep table filled at a time by :func:`_fill_rows` (8192 records of 532 bytes: 4 MB)
FILL_BLOCK_ROWS = 8192


def _fill_rows(arr: np.ndarray, columns: dict[str, object]) -> np.ndarray:
    """``arr[name] = value`` for every column (an array of ``len(arr)`` values or one value for every row), block
    by block of :data:`FILL_BLOCK_ROWS` rows: the same values as column by column, but a block's records stay in
    cache while its 140 columns are written, where filling whole columns of millions of 532-byte records touches
    every record's cache line once per column (11 of the demo's 20 s of sweep writing)."""
    for lo in range(0, len(arr), FILL_BLOCK_ROWS):
        blk = arr[lo : lo + FILL_BLOCK_ROWS]
        for name, v in columns.items():
            blk[name] = v[lo : lo + FILL_BLOCK_ROWS] if isinstance(v, np.ndarray) and v.ndim else v
    return arr


def _desi_name(ra: float, dec: float) -> str:
    return f"DESI-{ra:08.4f}{'+' if dec >= 0 else '-'}{abs(dec):07.4f}"


def make_candidates(src: pd.DataFrame, measured: pd.DataFrame, false: pd.DataFrame, lenses: pd.DataFrame,
                    rng_: np.random.Generator) -> pd.DataFrame:
    """Candidate list in the real format: the grader's Tier A (confident) and Tier B (probable) lenses
    plus Tier-B contaminants; positions jittered by 0.1 arcsec like a catalogue's, a lens redshift for
    80 percent. Extra ``_id``/``_is_lens`` columns are dropped on write."""
    pos = src.set_index("id")
    zl = lenses.set_index("id")["z_lens"]
    rows = []
    for cid, tier in zip(measured["id"], measured["tier"], strict=True):
        if tier:
            rows.append((cid, "confident" if tier == "A" else "probable", True))
    rows += [(cid, "probable", False) for cid in false["id"]]
    out = []
    for cid, grade, is_lens in rows:
        s = pos.loc[cid]
        ra = s.ra + rng_.normal(0, 0.1 / 3600)
        dec = s.dec + rng_.normal(0, 0.1 / 3600)
        z = f"{zl[cid]:.4f}" if is_lens and rng_.random() < 0.8 else "-"
        out.append({"name": _desi_name(ra, dec), "ra": round(ra, 5), "dec": round(dec, 5), "zlens": z,
                    "type": "galaxy", "grading": grade, "ref": "lensaudit mock survey", "_id": cid, "_is_lens": is_lens})
    cand = pd.DataFrame(out, columns=["name", "ra", "dec", "zlens", "type", "grading", "ref", "_id", "_is_lens"])
    return cand.sort_values("ra", kind="stable").reset_index(drop=True)

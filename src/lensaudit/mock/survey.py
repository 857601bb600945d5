"""Build and load a mock DR10 survey directory.

Layout::

    survey.json               config, projection, footprint, counts, provenance
    bricks.parquet            per-brick footprint and observing conditions
    sweeps/sweep-*.fits       sweep-format FITS (real DR10 columns, dtypes, units; SWEEP HDU)
    candidates.csv            lens candidates in the real desi_lens_candidates.csv format
    truth/truth.parquet       every lens and confuser with its parameters (evaluation only)
    internal/sources.parquet  true parameters the renderer draws (not a DR10 product)
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.errors import LensauditError
from lensaudit.mock.conditions import draw_brick_conditions
from lensaudit.mock.config import MockConfig
from lensaudit.mock.population import add_confusers, add_lenses, sample_sources
from lensaudit.survey.columns import sweep_numpy_dtype
from lensaudit.survey.constants import BRICK_SIZE_DEG, PIXEL_SCALE_ARCSEC, RELEASE_DR10
from lensaudit.survey.geometry import brickname, sweep_box, sweep_filename
from lensaudit.survey.maskbits import MASKBITS
from lensaudit.survey.photometry import mw_transmission
from lensaudit.survey.sweepio import write_sweep_fits
from lensaudit.utils.io import atomic_path, atomic_write_json, atomic_write_text
from lensaudit.utils.provenance import run_info
from lensaudit.utils.seeds import rng

log = logging.getLogger(__name__)
REQUIRED_FILES = ("survey.json", "bricks.parquet", "candidates.csv", "truth/truth.parquet", "internal/sources.parquet")


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


def build_survey(cfg: MockConfig, out: str | os.PathLike, shared_data: Path) -> dict:
    """Build a mock survey into ``out`` (deterministic for cfg.seed); returns a summary."""
    out = Path(out)
    bricks = _brick_grid(cfg)
    area = float(len(bricks) * BRICK_SIZE_DEG**2 * np.cos(np.deg2rad(cfg.dec_center_deg)))
    # one named seed stream per sub-population and purpose: more draws in one never shift another
    bricks = pd.concat([bricks, draw_brick_conditions(len(bricks), shared_data, rng(cfg.seed, "mock.conditions"))],
                       axis=1)
    src = sample_sources(cfg, bricks, rng(cfg.seed, "mock.sources"))
    src = add_lenses(cfg, src, area, rng(cfg.seed, "mock.lenses"))
    src = add_confusers(cfg, src, area, cfg.seed)
    # keep sources inside the footprint and (re)assign bricks
    ra_lo, ra_hi, dec_lo, dec_hi = bricks.ra1.min(), bricks.ra2.max(), bricks.dec1.min(), bricks.dec2.max()
    src = src[src.ra.between(ra_lo, ra_hi, inclusive="left") & src.dec.between(dec_lo, dec_hi, inclusive="left")]
    src = src.reset_index(drop=True)
    col = ((src.ra - ra_lo) / BRICK_SIZE_DEG).astype(int)
    row = ((src.dec - dec_lo) / BRICK_SIZE_DEG).astype(int)
    nside = int(round(np.sqrt(len(bricks))))
    src["brick_idx"] = row * nside + col
    src = src.sort_values(["brick_idx", "ra"], kind="stable").reset_index(drop=True)
    src["objid"] = src.groupby("brick_idx").cumcount().astype(np.int32)
    src["brickname"] = bricks["brickname"].to_numpy()[src.brick_idx]
    src["id"] = src["brickname"] + "_" + src["objid"].astype(str)
    ra0, dec0 = cfg.ra_center_deg, cfg.dec_center_deg
    src["gx"], src["gy"] = tan_project(src.ra.to_numpy(), src.dec.to_numpy(), ra0, dec0)
    src["maskbits"] = _maskbits_near_bright_stars(src)

    (out / "sweeps").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(exist_ok=True)
    (out / "internal").mkdir(exist_ok=True)
    sweep_files = write_sweeps(src, bricks, out / "sweeps", rng(cfg.seed, "mock.sweeps"))
    cand = make_candidates(cfg, src, rng(cfg.seed, "mock.candidates"))
    with atomic_path(out / "candidates.csv") as tmp:
        cand.drop(columns=["_id", "_is_lens"]).to_csv(tmp, index=False)
    truth = src[src.kind != "normal"].copy()
    truth["in_candidates"] = truth["id"].isin(cand["_id"])
    truth = truth.merge(cand[["_id", "grading"]].rename(columns={"_id": "id"}), on="id", how="left")
    with atomic_path(out / "truth" / "truth.parquet") as tmp:
        truth.drop(columns=["red"]).to_parquet(tmp, index=False)
    with atomic_path(out / "internal" / "sources.parquet") as tmp:
        src.to_parquet(tmp, index=False)
    with atomic_path(out / "bricks.parquet") as tmp:
        bricks.to_parquet(tmp, index=False)
    kinds = src["kind"].value_counts().to_dict()
    summary = {
        "n_sources": int(len(src)), "n_bricks": int(len(bricks)), "area_deg2": area, "kinds": kinds,
        "confuser_rates_per_deg2": {k: kinds.get(k, 0) / area for k in cfg.confusers.model_dump()},
        "n_candidates": int(len(cand)), "n_tier_a": int((cand.grading == "confident").sum()),
        "n_tier_b": int((cand.grading == "probable").sum()),
        "tier_b_false_fraction_realised": float((~cand.loc[cand.grading == "probable", "_is_lens"]).mean())
        if (cand.grading == "probable").any() else 0.0,
        "sweep_files": [p.name for p in sweep_files],
    }
    meta = {"format": "lensaudit-mock-survey", "version": 1, "config": cfg.model_dump(mode="json"),
            "projection": {"type": "TAN", "ra0": ra0, "dec0": dec0, "pixscale_arcsec": PIXEL_SCALE_ARCSEC},
            "footprint": {"ra_min": ra_lo, "ra_max": ra_hi, "dec_min": dec_lo, "dec_max": dec_hi},
            "summary": summary, "run_info": run_info(seeds={"mock": cfg.seed})}
    atomic_write_json(out / "survey.json", meta)  # written last: marks the survey complete
    atomic_write_text(out / "README.txt", "Mock DR10 survey written by lensaudit; truth/ is for evaluation only.\n")
    return summary


def _maskbits_near_bright_stars(src: pd.DataFrame) -> np.ndarray:
    """BRIGHT (G<13) or MEDIUM (G<16) MASKBITS within a magnitude-dependent radius of bright stars."""
    mb = np.zeros(len(src), np.int32)
    stars = src[(src.type == "PSF") & (src.rmag < 16)]
    if stars.empty:
        return mb
    for _, s in stars.iterrows():
        radius_pix = (1630.0 * 1.396 ** (-s.rmag)) / PIXEL_SCALE_ARCSEC  # DR9-style radius-magnitude law
        bit = MASKBITS.BRIGHT if s.rmag < 13 else MASKBITS.MEDIUM
        r = np.hypot(src.gx.to_numpy() - s.gx, src.gy.to_numpy() - s.gy)
        mb[r < (radius_pix if bit == MASKBITS.BRIGHT else 2 * radius_pix)] |= int(bit)
    return mb


def write_sweeps(src: pd.DataFrame, bricks: pd.DataFrame, out: Path, rng: np.random.Generator) -> list[Path]:
    """Write sweep-format FITS files (one per 5x5 deg box) with the full DR10 sweep schema."""
    br = bricks.iloc[src.brick_idx.to_numpy()].reset_index(drop=True)
    n = len(src)
    arr = np.zeros(n, dtype=sweep_numpy_dtype())
    arr["RELEASE"] = RELEASE_DR10
    arr["BRICKID"] = br.brickid.to_numpy()
    arr["BRICKNAME"] = src.brickname.to_numpy().astype("S8")
    arr["OBJID"] = src.objid.to_numpy()
    arr["TYPE"] = src.type.to_numpy().astype("S3")
    arr["RA"], arr["DEC"] = src.ra.to_numpy(), src.dec.to_numpy()
    arr["RA_IVAR"] = arr["DEC_IVAR"] = 1.0 / (0.03 / 3600) ** 2
    arr["EBV"] = br.ebv.to_numpy()
    snr_r = np.zeros(n)
    for b in "grz":
        B = b.upper()
        depth = br[f"psfdepth_{b}"].to_numpy()
        fwhm = br[f"psfsize_{b}"].to_numpy()
        # galaxies are measured less precisely than points: inflate by the size relative to the PSF
        size_fac = np.sqrt(1.0 + (2.0 * src.shape_r.to_numpy() / fwhm) ** 2)
        sig = size_fac / np.sqrt(depth)
        true = src[f"flux_{b}"].to_numpy()
        arr[f"FLUX_{B}"] = true + rng.normal(0, 1, n) * sig
        arr[f"FLUX_IVAR_{B}"] = 1.0 / sig**2
        arr[f"MW_TRANSMISSION_{B}"] = mw_transmission(br.ebv.to_numpy(), b)
        arr[f"NOBS_{B}"] = np.maximum(rng.poisson(br[f"nobs_mean_{b}"].to_numpy()), 1)
        arr[f"PSFSIZE_{B}"] = fwhm
        arr[f"PSFDEPTH_{B}"] = depth
        arr[f"GALDEPTH_{B}"] = depth * 0.6
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
    arr["MW_TRANSMISSION_I"] = mw_transmission(br.ebv.to_numpy(), "i")
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
    boxes = np.array([sweep_box(r, d) for r, d in zip(src.ra, src.dec, strict=True)])
    for key in np.unique(boxes, axis=0):
        sel = np.all(boxes == key, axis=1)
        ramin, ramax, decmin, decmax = key
        path = write_sweep_fits(arr[sel], out / sweep_filename(ramin, ramax, decmin, decmax),
                                (ramin, ramax, decmin, decmax), version="lensaudit-mock")
        files.append(path)
    return files


def _desi_name(ra: float, dec: float) -> str:
    return f"DESI-{ra:08.4f}{'+' if dec >= 0 else '-'}{abs(dec):07.4f}"


def make_candidates(cfg: MockConfig, src: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Candidate list in the real format; Tier A = bright-arc lenses, Tier B = fainter lenses plus
    a stated fraction of non-lenses (confusers). Extra ``_id``/``_is_lens`` columns are dropped on write."""
    lens = src[src.kind == "lens"]
    tier_a = lens[lens.arc_rmag < cfg.tier_a_max_arc_mag]
    rest = lens[(lens.arc_rmag >= cfg.tier_a_max_arc_mag) & (lens.arc_rmag < cfg.tier_b_max_arc_mag)]
    tier_b_lens = rest[rng.random(len(rest)) < cfg.tier_b_lens_completeness]
    n_false = int(round(len(tier_b_lens) * cfg.tier_b_false_fraction / (1 - cfg.tier_b_false_fraction)))
    conf = src[src.kind.isin(["ring", "spiral", "merger", "blue_clumpy", "edge_on"])]
    false = conf.sample(min(n_false, len(conf)), random_state=np.random.RandomState(rng.integers(2**31)))
    parts = [(tier_a, "confident", True), (tier_b_lens, "probable", True), (false, "probable", False)]
    rows = []
    for df, grade, is_lens in parts:
        for _, s in df.iterrows():
            ra = s.ra + rng.normal(0, 0.1 / 3600)
            dec = s.dec + rng.normal(0, 0.1 / 3600)
            z = f"{s.z_lens:.4f}" if is_lens and rng.random() < 0.8 else "-"
            rows.append({"name": _desi_name(ra, dec), "ra": round(ra, 5), "dec": round(dec, 5), "zlens": z,
                         "type": "galaxy", "grading": grade, "ref": "lensaudit mock survey", "_id": s.id,
                         "_is_lens": is_lens})
    cand = pd.DataFrame(rows, columns=["name", "ra", "dec", "zlens", "type", "grading", "ref", "_id", "_is_lens"])
    return cand.sort_values("ra", kind="stable").reset_index(drop=True)


@dataclass
class MockSurvey:
    """A loaded mock survey directory."""

    root: Path
    meta: dict
    bricks: pd.DataFrame
    sources: pd.DataFrame

    @classmethod
    def load(cls, root: str | os.PathLike) -> MockSurvey:
        root = Path(root)
        missing = [f for f in REQUIRED_FILES if not (root / f).exists()]
        if missing:
            raise SurveyError(f"mock survey {root} is incomplete: missing {missing} (re-run `lensaudit mock build`)")
        meta = json.loads((root / "survey.json").read_text())
        if meta.get("format") != "lensaudit-mock-survey":
            raise SurveyError(f"mock survey {root}: survey.json is not a lensaudit mock survey")
        return cls(root, meta, pd.read_parquet(root / "bricks.parquet"), pd.read_parquet(root / "internal/sources.parquet"))

    def truth(self) -> pd.DataFrame:
        """The truth table (evaluation code only)."""
        return pd.read_parquet(self.root / "truth" / "truth.parquet")

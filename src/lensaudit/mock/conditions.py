"""Observing conditions per brick, drawn from the real DR10 distributions of :mod:`lensaudit.reference`.

``dr10_region_conditions.csv`` gives the joint distribution of r-band seeing (FWHM), r-band
5-sigma depth and E(B-V) over 2,689 regions; ``dr10_brick_conditions.csv`` gives the relation
between bands (g broader and deeper than r, z sharper and shallower). Each mock brick takes
one real region's (psf_r, depth_r, ebv) and per-band offsets drawn from the real brick
relations (mean and scatter of psf_g/psf_r, psf_z/psf_r, depth_g - depth_r, depth_z - depth_r).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.reference import BRICK_CONDITIONS, REGION_CONDITIONS, ReferenceData
from lensaudit.survey.photometry import mag5_to_depth

#: Single-exposure 5-sigma point-source depths (AB) used to turn coadd depth into NOBS (depth grows as
#: 1.25 log10 NOBS). z is calibrated on the real sample cutouts: their z sky noise at their recorded
#: z exposure counts (DR10's NOBS_Z) is what the mock gives at the same counts; g and r follow from
#: the real per-brick band relations (g about 0.4 mag deeper than r, z about 1.0 mag shallower).
SINGLE_EPOCH_DEPTH = {"g": 23.75, "r": 23.35, "z": 22.30}


def load_conditions(reference: ReferenceData) -> tuple[pd.DataFrame, dict[str, tuple[float, float]]]:
    """Real region conditions (zeros dropped) and per-band relations (mean, std)."""
    reg = pd.read_csv(reference.path(REGION_CONDITIONS))
    reg = reg[(reg["median_psf_r_arcsec"] > 0) & (reg["median_psfdepth_r"] > 0) & (reg["total_area_deg2"] > 0)]
    reg = reg[reg["dec_center_deg"].between(-18, 32)].reset_index(drop=True)  # DECaLS-like footprint
    b = pd.read_csv(reference.path(BRICK_CONDITIONS))
    rel = {
        "psf_g_over_r": (float((b.psfsize_g / b.psfsize_r).mean()), float((b.psfsize_g / b.psfsize_r).std())),
        "psf_z_over_r": (float((b.psfsize_z / b.psfsize_r).mean()), float((b.psfsize_z / b.psfsize_r).std())),
        "depth_g_minus_r": (float((b.psfdepth_g - b.psfdepth_r).mean()), float((b.psfdepth_g - b.psfdepth_r).std())),
        "depth_z_minus_r": (float((b.psfdepth_z - b.psfdepth_r).mean()), float((b.psfdepth_z - b.psfdepth_r).std())),
    }
    return reg, rel


def draw_brick_conditions(n_bricks: int, reference: ReferenceData, rng: np.random.Generator) -> pd.DataFrame:
    """Per-brick psfsize_{g,r,z} (FWHM arcsec), psfdepth_{g,r,z} (5-sigma AB mag and ivar), ebv,
    galaxy density (per deg^2) and expected NOBS per band."""
    reg, rel = load_conditions(reference)
    pick = rng.integers(0, len(reg), n_bricks)
    r = reg.iloc[pick].reset_index(drop=True)
    out = pd.DataFrame({"region_id": r["region_id"].to_numpy(), "ebv": r["median_ebv"].to_numpy(np.float64)})
    psf_r = r["median_psf_r_arcsec"].to_numpy(np.float64)
    d_r = r["median_psfdepth_r"].to_numpy(np.float64)
    gdens = (r["total_n_gal"] / r["total_area_deg2"]).to_numpy(np.float64)
    m, s = rel["psf_g_over_r"]
    out["psfsize_g"] = psf_r * np.clip(rng.normal(m, s, n_bricks), 0.8, 1.6)
    out["psfsize_r"] = psf_r
    m, s = rel["psf_z_over_r"]
    out["psfsize_z"] = psf_r * np.clip(rng.normal(m, s, n_bricks), 0.7, 1.4)
    m, s = rel["depth_g_minus_r"]
    out["psfdepth_mag_g"] = d_r + rng.normal(m, s, n_bricks)
    out["psfdepth_mag_r"] = d_r
    m, s = rel["depth_z_minus_r"]
    out["psfdepth_mag_z"] = d_r + rng.normal(m, s, n_bricks)
    for b in "grz":
        out[f"psfdepth_{b}"] = mag5_to_depth(out[f"psfdepth_mag_{b}"])
        out[f"nobs_mean_{b}"] = np.clip(10 ** ((out[f"psfdepth_mag_{b}"] - SINGLE_EPOCH_DEPTH[b]) / 1.25), 1, 40)
    out["galaxy_density_per_deg2"] = gdens
    return out


def add_psf_and_noise(bricks: pd.DataFrame, psf_cfg, rng: np.random.Generator) -> pd.DataFrame:
    """Per brick and band: the true PSF (core FWHM parameter, beta, wing fraction, ellipticity and angle
    whose composite FWHM is the drawn seeing), the catalog's PSFSIZE (true FWHM with scatter), the
    white-noise sigma that makes PSFDEPTH the point-source flux inverse variance of the pixels, and
    GALDEPTH of the same pixels."""
    from lensaudit.mock.psf import core_for_fwhm, galdepth, psf_image, white_sigma
    from lensaudit.survey.constants import PIXEL_SCALE_ARCSEC
    from lensaudit.utils.pool import fork_map

    out = bricks.copy()
    n = len(out)
    draws = {}
    for b in "grz":  # the draws in the order they always had: per band beta, wing, e, angle, PSFSIZE scatter
        beta = rng.uniform(*psf_cfg.beta, n)
        wing = rng.uniform(*psf_cfg.wing_fraction, n)
        e = rng.uniform(0, psf_cfg.ellipticity_max, n)
        ang = rng.uniform(0, np.pi, n)
        scatter = rng.normal(0, psf_cfg.psfsize_scatter, n)
        draws[b] = (beta, wing, e, ang, scatter)

    def one(job: tuple[str, int]) -> tuple[float, float, float]:
        b, i = job
        beta, wing, e, ang, _ = draws[b]
        core = core_for_fwhm(float(out[f"psfsize_{b}"].iat[i]) / PIXEL_SCALE_ARCSEC, beta[i], wing[i], e[i], ang[i])
        p = psf_image(core, beta[i], wing[i], e[i], ang[i])
        sigw = white_sigma(p, float(out[f"psfdepth_{b}"].iat[i]))
        return core, sigw, galdepth(p, sigw)

    # the PSF of every brick and band (a few ms each): in forked workers, the same numbers as in-process
    res = np.array(fork_map(one, [(b, i) for b in "grz" for i in range(n)], chunksize=16)).reshape(3, n, 3)
    for k, b in enumerate("grz"):
        beta, wing, e, ang, scatter = draws[b]
        true_fwhm = out[f"psfsize_{b}"].to_numpy(float)  # the drawn seeing is the true FWHM
        out[f"psf_core_fwhm_pix_{b}"], out[f"psf_beta_{b}"], out[f"psf_wing_{b}"] = res[k, :, 0], beta, wing
        out[f"psf_e_{b}"], out[f"psf_angle_{b}"] = e, ang
        out[f"psfsize_true_{b}"] = true_fwhm
        out[f"psfsize_cat_{b}"] = true_fwhm * (1 + scatter)
        out[f"sigma_white_{b}"] = res[k, :, 1]
        out[f"galdepth_{b}"] = res[k, :, 2]
    return out


def draw_exposure_maps(bricks: pd.DataFrame, rng: np.random.Generator, cells: int = 4,
                       coverage_sd: float = 0.4, band_sd: float = 0.15) -> np.ndarray:
    """(n_bricks, 3, cells, cells) exposure counts per band, varying inside a brick.

    Each cell draws one coverage factor shared by its three bands (log-normal, sd ``coverage_sd``
    in ln: the survey's tiling passes cover g, r and z alike, so a cell deep in z is deep in g and
    r too, as in DR10) and a smaller factor per band (sd ``band_sd``); the count is the brick's
    mean times both, rounded, at least 1."""
    mean = np.stack([bricks[f"nobs_mean_{b}"].to_numpy(float) for b in "grz"], axis=1)
    n = len(bricks)
    cover = np.exp(rng.normal(-0.5 * coverage_sd**2, coverage_sd, size=(n, 1, cells, cells)))
    band = np.exp(rng.normal(-0.5 * band_sd**2, band_sd, size=(n, 3, cells, cells)))
    return np.maximum(np.round(mean[:, :, None, None] * cover * band), 1).astype(np.int16)

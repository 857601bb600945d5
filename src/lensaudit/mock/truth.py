"""Truthful bookkeeping of the mock's lenses, and the mock grader.

Everything here is measured on what the renderer draws, never on an approximation:

* magnification per band = lensed flux of the rendered images / the source image's flux;
* lensed arc magnitude per band from that lensed flux (AB);
* arc S/N per band after subtracting the host: the arc alone, convolved with the brick's true
  PSF and the coadd correlation, measured with the matched filter of the arc itself
  (S/N = sum(a^2) / sqrt(sigma_w^2 a^T C a), the estimator PSFDEPTH is defined with, under the
  correlated noise of the pixels at the lens's position); combined over g, r, z in quadrature;
  and the peak-pixel S/N;
* the *visible* arc S/N: the same arc on its host, each pixel's variance increased by
  (host_confusion x host light)^2 - an arc a few percent of the host's light cannot be told from it
  by eye or by a detector without a host model;
* theta_E / FWHM with the brick's true r-band FWHM.

The grader plays the human inspector: the chance that a lens is catalogued, and that a
catalogued lens is Tier A, rises with its perceived S/N (the visible peak S/N - a person sees an arc
by its brightest pixels standing out of noise and host, not by a sum over faint pixels - scattered by
``noise_dex``), with theta_E / FWHM and with the magnification; Tier-B contaminants are drawn from the confuser population.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.signal import fftconvolve
from scipy.special import ndtr

from lensaudit.mock.config import Grading
from lensaudit.mock.lensmodel import arc_box_radius_pix, arc_image
from lensaudit.mock.psf import CORR_KERNEL, noise_autocorrelation
from lensaudit.survey.constants import PIXEL_SCALE_ARCSEC
from lensaudit.survey.photometry import flux_to_mag
from lensaudit.utils.pool import fork_map
from lensaudit.utils.progress import progress

#: Pixels of room for the PSF (41 x 41) and the correlation kernel around a lens's images.
PSF_PAD = 22
#: Confuser kinds a Tier-B contaminant is drawn from, with the weight of one object of each kind: features that
#: look like arcs to a person (rings, tangential companions, shells) far more than ordinary spiral arms or bars.
CONTAMINANT_KINDS = {"ring": 1.0, "companion": 1.0, "shell": 0.7, "merger": 0.5, "blue_clumpy": 0.3, "edge_on": 0.3,
                     "spiral": 0.02, "bar": 0.02}


def arc_snr(arc_pix: np.ndarray, sigma_white: float) -> tuple[float, float]:
    """(matched-filter S/N, peak-pixel S/N) of an arc image already in final pixels (PSF and correlation
    applied), under white noise ``sigma_white`` correlated by the coadd kernel."""
    a = np.asarray(arc_pix, dtype=np.float64)
    s2 = float((a * a).sum())
    if s2 <= 0 or sigma_white <= 0:
        return 0.0, 0.0
    cov = noise_autocorrelation()
    aca = float((a * fftconvolve(a, cov, mode="same")).sum())
    peak = float(a.max()) / (sigma_white * np.sqrt(cov[2, 2]))
    return s2 / np.sqrt(sigma_white**2 * aca), peak


def visible_snr(arc_pix: np.ndarray, host_pix: np.ndarray, sigma_white: float,
                host_confusion: float) -> tuple[float, float]:
    """S/N of an arc as a person (or a detector without a host model) can see it on its host: the optimal
    per-pixel S/N with variance sigma_pix^2 + (host_confusion x host)^2, where the second term stands for
    the host light that an arc a few percent of it cannot be told from (pixels taken as independent); and
    the brightest pixel's S/N under the same variance."""
    a = np.asarray(arc_pix, dtype=np.float64)
    var = sigma_white**2 * noise_autocorrelation()[2, 2] + (host_confusion * np.asarray(host_pix, np.float64)) ** 2
    return float(np.sqrt((a * a / var).sum())), float((a / np.sqrt(var)).max())


def lens_truth(renderer, lenses: pd.DataFrame, host_confusion: float = 0.4) -> pd.DataFrame:
    """Per lens: magnification, lensed magnitude and S/N per band, peak S/N, theta_E / FWHM (see module doc)."""
    k = np.outer(CORR_KERNEL, CORR_KERNEL)
    rows = renderer.rows_of(lenses["id"])        # the lenses' rows only: not the whole survey's table
    src = renderer.source_rows(rows).set_index("id")
    row_of = dict(zip(src.index, rows, strict=True))
    b = renderer.survey.bricks
    with progress(len(lenses), "measuring the true lenses", "lenses") as advance:
        # forked workers (the same numbers as in-process, in lens order)
        rows = fork_map(lambda lp: _one_lens_truth(renderer, lp, src, row_of, b, k, host_confusion),
                        lenses.to_dict("records"), on_result=advance)
    t = pd.DataFrame(rows)
    if len(t):
        t["arc_rmag"] = t["arc_mag_r"]
        t["mu_approx"] = t["mu_r"]  # the rendered magnification (kept under the earlier name)
    return t


def _one_lens_truth(renderer, lp: dict, src: pd.DataFrame, row_of: dict, b: pd.DataFrame, k: np.ndarray,
                    host_confusion: float) -> dict:
    cid = lp["id"]
    s = src.loc[cid]
    image = renderer.source_image(cid)
    rad = arc_box_radius_pix(lp, image)
    gx, gy = float(s["gx"]), float(s["gy"])
    ix, iy = int(round(gx)), int(round(gy))
    yy, xx = np.mgrid[iy - rad : iy + rad + 1, ix - rad : ix + rad + 1]
    arc = arc_image(lp, image, xx - gx, yy - gy)              # (3, H, W) flux per pixel before the PSF
    arc = np.pad(arc, ((0, 0), (PSF_PAD, PSF_PAD), (PSF_PAD, PSF_PAD)))   # room for the PSF around the images
    flux = arc.sum(axis=(1, 2))
    src_flux = image.flux
    psf = renderer.psf3(int(s["brick_idx"]))
    bidx, cx, cy = renderer.brick_cell_of(np.array([s["ra"]]), np.array([s["dec"]]))
    sig = renderer.sigma_map(bidx, cx, cy)[:, 0]
    out = {"id": cid}
    host = renderer.host_light(row_of[cid], xx - gx, yy - gy)
    host = np.pad(host, ((0, 0), (PSF_PAD, PSF_PAD), (PSF_PAD, PSF_PAD)))
    snr2 = vis2 = 0.0
    for band, name in enumerate("grz"):
        conv = fftconvolve(fftconvolve(arc[band], psf[band], mode="same"), k, mode="same")
        snr, peak = arc_snr(conv, float(sig[band]))
        h = fftconvolve(fftconvolve(host[band], psf[band], mode="same"), k, mode="same")
        vis, vis_peak = visible_snr(conv, h, float(sig[band]), host_confusion)
        out[f"arc_snr_visible_{name}"] = vis
        out[f"arc_peak_snr_visible_{name}"] = vis_peak
        vis2 += vis**2
        out[f"mu_{name}"] = float(flux[band] / src_flux[band]) if src_flux[band] > 0 else np.nan
        out[f"arc_mag_{name}"] = float(flux_to_mag(flux[band]))
        out[f"arc_snr_{name}"] = snr
        out[f"arc_peak_snr_{name}"] = peak
        snr2 += snr**2
    out["arc_snr"] = float(np.sqrt(snr2))
    out["arc_snr_visible"] = float(np.sqrt(vis2))
    out["arc_peak_snr_visible"] = max(out[f"arc_peak_snr_visible_{b}"] for b in "grz")
    out["psf_fwhm_r_true"] = float(b["psfsize_true_r"].iat[int(s["brick_idx"])])
    out["theta_e_over_fwhm"] = float(lp["theta_e"]) / out["psf_fwhm_r_true"]
    out["src_mag_g"] = float(flux_to_mag(src_flux[0]))
    out["src_mag_z"] = float(flux_to_mag(src_flux[2]))
    return out


def _psychometric(x: np.ndarray) -> np.ndarray:
    """The grader's psychometric function: a normal CDF (probit). Its Gaussian tails, unlike a logistic's,
    leave next to no invisible arcs catalogued, and P(Tier A | catalogued) falls with the S/N in the tail."""
    return ndtr(x)


def grade(truth: pd.DataFrame, cfg: Grading, rng: np.random.Generator) -> np.ndarray:
    """Tier per lens: 'A', 'B' or '' (not catalogued), from the perceived S/N (``arc_peak_snr_visible``, the
    brightest arc pixel against noise and host light, in its best band; ``arc_snr`` for a table without it),
    theta_E / FWHM and magnification (``mu_r``; treated as unlimited when the table has none)."""
    col = "arc_peak_snr_visible" if "arc_peak_snr_visible" in truth else "arc_snr"
    snr = np.clip(truth[col].to_numpy(float), 1e-3, None)
    perceived = np.log10(snr) + rng.normal(0, cfg.noise_dex, len(snr))
    res = truth["theta_e_over_fwhm"].to_numpy(float)
    mu = np.log10(np.clip(truth["mu_r"].to_numpy(float), 1e-3, None)) if "mu_r" in truth else np.full(len(snr), 9.0)
    p_cat = (_psychometric((perceived - np.log10(cfg.snr_catalogued)) / cfg.width_dex)
             * _psychometric((res - cfg.resolution_catalogued) / cfg.resolution_width)
             * _psychometric((mu - np.log10(cfg.magnification_catalogued)) / cfg.magnification_width_dex))
    p_a = (_psychometric((perceived - np.log10(cfg.snr_tier_a)) / cfg.width_dex)
           * _psychometric((res - cfg.resolution_tier_a) / cfg.resolution_width)
           * _psychometric((mu - np.log10(cfg.magnification_tier_a)) / cfg.magnification_width_dex))
    u1, u2 = rng.random(len(snr)), rng.random(len(snr))
    cat = u1 < p_cat
    tier_a = cat & (u2 < np.clip(p_a / np.maximum(p_cat, 1e-12), 0, 1))
    return np.where(tier_a, "A", np.where(cat, "B", ""))


def pick_contaminants(src: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` Tier-B contaminants from the confuser population, each confuser weighted by how much its kind
    looks like a lens to a person (:data:`CONTAMINANT_KINDS`)."""
    pool = src[src["kind"].isin(list(CONTAMINANT_KINDS))]
    if not len(pool) or n <= 0:
        return pool.iloc[:0]
    w = pool["kind"].map(CONTAMINANT_KINDS).to_numpy(float)
    pick = rng.choice(len(pool), min(n, int((w > 0).sum())), replace=False, p=w / w.sum())
    return pool.iloc[np.sort(pick)]


__all__ = ["arc_snr", "lens_truth", "grade", "pick_contaminants", "PIXEL_SCALE_ARCSEC"]

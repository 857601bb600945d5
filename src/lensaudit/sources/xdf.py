"""A stamp library of real galaxies cut from the Hubble eXtreme Deep Field, offline.

scikit-image ships ``skimage.data.hubble_deep_field()``: the XDF colour composite released by NASA/ESA in 2012
(HubbleSite 2012-37a; public domain), 872 x 1000 x 3 pixels of 8-bit RGB. It is a **display image**, not
calibrated data. What each step assumes, and how it is measured or stated:

* **Pixel scale** (the file has none): the released XDF field is 2.3 x 2.0 arcmin; the image's aspect ratio,
  1000 / 872 = 1.147, is the field's 2.3 / 2.0 = 1.15, so the image is taken to be the whole field at
  138 arcsec / 1000 px = 0.138 arcsec/pixel, with a stated uncertainty of 10 percent (a crop of it would have a
  finer scale). The effective resolution is measured: the FWHM of the most compact bright sources.
* **The display stretch** is undone as a power law, linear = sign(v - sky) |v - sky|^gamma per channel after
  its sky level (the sigma-clipped median of each channel). gamma is *measured* from the counts of faint
  sources: the integral counts N(>F) of the brightest third of the detections (complete at these fluxes) must
  have the literature's slope d log N / dm = 0.27 +- 0.05 at these depths (e.g. Metcalfe et al. 2001;
  Beckwith et al. 2006); gamma solves that by bisection, and the literature's range gives its stated
  systematic range. That raw estimate is biased (isophotal segments of a stretched image lose a share of the
  faint light that grows with gamma), so it is calibrated on synthetic 8-bit fields of known stretch, source
  counts and noise like the XDF's (:func:`gamma_calibration`), and the measured gamma is read off that relation. A cross-check is reported beside it: for unresolved sources the ratio of peak to total
  linear flux is the PSF's, so the slope of log(peak/total) against log(total) over the compact sources
  should vanish at the right gamma. It does not cleanly: faint compact galaxies are intrinsically smaller and
  bright ones reach the display's clipped top, so this check is sample-dependent and is reported, not used.
* **Bands**: the composite's blue channel is ACS F435W + F606W, green F775W + F814W + F850LP and red the WFC3-IR
  bands (the release's notes). DR10 g (~480 nm) is taken from blue, r (~640 nm) from the mean of blue and
  green, z (~910 nm) from green; the red (infrared) channel is used for detection only. The channels' relative
  calibration is unknown, so the colour zero points are set to a stated prior: the library's median g - r and
  r - z equal those of faint star-forming galaxies at r ~ 24-26 (0.45 and 0.35 AB; the procedural population's
  blue sources draw from the same means). Colour *differences* between and within galaxies come from the image.
* **Detection and deblending**: photutils on the sum of the three linear channels, each after its local
  background (``Background2D``, the first pass's sources masked, grown by 3 pixels), a 2-pixel Gaussian filter, 2.5 sigma over 10 connected pixels, multi-threshold
  deblending (32 levels, contrast 0.005).
* **Cutting**: each galaxy centred in a square stamp; its own segment (grown by 2 pixels) kept, every other
  pixel zero, so neighbours are masked, never cut through.
* **Rejections**, each counted in the report: too small (< 20 pixels), touching the image edge, saturated
  (a display value of 255), star-like (second-moment size below 1.3 x that of the compact-source locus),
  blended beyond repair (the segments touching the galaxy hold more light than it), larger than the stamp,
  and S/N below 30 (a shape that is noise).
* **Brightness**: every stamp is normalised to r = 25.0 AB (the display image has no absolute calibration;
  users rescale each stamp to the magnitude they draw). ``Z`` is NaN: the image carries no redshifts.

Provenance (the image's SHA-256, scikit-image and photutils versions, every setting and measurement) is
stored in the library's header and in the build report (:class:`~lensaudit.artifacts.XdfDir`);
:func:`check_provenance` verifies it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import XdfDir
from lensaudit.errors import LensauditError
from lensaudit.sources.library import StampLibrary, negative_excess, write_stamp_library
from lensaudit.survey.constants import MAG_ZEROPOINT
from lensaudit.utils.io import atomic_write_json

log = logging.getLogger(__name__)

#: The released XDF field is 2.3 arcmin wide; the image 1000 pixels: arcsec per pixel.
PIXSCALE_ARCSEC = 2.3 * 60 / 1000
#: Stated relative uncertainty of :data:`PIXSCALE_ARCSEC`.
PIXSCALE_REL_UNCERTAINTY = 0.10
#: Literature galaxy-counts slope d log10 N / dm at these depths (mean, sd).
COUNTS_SLOPE = (0.27, 0.05)


class XdfError(LensauditError, ValueError):
    """The XDF image or a setting is not what the library builder needs."""


@dataclass(frozen=True)
class XdfSettings:
    """Every number of the build (stored with the library)."""

    stamp_pix: int = 64
    box_pix: int = 64
    detect_sigma: float = 2.5
    npixels: int = 10
    deblend_levels: int = 32
    deblend_contrast: float = 0.005
    min_area_pix: int = 20
    edge_margin_pix: int = 2
    grow_pix: int = 2
    mask_grow_pix: int = 3           # first-pass sources, grown by this, are left out of the channels' background
    min_snr: float = 30.0
    star_rhalf_factor: float = 1.3   # star-like: semimajor sigma below this x the compact locus
    mag_r: float = 25.0
    colour_prior_g_r: float = 0.45
    colour_prior_r_z: float = 0.35


def load_xdf() -> tuple[np.ndarray, dict]:
    """The XDF display image (H, W, 3) uint8 and its provenance (SHA-256 of the pixels, scikit-image version)."""
    import hashlib

    import skimage
    from skimage import data

    img = np.ascontiguousarray(data.hubble_deep_field())
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise XdfError(f"skimage.data.hubble_deep_field(): expected an 8-bit RGB image, got {img.dtype} {img.shape}")
    return img, {"image": "skimage.data.hubble_deep_field()", "shape": list(img.shape),
                 "sha256": hashlib.sha256(img.tobytes()).hexdigest(), "scikit_image": skimage.__version__}


def sky_levels(display: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel (sky level, robust sky noise) of a display image, display units (sigma-clipped median, MAD)."""
    from astropy.stats import sigma_clipped_stats

    lv, sd = [], []
    for c in range(display.shape[2]):
        _, med, s = sigma_clipped_stats(display[..., c].astype(float), sigma=3.0, maxiters=10)
        lv.append(med)
        sd.append(s)
    return np.asarray(lv), np.asarray(sd)


def destretch(display: np.ndarray, sky: np.ndarray, gamma: float) -> np.ndarray:
    """Linear images (H, W, C) of a display image: sign(v - sky) |v - sky|^gamma per channel."""
    d = display.astype(np.float64) - np.asarray(sky, float)
    return np.sign(d) * np.abs(d) ** gamma


def _compact_sources(d: np.ndarray, seg, snr_min: float = 20.0, fraction: float = 0.3) -> np.ndarray:
    """Labels of the compact bright sources: S/N > ``snr_min`` and size in the smallest ``fraction`` of those."""
    from photutils.segmentation import SourceCatalog

    cat = SourceCatalog(d, seg)
    area = cat.area.value
    sd = 1.4826 * np.median(np.abs(d[seg.data == 0]))
    snr = cat.segment_flux / (sd * np.sqrt(area))
    size = cat.semimajor_axis.value
    bright = snr > snr_min
    if bright.sum() < 20:
        raise XdfError(f"too few bright sources ({int(bright.sum())}) to measure the display stretch")
    cut = np.percentile(size[bright], 100 * fraction)
    return np.asarray(seg.labels)[bright & (size <= cut)]


def stretch_slope(d: np.ndarray, seg_data: np.ndarray, labels: np.ndarray, gamma: float) -> float:
    """Slope of log10(peak / total) against log10(total) of the sources ``labels`` in the image linearised with
    ``gamma`` (``d``: display minus sky). Zero for the right gamma when the sources share one PSF."""
    lin = np.sign(d) * np.abs(d) ** gamma
    idx = np.searchsorted(labels, seg_data.ravel())
    inside = (idx < len(labels)) & (labels[np.minimum(idx, len(labels) - 1)] == seg_data.ravel())
    lab = idx[inside]
    vals = lin.ravel()[inside]
    tot = np.bincount(lab, weights=vals, minlength=len(labels))
    pk = np.full(len(labels), -np.inf)
    np.maximum.at(pk, lab, vals)
    ok = tot > 0
    x, y = np.log10(tot[ok]), np.log10(pk[ok] / tot[ok])
    return float(np.polyfit(x, y, 1)[0])


def measure_gamma(fluxes_of, target: float = COUNTS_SLOPE[0], lo: float = 1.0, hi: float = 6.0,
                  tol: float = 1e-3) -> float:
    """The display gamma whose linearised source fluxes (``fluxes_of(gamma)``) have the counts slope ``target``
    (d log N / dm; :func:`counts_slope` falls as gamma grows): bisection in [lo, hi], clamped to its ends."""
    f_lo, f_hi = counts_slope(fluxes_of(lo)) - target, counts_slope(fluxes_of(hi)) - target
    if f_lo <= 0:
        return lo
    if f_hi >= 0:
        return hi
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if counts_slope(fluxes_of(mid)) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def segment_fluxes(d: np.ndarray, seg_data: np.ndarray, gamma: float) -> np.ndarray:
    """Linear flux of every segment (label order) of display-minus-sky ``d`` linearised with ``gamma``."""
    lin = np.sign(d) * np.abs(d) ** gamma
    f = np.bincount(seg_data.ravel(), weights=lin.ravel())
    return f[1:][np.bincount(seg_data.ravel())[1:] > 0]


def synthetic_sources(rng: np.random.Generator, slope: float, n: int, size: int) -> tuple[np.ndarray, ...]:
    """(flux, x, y, sigma) of :func:`synthetic_field`'s ``n`` sources, drawn from ``rng``: linear fluxes from 30 up
    (capped at 3e4) with integral counts N(>F) ~ F^-(slope / 0.4), positions (pixels) at least 5 pixels inside a
    ``size`` square, Gaussian sigma 1-2.5 pixels."""
    flux = np.minimum(30 * (1 - rng.random(n)) ** (-0.4 / slope), 3e4)
    return flux, rng.uniform(5, size - 5, n), rng.uniform(5, size - 5, n), rng.uniform(1.0, 2.5, n)


def synthetic_field(gamma: float, slope: float = COUNTS_SLOPE[0], n: int = 1500, size: int = 700, seed: int = 0,
                    display_scale: float = 8.0, sky: float = 12.0) -> np.ndarray:
    """An 8-bit display image of a field of known stretch: ``n`` Gaussian sources (1-2.5 pixel sigma) whose linear
    fluxes follow counts of slope ``slope`` (d log N / dm), unit Gaussian noise, shown as
    sky + display_scale x sign(L) |L|^(1 / gamma) (noise about as the XDF's, 5-8 display units)."""
    rng = np.random.default_rng(seed)
    flux, x, y, sig = synthetic_sources(rng, slope, n, size)
    lin = np.zeros((size, size))
    for f, cx, cy, s in zip(flux, x, y, sig, strict=True):
        y0, y1, x0, x1 = max(int(cy) - 12, 0), min(int(cy) + 13, size), max(int(cx) - 12, 0), min(int(cx) + 13, size)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        lin[y0:y1, x0:x1] += f / (2 * np.pi * s * s) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    lin += rng.normal(0, 1.0, lin.shape)
    return np.clip(np.round(sky + display_scale * np.sign(lin) * np.abs(lin) ** (1 / gamma)), 0, 255).astype(np.uint8)


def raw_gamma(display_minus_sky: np.ndarray, s: XdfSettings, target: float = COUNTS_SLOPE[0]) -> tuple[float, object]:
    """The counts-slope gamma of a display image (sky already subtracted) before calibration, and its segmentation."""
    d0, _, seg0 = _segment(display_minus_sky, s)
    return measure_gamma(lambda g: segment_fluxes(d0, seg0.data, g), target), (d0, seg0)


#: True stretches of the synthetic fields that calibrate :func:`raw_gamma` (:func:`gamma_calibration`).
CALIBRATION_GAMMAS = (1.25, 1.75, 2.25, 2.75, 3.25, 3.75)


def gamma_calibration(s: XdfSettings) -> tuple[np.ndarray, np.ndarray]:
    """(true gammas, raw estimates) on synthetic fields of known stretch: the counts-slope estimate is biased
    (isophotal segments on a stretched image lose a gamma-dependent share of faint light), so the measured gamma
    is read off this relation. The fields are fixed (seed 0) and the relation depends on the settings alone, so it
    is computed once per process and settings (six segmentations, about a fifth of a build, spread over
    :func:`~lensaudit.utils.pool.fork_map`'s workers); new arrays each call."""
    est = _gamma_calibration(s)
    return np.asarray(CALIBRATION_GAMMAS), np.array(est)


@functools.lru_cache(maxsize=4)
def _gamma_calibration(s: XdfSettings) -> tuple[float, ...]:
    from lensaudit.utils.pool import fork_map

    def estimate(g: float) -> float:        # one field, the same code in a worker or here (fork_map's contract)
        img = synthetic_field(g).astype(float)
        return raw_gamma(img - np.median(img), s)[0]

    est = fork_map(estimate, list(CALIBRATION_GAMMAS), chunksize=1)
    return tuple(np.maximum.accumulate(np.asarray(est)).tolist())


def calibrated_gamma(raw: float, truth: np.ndarray, est: np.ndarray) -> float:
    """The true gamma whose synthetic raw estimate equals ``raw`` (linear between calibration points; clamped)."""
    return float(np.interp(raw, est, truth))


def counts_slope(fluxes: np.ndarray, complete_fraction: float = 1 / 3) -> float:
    """d log10 N / dm of the brightest ``complete_fraction`` of sources (maximum-likelihood power law N(>F) ~ F^-a,
    slope 0.4 a)."""
    f = np.sort(np.asarray(fluxes, float)[np.asarray(fluxes) > 0])[::-1]
    top = f[: max(int(len(f) * complete_fraction), 5)]
    a = len(top) / np.sum(np.log(top / top[-1]))
    return float(0.4 * a)


def _segment(lin_sum: np.ndarray, s: XdfSettings, mask: np.ndarray | None = None):
    """(background-subtracted image, its noise, deblended segmentation) of a linear detection image; ``mask``: pixels
    of known sources, left out of the background."""
    from astropy.convolution import convolve
    from photutils.background import Background2D, MedianBackground
    from photutils.segmentation import deblend_sources, detect_sources, make_2dgaussian_kernel

    bkg = Background2D(lin_sum, (s.box_pix, s.box_pix), filter_size=(3, 3), bkg_estimator=MedianBackground(),
                       mask=mask, exclude_percentile=80.0)
    d = lin_sum - bkg.background
    conv = convolve(d, make_2dgaussian_kernel(2.0, size=5))
    seg = detect_sources(conv, s.detect_sigma * bkg.background_rms, n_pixels=s.npixels)
    if seg is None:
        raise XdfError("no source detected in the XDF image")
    seg = deblend_sources(conv, seg, n_pixels=s.npixels, n_levels=s.deblend_levels, contrast=s.deblend_contrast,
                          progress_bar=False)
    return d, bkg.background_rms, seg


def build_xdf_library(out: str | os.PathLike, settings: XdfSettings = XdfSettings()) -> dict:
    """Build the XDF stamp library into folder ``out`` (:class:`~lensaudit.artifacts.XdfDir`); returns the
    report (provenance, the measured stretch and resolution, and how many galaxies each cut removed)."""
    import photutils
    from photutils.segmentation import SourceCatalog

    s = settings
    xd = XdfDir(out)
    xd.root.mkdir(parents=True, exist_ok=True)
    display, prov = load_xdf()
    prov["photutils"] = photutils.__version__
    sky, sky_sd = sky_levels(display)
    # 1. the stretch: the counts of the detections in display units, linearised until their slope is the literature's
    dsum = (display.astype(float) - sky).sum(axis=2)
    raw, (d0, seg0) = raw_gamma(dsum, s)
    fluxes_of = lambda g: segment_fluxes(d0, seg0.data, g)  # noqa: E731
    cal_true, cal_est = gamma_calibration(s)
    gamma = calibrated_gamma(raw, cal_true, cal_est)
    gamma_range = [calibrated_gamma(measure_gamma(fluxes_of, t), cal_true, cal_est)
                   for t in (COUNTS_SLOPE[0] + COUNTS_SLOPE[1], COUNTS_SLOPE[0] - COUNTS_SLOPE[1])]
    compact = np.sort(_compact_sources(d0, seg0))
    check_slope = stretch_slope(d0, seg0.data, compact, gamma)
    # 2. linear channels, detection on their sum
    lin, n_floor, src_mask = linear_channels(display, sky, gamma, seg0.data, s)
    d, rms, seg = _segment(lin.sum(axis=2), s, mask=src_mask)
    cat = SourceCatalog(d, seg)
    labels = np.asarray(seg.labels)
    area = cat.area.value
    flux = cat.segment_flux
    noise = np.median(rms)
    snr = flux / (noise * np.sqrt(area))
    bbox = np.array([(b.iymin, b.iymax, b.ixmin, b.ixmax) for b in cat.bbox])
    cy, cx = cat.y_centroid, cat.x_centroid
    size = cat.semimajor_axis.value
    locus = np.isin(labels, _compact_sources(d, seg, fraction=0.1))
    size_locus = float(np.median(size[locus]))
    fwhm_pix = float(np.median(cat.fwhm.value[locus]))
    fwhm_arcsec = fwhm_pix * PIXSCALE_ARCSEC
    counts = counts_slope(flux)
    # 3. the cuts, in order, each counted
    saturated = saturated_segments(display, seg.data, labels)
    keep, reasons = cut_flow(detection_cuts(area, bbox, saturated, snr, size, size_locus, d.shape, s))
    keep, more = cut_flow([("blended beyond repair (touching neighbours brighter than the galaxy)",
                            blended(seg.data, labels, flux, cy, cx, keep, s.stamp_pix))], keep)
    reasons.update(more)
    # 4. stamps: own segment grown by grow_pix, the rest zero
    chosen = np.flatnonzero(keep)
    stamps = cut_stamps(lin, seg.data, labels[chosen], cy[chosen], cx[chosen], s)
    sums = stamps.sum(axis=(2, 3))
    ok = (sums > 0).all(axis=1)
    reasons["no positive light in a band"] = int((~ok).sum())
    neg = np.array([negative_excess(st) is not None for st in stamps]) & ok
    reasons["negative light beyond noise (background)"] = int(neg.sum())
    ok &= ~neg
    stamps, chosen, sums = stamps[ok], chosen[ok], sums[ok]
    # colour zero points: the library's median colours set to the stated prior; then r = mag_r
    kg, kz = colour_scales(sums, s.colour_prior_g_r, s.colour_prior_r_z)
    stamps[:, 0] *= kg
    stamps[:, 2] *= kz
    stamps = normalised_to_r(stamps, s.mag_r)
    flux3 = stamps.sum(axis=(2, 3))
    ids = [f"xdf_{int(round(cx[i])):04d}_{int(round(cy[i])):04d}_{int(labels[i])}" for i in chosen]
    meta = pd.DataFrame({"ID": ids, "Z": np.nan, **{f"MAG_{b}": MAG_ZEROPOINT - 2.5 * np.log10(flux3[:, j])
                                                    for j, b in enumerate("GRZ")},
                         "X_PIX": cx[chosen], "Y_PIX": cy[chosen], "AREA_PIX": area[chosen], "SNR": snr[chosen]})
    report = {"provenance": prov, "settings": asdict(s),
              "pixscale_arcsec": PIXSCALE_ARCSEC, "pixscale_rel_uncertainty": PIXSCALE_REL_UNCERTAINTY,
              "sky_display": sky.tolist(), "sky_sd_display": sky_sd.tolist(),
              "pixels_raised_to_the_sky_floor": n_floor,
              "gamma": gamma, "gamma_raw": raw, "gamma_calibration": {"true": cal_true.tolist(), "raw": cal_est.tolist()},
              "gamma_for_literature_range": gamma_range, "counts_slope_literature": list(COUNTS_SLOPE),
              "counts_slope_dlogN_dm": counts,
              "check_compact_peak_to_total_slope": check_slope, "n_compact_sources": int(len(compact)),
              "compact_fwhm_pix": fwhm_pix, "effective_fwhm_arcsec": fwhm_arcsec,
              "colour_zero_points": {"g_scale": float(kg), "z_scale": float(kz)},
              "n_detected": int(len(labels)), "rejected": reasons, "n_stamps": int(len(stamps))}
    hdr = {"ORIGIN": "lensaudit sources build-xdf", "XDFSHA": prov["sha256"][:64], "SKIMAGE": prov["scikit_image"],
           "PHOTUTIL": prov["photutils"], "GAMMA": round(gamma, 6), "EFFFWHM": round(fwhm_arcsec, 6),
           "PSUNC": PIXSCALE_REL_UNCERTAINTY}
    write_stamp_library(xd.library, stamps, PIXSCALE_ARCSEC, meta, header=hdr)
    lib = StampLibrary.read(xd.library)
    report["halves"] = {h: int((lib.meta["HALF"] == h).sum()) for h in ("A", "B")}
    report["library"] = str(xd.library)
    atomic_write_json(xd.report, report)
    log.info("XDF library: %d stamps (A %d, B %d) of %d detections; gamma %.2f; %s", len(stamps),
             report["halves"]["A"], report["halves"]["B"], len(labels), gamma, json.dumps(reasons))
    return report


def linear_channels(display: np.ndarray, sky: np.ndarray, gamma: float, first_pass: np.ndarray,
                    s: XdfSettings) -> tuple[np.ndarray, int, np.ndarray]:
    """(linear channels (H, W, 3), how many pixel values were raised to the floor, the source mask) of a display
    image: :func:`destretch` with ``gamma`` about the channels' ``sky``; values darker than the 0.5th percentile
    of each channel's sky pixels (``first_pass`` == 0: the first pass's segmentation) - the JPEG's ringing and
    colour-balance artefacts beside bright sources - raised to it (no source has negative light); then each
    channel's local background (:func:`_background`) subtracted with the first pass's sources, grown by
    ``mask_grow_pix``, masked."""
    from scipy.ndimage import binary_dilation

    lin = destretch(display, sky, gamma)
    floor = np.asarray([np.percentile(lin[..., c][first_pass == 0], 0.5) for c in range(3)])
    n_floor = int((lin < floor).sum())
    lin = np.maximum(lin, floor)
    mask = binary_dilation(first_pass > 0, iterations=s.mask_grow_pix)
    return np.stack([lin[..., c] - _background(lin[..., c], s, mask) for c in range(3)], axis=-1), n_floor, mask


def saturated_segments(display: np.ndarray, seg_data: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per label: whether any pixel of its segment has a display value of 255 in any channel."""
    return np.bincount(seg_data.ravel(), weights=(display == 255).any(axis=2).ravel())[labels] > 0


def cut_flow(criteria: list[tuple[str, np.ndarray]], keep: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Apply cuts in order: (what is kept, and per cut how many it removed of what the earlier cuts kept).
    ``criteria``: (name, rejected mask) pairs; ``keep``: what was kept before them (all when None)."""
    keep = np.ones(len(criteria[0][1]), bool) if keep is None else np.array(keep, bool)
    reasons = {}
    for name, bad in criteria:
        reasons[name] = int((keep & bad).sum())
        keep &= ~bad
    return keep, reasons


def detection_cuts(area: np.ndarray, bbox: np.ndarray, saturated: np.ndarray, snr: np.ndarray, size: np.ndarray,
                   size_locus: float, shape: tuple[int, int], s: XdfSettings) -> list[tuple[str, np.ndarray]]:
    """The per-detection cuts, in the order applied (:func:`cut_flow`): ``area`` in pixels, ``bbox`` (N, 4)
    inclusive (y0, y1, x0, x1) pixel limits, ``saturated`` a display value of 255 inside, ``snr`` of the
    segment flux, ``size`` the second-moment semimajor axis (pixels) against ``size_locus``, the compact
    sources' median; ``shape`` the image's."""
    H, W = shape
    y0, y1, x0, x1 = np.asarray(bbox, int).reshape(-1, 4).T
    m, span = s.edge_margin_pix, s.stamp_pix - 2 * s.grow_pix - 2
    return [("smaller than the minimum area", area < s.min_area_pix),
            ("touching the image edge", (y0 < m) | (x0 < m) | (y1 >= H - m) | (x1 >= W - m)),
            ("saturated (display value 255)", np.asarray(saturated, bool)),
            ("S/N below the minimum", snr < s.min_snr),
            ("star-like (size within 1.3x the compact locus)", size < s.star_rhalf_factor * size_locus),
            ("larger than the stamp", ((y1 - y0) > span) | ((x1 - x0) > span))]


def blended(seg_data: np.ndarray, labels: np.ndarray, flux: np.ndarray, cy: np.ndarray, cx: np.ndarray,
            keep: np.ndarray, stamp_pix: int) -> np.ndarray:
    """Per detection (only those kept are examined): whether the segments touching its own, within its stamp,
    hold more flux than it ("blended beyond repair")."""
    from scipy.ndimage import binary_dilation

    out = np.zeros(len(labels), bool)
    seg_flux = dict(zip(np.asarray(labels).tolist(), np.asarray(flux, float).tolist(), strict=True))
    for i, lab in enumerate(labels):
        if not keep[i]:
            continue
        sb = _cut(seg_data.astype(float), cy[i], cx[i], stamp_pix).astype(int)
        ring = binary_dilation(sb == lab, iterations=1) & (sb != lab) & (sb > 0)
        out[i] = sum(seg_flux.get(t, 0.0) for t in np.unique(sb[ring]).tolist()) > flux[i]
    return out


def cut_stamps(lin: np.ndarray, seg_data: np.ndarray, labels: np.ndarray, cy: np.ndarray, cx: np.ndarray,
               s: XdfSettings) -> np.ndarray:
    """Stamps (N, 3, stamp_pix, stamp_pix) of linear display channels ``lin`` (H, W, 3: R, G, B) centred on
    (cy, cx): the galaxy's own segment grown by ``grow_pix`` into the sky (never into a neighbour), every other
    pixel zero; g from blue, r the mean of blue and green, z from green."""
    from scipy.ndimage import binary_dilation

    stamps = np.empty((len(labels), 3, s.stamp_pix, s.stamp_pix))
    for k, lab in enumerate(labels):
        sb = _cut(seg_data.astype(float), cy[k], cx[k], s.stamp_pix).astype(int)
        mask = binary_dilation(sb == lab, iterations=s.grow_pix) & ((sb == lab) | (sb == 0))
        ch = [_cut(lin[..., c], cy[k], cx[k], s.stamp_pix) for c in range(3)]
        blue, green = ch[2], ch[1]          # display channels are R, G, B in that order
        stamps[k] = np.stack([blue, 0.5 * (blue + green), green]) * mask[None]
    return stamps


def colour_scales(sums: np.ndarray, g_r: float, r_z: float) -> tuple[float, float]:
    """(g, z) flux scales that move the median g - r and r - z (AB) of band totals ``sums`` (N, 3) to the
    stated ``g_r`` and ``r_z``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        gr = -2.5 * np.log10(sums[:, 0] / sums[:, 1])
        rz = -2.5 * np.log10(sums[:, 1] / sums[:, 2])
    return float(10 ** (-0.4 * (g_r - np.median(gr)))), float(10 ** (0.4 * (r_z - np.median(rz))))


def normalised_to_r(stamps: np.ndarray, mag_r: float) -> np.ndarray:
    """Stamps (N, 3, S, S) in nanomaggies scaled so that each one's r band totals ``mag_r`` (AB)."""
    f_r = 10 ** (-0.4 * (mag_r - MAG_ZEROPOINT))
    return stamps * (f_r / stamps[:, 1].sum(axis=(1, 2)))[:, None, None, None]


def _cut(a: np.ndarray, cy: float, cx: float, n: int) -> np.ndarray:
    """An n x n box of ``a`` centred on the pixel nearest (cy, cx), zero outside the image."""
    y0, x0 = int(round(cy)) - n // 2, int(round(cx)) - n // 2
    out = np.zeros((n, n), dtype=float)
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + n, a.shape[0]), min(x0 + n, a.shape[1])
    if ye > ys and xe > xs:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = a[ys:ye, xs:xe]
    return out


def _background(ch: np.ndarray, s: XdfSettings, mask: np.ndarray) -> np.ndarray:
    """The local background of one linear channel (photutils ``Background2D``, sources masked)."""
    from photutils.background import Background2D, MedianBackground

    return Background2D(ch, (s.box_pix, s.box_pix), filter_size=(3, 3), bkg_estimator=MedianBackground(), mask=mask,
                        exclude_percentile=80.0).background


#: Environment variable naming the folder for built-once data (the default XDF library).
CACHE_ENV = "LENSAUDIT_CACHE"


def default_library() -> Path:
    """The XDF library file in ``$LENSAUDIT_CACHE/xdf`` (else ``~/.cache/lensaudit/xdf``), built there on first use
    (about 15 s; deterministic) and checked against this machine's XDF image after."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lensaudit") / "xdf"
    xd = XdfDir(root)
    if not (xd.library.is_file() and xd.report.is_file()):
        log.info("building the XDF stamp library into %s (once)", root)
        build_xdf_library(root)
    check_provenance(root)
    return xd.library


def check_provenance(folder: str | os.PathLike) -> dict:
    """The build report of an XDF library folder after checking it matches this machine's XDF image and the
    library file's header; :class:`XdfError` naming what differs."""
    xd = XdfDir(folder)
    rep_path, lib_path = xd.report, xd.library
    if not rep_path.is_file() or not lib_path.is_file():
        raise XdfError(f"{folder}: not an XDF library folder (needs {lib_path.name} and {rep_path.name})")
    rep = json.loads(rep_path.read_text())
    _, prov = load_xdf()
    if rep["provenance"]["sha256"] != prov["sha256"]:
        raise XdfError(f"{rep_path}: built from an XDF image with SHA-256 {rep['provenance']['sha256'][:16]}..., this "
                       f"scikit-image ships {prov['sha256'][:16]}...")
    from astropy.io import fits

    with fits.open(lib_path) as h:
        if h["STAMPS"].header.get("XDFSHA") != prov["sha256"][:64]:
            raise XdfError(f"{lib_path}: its header names another XDF image than its report")
    return rep


def copy_library(source: str | os.PathLike, out: str | os.PathLike, settings: XdfSettings = XdfSettings()) -> dict:
    """Copy an XDF library folder already built (``lensaudit sources build-xdf``, the cache of
    :func:`default_library`) into folder ``out`` instead of building it again (the build is deterministic: about
    half a minute on 2 cores). Checked first: its provenance (:func:`check_provenance`) and that it was built with
    ``settings``; :class:`XdfError` naming the difference. Each file is written atomically; returns the report."""
    from lensaudit.utils.io import atomic_write_bytes

    rep = check_provenance(source)
    want = asdict(settings)
    if rep.get("settings") != want:
        diff = sorted(k for k in want if (rep.get("settings") or {}).get(k) != want[k])
        raise XdfError(f"{XdfDir(source).report}: built with other settings than asked for ({', '.join(diff) or 'keys'})")
    src, dst = XdfDir(source), XdfDir(out)
    dst.root.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dst.library, src.library.read_bytes())
    atomic_write_json(dst.report, {**rep, "library": str(dst.library), "copied_from": str(src.root)})
    return check_provenance(out)


def open_library(spec: str) -> StampLibrary:
    """A stamp library (or one half) from ``PATH``, ``PATH:A``, ``PATH:B``, or ``xdf``, ``xdf:A``, ``xdf:B`` for the
    XDF library of :func:`default_library` (built on first use)."""
    from lensaudit.sources.library import split_spec

    path, half = split_spec(str(spec))
    return StampLibrary.read(default_library() if path == "xdf" else path).half(half)


__all__ = ["CACHE_ENV", "copy_library", "open_library", "COUNTS_SLOPE", "PIXSCALE_ARCSEC", "XdfError", "default_library", "XdfSettings",
           "blended", "build_xdf_library", "calibrated_gamma", "colour_scales", "cut_flow",
           "cut_stamps", "detection_cuts", "linear_channels", "normalised_to_r", "saturated_segments", "check_provenance", "counts_slope", "destretch", "gamma_calibration",
           "load_xdf", "measure_gamma", "raw_gamma", "segment_fluxes", "sky_levels", "stretch_slope", "synthetic_field",
           "synthetic_sources"]

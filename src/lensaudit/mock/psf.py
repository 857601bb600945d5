"""PSFs and noise calibration of the mock survey (pure functions over arrays; pixels are 0.262 arcsec).

Each brick and band has its own PSF: an elliptical Moffat core with its own beta plus a broad
Moffat wing, whose FWHM as seen in the coadd pixels (after the resampling correlation) is the
drawn seeing. The catalog reports that FWHM with scatter (``PSFSIZE``); the pixels use the true PSF.

Noise is white per global pixel, then correlated by the resampling kernel of coadds
(:data:`CORR_KERNEL`, applied to signal and noise alike). Its amplitude is set from the depth the
catalog states, as legacypipe defines it: PSFDEPTH = sum(p^2) / sigma_w^2 with p the PSF model and
sigma_w the noise of the inverse-variance map, which ignores the correlation that resampling
introduces (so the coadd pixels scatter by about 0.65 sigma_w, less than the map says). For these
PSFs that definition agrees with the true matched-filter S/N under the correlated noise to better
than one percent (:func:`matched_filter_sigma` computes the latter; the tests measure it on
rendered noise). GALDEPTH is defined the same way for a 0.45 arcsec round exponential galaxy.
Written by hand because the renderer needs these exact quantities for its own PSF model.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.signal import correlate, fftconvolve

from lensaudit.survey.constants import PIXEL_SCALE_ARCSEC

#: Per-axis 3-tap kernel of the correlation resampled coadds show (variance factor 0.65 per axis).
CORR_A = 0.06
CORR_KERNEL = np.array([CORR_A, 1 - 2 * CORR_A, CORR_A])
PSF_SIZE = 41
#: Tractor's reference galaxy for GALDEPTH: a round exponential with half-light radius 0.45 arcsec.
GALDEPTH_RE_ARCSEC = 0.45
WING_BETA = 2.2
WING_SCALE = 2.5  # wing FWHM / core FWHM


def _moffat(fwhm_pix: float, beta: float, e: float, angle: float, size: int, oversample: int = 3) -> np.ndarray:
    """Pixel-integrated (oversampled) elliptical Moffat, normalised to sum 1 within the stamp."""
    c = (size - 1) / 2
    sub = (np.arange(size * oversample) + 0.5) / oversample - 0.5 - c
    x, y = np.meshgrid(sub, sub)
    q = (1 - e) / (1 + e)
    ca, sa = np.cos(angle), np.sin(angle)
    xr, yr = ca * x + sa * y, -sa * x + ca * y
    r2 = xr * xr * q + yr * yr / q
    alpha = fwhm_pix / (2 * np.sqrt(2 ** (1 / beta) - 1))
    m = (1 + r2 / alpha**2) ** (-beta)
    m = m.reshape(size, oversample, size, oversample).sum(axis=(1, 3))
    return m / m.sum()


def psf_image(core_fwhm_pix: float, beta: float, wing_fraction: float, e: float = 0.0, angle: float = 0.0,
              size: int = PSF_SIZE) -> np.ndarray:
    """Normalised PSF stamp: (1 - w) elliptical Moffat(beta) core + w round Moffat(2.2) wing of 2.5x the FWHM."""
    core = _moffat(core_fwhm_pix, beta, e, angle, size)
    wing = _moffat(WING_SCALE * core_fwhm_pix, WING_BETA, 0.0, 0.0, size)
    p = (1 - wing_fraction) * core + wing_fraction * wing
    return p / p.sum()


def measured_fwhm(psf: np.ndarray, oversample: int = 4) -> float:
    """FWHM (pixels) as the equivalent diameter of the area above half maximum (bilinear oversampling)."""
    from scipy.ndimage import zoom

    z = zoom(psf, oversample, order=1)
    area = float((z >= z.max() / 2).sum()) / oversample**2
    return 2 * np.sqrt(area / np.pi)


def core_for_fwhm(target_fwhm_pix: float, beta: float, wing_fraction: float, e: float, angle: float) -> float:
    """The core FWHM parameter whose PSF, as it appears in the coadd pixels (after the resampling
    correlation, :func:`effective_psf`), measures ``target_fwhm_pix`` (three fixed-point steps)."""
    core = target_fwhm_pix
    for _ in range(3):
        core *= target_fwhm_pix / measured_fwhm(effective_psf(psf_image(core, beta, wing_fraction, e, angle)))
    return core


@lru_cache(maxsize=1)
def noise_autocorrelation() -> np.ndarray:
    """(5, 5) autocorrelation of the correlation kernel: the covariance of unit white noise after it."""
    k1 = np.convolve(CORR_KERNEL, CORR_KERNEL[::-1])
    return np.outer(k1, k1)


def effective_psf(psf: np.ndarray) -> np.ndarray:
    """The PSF as it appears in the pixels: the PSF convolved with the correlation kernel (sum 1)."""
    k = np.outer(CORR_KERNEL, CORR_KERNEL)
    p = fftconvolve(psf, k, mode="same")
    return p / p.sum()


def matched_filter_sigma(profile: np.ndarray, sigma_white: float) -> float:
    """Standard deviation (nanomaggies) of the optimal flux estimate of a source with normalised
    ``profile`` (before resampling) under white noise ``sigma_white`` correlated by the coadd kernel:
    the profile and the noise both pass through the kernel, the estimator weights by the result."""
    p = effective_psf(profile)
    ac = correlate(p, p, mode="full")                       # autocorrelation of p
    c0 = np.array(ac.shape) // 2
    window = ac[c0[0] - 2 : c0[0] + 3, c0[1] - 2 : c0[1] + 3]
    pcp = float((window * noise_autocorrelation()).sum())
    return float(sigma_white * np.sqrt(pcp) / (p * p).sum())


def white_sigma(psf: np.ndarray, psfdepth: float) -> float:
    """White-noise sigma (nanomaggies per pixel, before correlation: the inverse-variance map's) for a
    stated PSFDEPTH (1/nmgy^2): PSFDEPTH = sum(p^2) / sigma_w^2."""
    p = psf / psf.sum()
    return float(np.sqrt((p * p).sum() / psfdepth))


def exponential_galaxy(re_arcsec: float = GALDEPTH_RE_ARCSEC, size: int = PSF_SIZE, oversample: int = 3) -> np.ndarray:
    """Round exponential profile (half-light radius in arcsec), normalised stamp."""
    c = (size - 1) / 2
    sub = ((np.arange(size * oversample) + 0.5) / oversample - 0.5 - c) * PIXEL_SCALE_ARCSEC
    x, y = np.meshgrid(sub, sub)
    g = np.exp(-1.6783 * np.hypot(x, y) / re_arcsec)
    g = g.reshape(size, oversample, size, oversample).sum(axis=(1, 3))
    return g / g.sum()


def galdepth(psf: np.ndarray, sigma_white: float) -> float:
    """GALDEPTH (1/nmgy^2) of the 0.45 arcsec round exponential under this PSF and white noise,
    defined as PSFDEPTH is: sum(g^2) / sigma_w^2 with g the PSF-convolved galaxy."""
    g = fftconvolve(exponential_galaxy(), psf, mode="same")
    g = g / g.sum()
    return float((g * g).sum() / sigma_white**2)


def matched_filter_flux(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """PSF-weighted flux estimate at every pixel of ``image`` (nanomaggies): sum(p d) / sum(p^2)."""
    p = effective_psf(psf)
    return correlate(image, p, mode="same", method="fft") / float((p * p).sum())

"""Per-band PSF kernels from the host's PSF FWHM, and batched FFT convolution (PyTorch).

A Moffat I(r) ~ (1 + (r / alpha)^2)^-beta with alpha = FWHM / (2 sqrt(2^(1/beta) - 1)), or a
Gaussian with sigma = FWHM / (2 sqrt(2 ln 2)); FWHM from DR10's ``PSFSIZE_{G,R,Z}`` (arcsec).
Kernels are pixel-integrated (evaluated on a 3x sub-grid and summed) and normalised to sum 1
within the kernel stamp, per injection and band. A round profile is evaluated once per distinct sub-pixel
radius (the stamp's 8-fold symmetry: 741 of 5,625 sub-pixels for a 25-pixel kernel) and once per distinct
pixel, then spread over the stamp.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from lensaudit.survey.constants import PIXEL_SCALE_ARCSEC

_SUB = 3


@functools.lru_cache(maxsize=16)
def _radial_layout(size: int, pixscale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel stamp's sub-pixel radii up to its 8-fold symmetry (a round profile needs each only once):
    (U,) distinct r^2 in arcsec^2 (float64, exact up to one rounding), the (P, 9) indices of those r^2 that make
    each of the P symmetry-distinct pixels, and the (size, size) index of each pixel's distinct pixel."""
    m, h = (size * _SUB - 1) // 2, (size - 1) // 2
    p, q = np.tril_indices(m + 1)                                   # distinct |offsets| (p >= q) in sub-pixels
    r2 = (p * p + q * q) * (pixscale / _SUB) ** 2
    uid = np.zeros((m + 1, m + 1), np.int64)
    uid[p, q] = uid[q, p] = np.arange(p.size)
    P, Q = np.tril_indices(h + 1)                                   # distinct |offsets| of whole pixels
    d = np.arange(-1, 2)
    sy = np.abs(_SUB * P[:, None, None] + d[None, :, None])         # the pixel's 3 x 3 sub-pixel offsets
    sx = np.abs(_SUB * Q[:, None, None] + d[None, None, :])
    idx = uid[sy, sx].reshape(P.size, _SUB * _SUB)
    pid = np.zeros((h + 1, h + 1), np.int64)
    pid[P, Q] = pid[Q, P] = np.arange(P.size)
    off = np.abs(np.arange(size) - h)
    return r2, idx, pid[off[:, None], off[None, :]]


def psf_kernels(fwhm_arcsec: torch.Tensor, size: int, model: str = "moffat", beta: float = 3.5,
                pixscale: float = PIXEL_SCALE_ARCSEC) -> torch.Tensor:
    """(B, bands, size, size) normalised kernels for FWHMs (B, bands) in arcsec."""
    f = torch.as_tensor(fwhm_arcsec)
    if f.dim() != 2:
        raise ValueError(f"psf_kernels: fwhm_arcsec must be (B, bands), got shape {tuple(f.shape)}")
    if not bool(torch.isfinite(f).all()) or bool((f <= 0).any()):
        raise ValueError("psf_kernels: PSF FWHM must be finite and > 0 arcsec")
    if size % 2 == 0:
        raise ValueError(f"psf_kernels: size must be odd, got {size}")
    r2_u, idx, pix = _radial_layout(size, float(pixscale))
    r2 = torch.as_tensor(r2_u, dtype=f.dtype, device=f.device)                 # (U,) arcsec^2
    fw = f[..., None]
    if model == "moffat":
        alpha = fw / (2 * math.sqrt(2 ** (1 / beta) - 1))
        k = (1 + r2 / alpha**2) ** (-beta)
    elif model == "gaussian":
        sig = fw / (2 * math.sqrt(2 * math.log(2)))
        k = torch.exp(-0.5 * r2 / sig**2)
    else:
        raise ValueError(f"psf_kernels: unknown PSF model {model!r} (moffat or gaussian)")
    k = k[..., torch.as_tensor(idx, device=f.device)].sum(dim=-1)             # (B, bands, P) pixel-integrated
    k = k[..., torch.as_tensor(pix, device=f.device)]                         # (B, bands, size, size)
    return k / k.sum(dim=(-2, -1), keepdim=True)


def fft_length(n: int) -> int:
    """The smallest FFT length >= ``n`` with no prime factor above 5 (pocketfft's and cuFFT's fast sizes)."""
    if n < 1:
        raise ValueError(f"fft_length: n must be >= 1, got {n}")
    m = n
    while True:
        r = m
        for f in (2, 3, 5):
            while r % f == 0:
                r //= f
        if r == 1:
            return m
        m += 1


def convolve_spectrum(images: torch.Tensor, kernels: torch.Tensor, weights: torch.Tensor | None = None,
                      n_fft: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Full linear convolution of (B, C, H, W) images with (B, C, K, K) kernels, each (image, kernel) pair scaled by
    ``weights`` (B, C) if given; images may have one channel for all C kernels (one FFT serves every band). Returns
    the (B, C, H + K - 1, W + K - 1) convolution and its real-FFT spectrum (B, C, n_fft, n_fft // 2 + 1) on an
    ``n_fft`` x ``n_fft`` grid (default: the smallest one holding the convolution; a larger one holds it padded with
    zeros, so that the spectrum also gives the convolution's autocorrelation at lags up to the difference)."""
    h, w = images.shape[-2:]
    k = kernels.shape[-1]
    m = (h + k - 1, w + k - 1)
    n = (m[0], m[1]) if n_fft is None else (n_fft, n_fft)
    if n[0] < m[0] or n[1] < m[1]:
        raise ValueError(f"convolve_spectrum: n_fft {n_fft} is smaller than the convolution {m}")
    spec = torch.fft.rfft2(images, s=n) * torch.fft.rfft2(kernels, s=n)
    if weights is not None:
        spec = spec * weights[..., None, None]
    out = torch.fft.irfft2(spec, s=n)
    return (out if n == m else out[..., : m[0], : m[1]]), spec


def fft_convolve(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Full linear convolution of (B, C, H, W) images with (B, C, K, K) kernels: (B, C, H + K - 1, W + K - 1)."""
    return convolve_spectrum(images, kernels)[0]


__all__ = ["convolve_spectrum", "fft_convolve", "fft_length", "psf_kernels"]

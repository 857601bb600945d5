"""Per-band PSF kernels from the host's PSF FWHM, and batched FFT convolution (PyTorch).

A Moffat I(r) ~ (1 + (r / alpha)^2)^-beta with alpha = FWHM / (2 sqrt(2^(1/beta) - 1)), or a
Gaussian with sigma = FWHM / (2 sqrt(2 ln 2)); FWHM from DR10's ``PSFSIZE_{G,R,Z}`` (arcsec).
Kernels are pixel-integrated (evaluated on a 3x sub-grid and summed) and normalised to sum 1
within the kernel stamp, per injection and band.
"""

from __future__ import annotations

import math

import torch

from lensaudit.survey.constants import PIXEL_SCALE_ARCSEC

_SUB = 3


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
    c = (size - 1) / 2
    sub = ((torch.arange(size * _SUB, dtype=f.dtype, device=f.device) + 0.5) / _SUB - 0.5 - c) * pixscale
    r2 = sub[None, :] ** 2 + sub[:, None] ** 2                                   # (S, S) arcsec^2
    fw = f[..., None, None]
    if model == "moffat":
        alpha = fw / (2 * math.sqrt(2 ** (1 / beta) - 1))
        k = (1 + r2 / alpha**2) ** (-beta)
    elif model == "gaussian":
        sig = fw / (2 * math.sqrt(2 * math.log(2)))
        k = torch.exp(-0.5 * r2 / sig**2)
    else:
        raise ValueError(f"psf_kernels: unknown PSF model {model!r} (moffat or gaussian)")
    k = k.reshape(*f.shape, size, _SUB, size, _SUB).sum(dim=(-3, -1))
    return k / k.sum(dim=(-2, -1), keepdim=True)


def fft_convolve(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Full linear convolution of (B, C, H, W) images with (B, C, K, K) kernels: (B, C, H + K - 1, W + K - 1)."""
    h, w = images.shape[-2:]
    k = kernels.shape[-1]
    shape = (h + k - 1, w + k - 1)
    out = torch.fft.irfft2(torch.fft.rfft2(images, s=shape) * torch.fft.rfft2(kernels, s=shape), s=shape)
    return out


__all__ = ["fft_convolve", "psf_kernels"]

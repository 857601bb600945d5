"""The SIE + external shear of :mod:`lensaudit.lensing.mass` on PyTorch tensors, batched over lenses.

The injection engine ray-traces thousands of lenses at once on a CPU or a GPU; the formulas are
those of :func:`lensaudit.lensing.mass.sie_deflection` and :func:`~lensaudit.lensing.mass.shear_deflection`
(same Einstein-radius convention, same spherical limit) and the tests hold the two to 1e-10 in
float64. Angles in arcsec; ``x``, ``y`` of shape (B, ...) (one leading axis per lens, any grid after
it); every parameter a scalar or a tensor of shape (B,).
"""

from __future__ import annotations

import torch

#: Axis ratios above this use the SIS formula (the elliptical one is 0/0 at q = 1).
Q_SPHERICAL = 1 - 1e-6


def _per_lens(v, like: torch.Tensor) -> torch.Tensor:
    """A parameter as a tensor broadcastable against ``like`` (B, ...): (B,) -> (B, 1, ..., 1)."""
    t = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    return t.reshape(t.shape + (1,) * (like.dim() - t.dim())) if t.dim() else t


def sie_deflection(x: torch.Tensor, y: torch.Tensor, theta_e, q, phi, x0=0.0, y0=0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Deflection (alpha_x, alpha_y), arcsec, of SIEs at (x0, y0) with axis ratios q in (0, 1]."""
    te, q, phi = _per_lens(theta_e, x), _per_lens(q, x), _per_lens(phi, x)
    if bool(((q <= 0) | (q > 1)).any()):
        raise ValueError("sie_deflection: axis ratio q outside (0, 1]")
    dx, dy = x - _per_lens(x0, x), y - _per_lens(y0, x)
    c, s = torch.cos(phi), torch.sin(phi)
    xr, yr = c * dx + s * dy, -s * dx + c * dy
    spherical = q > Q_SPHERICAL
    any_sph, all_sph = bool(spherical.any()), bool(spherical.all())
    if any_sph:
        r = torch.hypot(xr, yr) + 1e-12
        sis_x, sis_y = te * xr / r, te * yr / r
    if not all_sph:                 # each branch is computed only when some lens needs it (per-lens results unchanged)
        qe = torch.where(spherical, torch.full_like(q, 0.5), q)      # keeps the unused branch finite
        e = torch.sqrt(1.0 - qe * qe)
        psi = torch.sqrt(qe * qe * xr * xr + yr * yr) + 1e-12
        f = te * torch.sqrt(qe) / e
        ell_x = f * torch.atan(e * xr / psi)
        ell_y = f * torch.atanh(torch.clamp(e * yr / psi, -1 + 1e-12, 1 - 1e-12))
    if all_sph:
        axr, ayr = sis_x, sis_y
    elif not any_sph:
        axr, ayr = ell_x, ell_y
    else:
        axr, ayr = torch.where(spherical, sis_x, ell_x), torch.where(spherical, sis_y, ell_y)
    return c * axr - s * ayr, s * axr + c * ayr


def shear_deflection(x: torch.Tensor, y: torch.Tensor, gamma1, gamma2, x0=0.0, y0=0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Deflection (arcsec) of external shears (gamma1, gamma2) about (x0, y0)."""
    g1, g2 = _per_lens(gamma1, x), _per_lens(gamma2, x)
    dx, dy = x - _per_lens(x0, x), y - _per_lens(y0, x)
    return g1 * dx + g2 * dy, g2 * dx - g1 * dy


def ray_trace(x: torch.Tensor, y: torch.Tensor, theta_e, q, phi, gamma1=0.0, gamma2=0.0, x0=0.0,
              y0=0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Source-plane positions beta = theta - alpha(theta) of SIE + shear lenses centred at (x0, y0)."""
    ax, ay = sie_deflection(x, y, theta_e, q, phi, x0, y0)
    sx, sy = shear_deflection(x, y, gamma1, gamma2, x0, y0)
    return x - ax - sx, y - ay - sy


__all__ = ["Q_SPHERICAL", "ray_trace", "shear_deflection", "sie_deflection"]

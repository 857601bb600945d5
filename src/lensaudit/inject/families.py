"""Source families of the injection engine: surface brightness at source-plane positions (PyTorch).

A family maps source-plane positions (B, H, W), arcsec, to surface brightness (B, 3, H, W) in
nanomaggies per arcsec^2 in g, r, z of a source whose *unlensed* r-band flux is 1 nanomaggy; the
engine scales it to the drawn magnitude. Conventions (as :mod:`lensaudit.lensing.light`):
elliptical radius r = sqrt(q x'^2 + y'^2 / q) in the frame of the source's major axis (x', at
``src_phi`` counter-clockwise from +x), so ``src_re`` is the **circularised** half-light radius
(semi-major axis r_e / sqrt(q)); b_n solves Gamma(2n) = 2 gamma(2n, b_n) (half the light inside
r_e); unit flux. The profiles are :mod:`lensaudit.lensing.light`'s, the same functions the mock survey
renders with (one implementation for NumPy and PyTorch), in lenstronomy's ``SERSIC_ELLIPSE``
convention (tested against it).

* ``sersic``: the published baseline, one colour.
* ``clumpy``: an exponential disc plus Gaussian star-forming knots with their own colours.
* ``stamps``: images from a :class:`~lensaudit.sources.library.StampLibrary`, rotated by ``src_phi``,
  optionally mirrored, sampled bilinearly (``grid_sample``), colours from the stamp's own bands.
* ``planted``: a Sersic source the engine renders **without PSF convolution or noise**, deliberately
  unrealistic, for testing that the realism gate catches it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.special import gammaincinv

from lensaudit.inject.config import FamilyConfig
from lensaudit.inject.params import MAX_KNOTS
from lensaudit.lensing.light import gaussian_unit_flux, sersic_b, sersic_total, sersic_unit_flux
from lensaudit.sources.library import curve_of_growth


def params_to_tensors(params: pd.DataFrame, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """Numeric and boolean columns of a parameter table as (B,) tensors."""
    out = {}
    for c in params.columns:
        v = params[c].to_numpy()
        if v.dtype.kind in "fiub":
            out[c] = torch.as_tensor(v.astype(np.float64), dtype=dtype, device=device)
    return out


def colour_ratios(g_r: torch.Tensor, r_z: torch.Tensor) -> torch.Tensor:
    """(B, 3) flux ratios (g, r, z) / r of AB colours."""
    return torch.stack([10 ** (-0.4 * g_r), torch.ones_like(g_r), 10 ** (0.4 * r_z)], dim=-1)


def _sersic_constants(r_e: torch.Tensor, n: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    """``{prefix}_b`` and ``{prefix}_total`` of Sersic profiles (the values ``sersic_unit_flux`` would compute from
    these tensors itself), as tensors of ``r_e``'s dtype and device."""
    as_t = lambda v: torch.as_tensor(np.asarray(v), dtype=r_e.dtype, device=r_e.device)   # noqa: E731
    return {f"{prefix}_b": as_t(sersic_b(n)), f"{prefix}_total": as_t(sersic_total(r_e, n))}


def _col(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape + (1,) * (like.dim() - 1))


class SourceFamily:
    """Base class: ``sb(bx, by, p)`` and ``source_flux(p)`` on tensors; ``sizes(params)`` on a table."""

    kind = "base"
    needs_psf = True
    needs_noise = True
    #: True when ``sb`` returns one (B, 1, H, W) profile of the r band whose colours are ``source_flux``
    achromatic = False

    def __init__(self, cfg: FamilyConfig):
        self.cfg = cfg
        self.name = cfg.name

    def n_stamps(self) -> int | None:
        return None

    def source_flux(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 3) unlensed g, r, z flux of the unit-r source (nanomaggies)."""
        return colour_ratios(p["g_r"], p["r_z"])

    def constants(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-source constants that SciPy computes on the host (Sersic b_n, total flux), as tensors like ``p``'s,
        for ``sb`` to read from ``p``: the engine adds them before its (possibly compiled) render step."""
        return {}

    def sb(self, bx: torch.Tensor, by: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 3, H, W) surface brightness (nanomaggies / arcsec^2) of the unit-r source; (B, 1, H, W) in r when
        :attr:`achromatic`."""
        raise NotImplementedError

    def sizes(self, params: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(half-light radius arcsec, concentration 5 log10(r80 / r20)) of each source, r band."""
        raise NotImplementedError


class Sersic(SourceFamily):
    kind = "sersic"

    achromatic = True

    def constants(self, p):
        return _sersic_constants(p["src_re"], p["src_n"], "src")

    def sb(self, bx, by, p):
        """(B, 1, H, W): one profile; the engine applies the colours after block-summing (3x less work)."""
        prof = sersic_unit_flux(bx - _col(p["beta_x"], bx), by - _col(p["beta_y"], by), p["src_re"], p["src_n"],
                                p["src_q"], p["src_phi"], b=p.get("src_b"), total=p.get("src_total"))
        return prof[:, None]

    def sizes(self, params):
        n = params["src_n"].to_numpy(float)
        bn = sersic_b(n)
        r = {f: (gammaincinv(2 * n, f) / bn) ** n for f in (0.2, 0.8)}
        return params["src_re"].to_numpy(float), 5 * np.log10(r[0.8] / r[0.2])


class Planted(Sersic):
    """Sersic light rendered without PSF convolution or noise: unrealistic on purpose."""

    kind = "planted"
    needs_psf = False
    needs_noise = False


class Clumpy(SourceFamily):
    kind = "clumpy"

    def _knots(self, p, like):
        k = int(p["n_knots"].max().item()) if len(p["n_knots"]) else 0
        w = torch.stack([p[f"knot{j}_w"] for j in range(MAX_KNOTS)], dim=-1)
        wsum = w.sum(dim=-1).clamp_min(1e-30)
        return k, w / wsum[:, None]

    def source_flux(self, p):
        kf = p["knot_fraction"][:, None]
        disc = colour_ratios(p["g_r"], p["r_z"])
        _, w = self._knots(p, None)
        kc = torch.stack([colour_ratios(p[f"knot{j}_g_r"], p[f"knot{j}_r_z"]) for j in range(MAX_KNOTS)], dim=1)
        knots = (w[..., None] * kc).sum(dim=1)
        has = (p["n_knots"] > 0)[:, None]
        return torch.where(has, (1 - kf) * disc + kf * knots, disc)

    def constants(self, p):
        return _sersic_constants(p["src_re"], torch.ones_like(p["src_re"]), "disc")

    def sb(self, bx, by, p):
        return self._sb(bx, by, p, slice(None))

    def _sb(self, bx, by, p, bands: slice):
        """``sb`` in ``bands`` only (B, len(bands), H, W): each band's arithmetic is the same as in all three, so
        the r band alone (``slice(1, 2)``, what :meth:`sizes` measures) is bit for bit ``sb``'s r band."""
        dx, dy = bx - _col(p["beta_x"], bx), by - _col(p["beta_y"], by)
        disc = sersic_unit_flux(dx, dy, p["src_re"], torch.ones_like(p["src_re"]), p["src_q"], p["src_phi"],
                                b=p.get("disc_b"), total=p.get("disc_total"))
        has = p["n_knots"] > 0
        kf = torch.where(has, p["knot_fraction"], torch.zeros_like(p["knot_fraction"]))
        out = disc[:, None] * ((1 - kf)[:, None] * colour_ratios(p["g_r"], p["r_z"])[:, bands])[..., None, None]
        k, w = self._knots(p, bx)
        for j in range(k):
            g = gaussian_unit_flux(dx - _col(p[f"knot{j}_x"], dx), dy - _col(p[f"knot{j}_y"], dy), p[f"knot{j}_sigma"])
            col = colour_ratios(p[f"knot{j}_g_r"], p[f"knot{j}_r_z"])[:, bands] * (kf * w[:, j])[:, None]
            out = out + g[:, None] * col[..., None, None]
        return out

    #: pixels across the grid each source's sizes are measured on: compact knots (0.03 arcsec) need about 0.02
    #: arcsec pixels for a concentration good to 0.05 (96 pixels gave errors of 0.1 and more)
    SIZE_GRID = 192
    #: sources measured at once (memory: 3 x SIZE_GRID^2 float64 per source, 0.9 MB); any batch gives the same
    #: numbers (tested). 32: the demo's 2,400 clumpy sources in 15.5 s against 19.6 s with 64 (2-core AMD EPYC)
    SIZE_BATCH = 32

    def sizes(self, params):
        re = params["src_re"].to_numpy(float)
        ext = 5 * re + np.max(np.abs(params[[f"knot{j}_{a}" for j in range(MAX_KNOTS) for a in "xy"]].to_numpy()), axis=1)
        n = self.SIZE_GRID
        g = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) / ((n - 1) / 2)
        rh, conc = np.empty(len(params)), np.empty(len(params))
        # batches of similar knot counts: a batch evaluates as many knots as its richest source has, and a knot
        # of zero weight adds +0.0 to a source's non-negative light, so each source's image is the same bit for
        # bit in any batch (tested) while fewer unused knots are evaluated
        order = np.argsort(params["n_knots"].to_numpy(), kind="stable")
        for lo in range(0, len(params), self.SIZE_BATCH):
            sl = order[lo:lo + self.SIZE_BATCH]
            half = torch.as_tensor(ext[sl], dtype=torch.float64)
            p = params_to_tensors(params.iloc[sl], torch.float64, torch.device("cpu"))
            img = self.size_images(p, g[None, :] * half[:, None]).numpy()
            rh[sl], conc[sl] = curve_of_growth(img, (2 * ext[sl] / (n - 1)))
        return rh, conc

    def size_images(self, p: dict[str, torch.Tensor], axis: torch.Tensor) -> torch.Tensor:
        """(B, n, n) r-band light of the unit-r sources of ``p`` at rest (source centre at the origin) on the square
        grids whose pixel centres sit at ``axis`` (B, n) arcsec along x (columns) and y (rows): :meth:`sb`'s r band
        (its Sersic disc by the same arithmetic), with each Gaussian knot evaluated as the outer product of its x
        and y factors, exp(a) exp(b) for exp(a + b): 2 passes over the grid per knot instead of 11, equal to
        ``sb`` to float64 rounding (tested)."""
        bx, by = axis[:, None, :].expand(-1, axis.shape[1], -1), axis[:, :, None].expand(-1, -1, axis.shape[1])
        disc = sersic_unit_flux(bx, by, p["src_re"], torch.ones_like(p["src_re"]), p["src_q"], p["src_phi"],
                                b=p.get("disc_b"), total=p.get("disc_total"))
        has = p["n_knots"] > 0
        kf = torch.where(has, p["knot_fraction"], torch.zeros_like(p["knot_fraction"]))
        out = disc * (1 - kf)[:, None, None]                      # the r band's colour ratio is 1
        k, w = self._knots(p, bx)
        for j in range(k):
            s2 = p[f"knot{j}_sigma"] ** 2
            ex = torch.exp(-0.5 * (axis - p[f"knot{j}_x"][:, None]) ** 2 / s2[:, None])        # (B, n) along x
            ey = torch.exp(-0.5 * (axis - p[f"knot{j}_y"][:, None]) ** 2 / s2[:, None])        # (B, n) along y
            amp = kf * w[:, j] / (2 * np.pi * s2)
            out.add_((ey * amp[:, None])[:, :, None] * ex[:, None, :])
        return out


class Stamps(SourceFamily):
    kind = "stamps"

    def __init__(self, cfg: FamilyConfig, library=None):
        super().__init__(cfg)
        from lensaudit.sources.xdf import open_library

        self.library = library if library is not None else open_library(cfg.stamp_library)
        self._cache: dict[tuple, torch.Tensor] = {}

    def n_stamps(self) -> int:
        return len(self.library)

    def _lib(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = torch.as_tensor(self.library.unit_images, dtype=like.dtype, device=like.device)
        return self._cache[key]

    def source_flux(self, p):
        lib = torch.as_tensor(self.library.colour_ratios, dtype=p["beta_x"].dtype, device=p["beta_x"].device)
        return lib[p["stamp"].long()]

    def sb(self, bx, by, p):
        lib = self._lib(bx)[p["stamp"].long()]                          # (B, 3, S, S) unit-r flux per stamp pixel
        ps, size = self.library.pixscale, lib.shape[-1]
        dx, dy = bx - _col(p["beta_x"], bx), by - _col(p["beta_y"], by)
        c, s = torch.cos(_col(p["src_phi"], dx)), torch.sin(_col(p["src_phi"], dx))
        xr, yr = c * dx + s * dy, -s * dx + c * dy
        xr = torch.where(_col(p["stamp_flip"], xr) > 0.5, -xr, xr)
        half = ps * size / 2
        grid = torch.stack([xr / half, yr / half], dim=-1)              # x -> columns, y -> rows
        v = F.grid_sample(lib, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return v / (ps * ps)

    def sizes(self, params):
        i = params["stamp"].to_numpy(int)
        return self.library.r_half[i], self.library.concentration[i]


FAMILIES = {"sersic": Sersic, "clumpy": Clumpy, "stamps": Stamps, "planted": Planted}


def build_family(cfg: FamilyConfig, **kw) -> SourceFamily:
    """The family object of a :class:`FamilyConfig` (``library=`` may pass an open stamp library)."""
    return FAMILIES[cfg.kind](cfg, **kw) if cfg.kind == "stamps" else FAMILIES[cfg.kind](cfg)


__all__ = ["FAMILIES", "SourceFamily", "build_family", "colour_ratios", "params_to_tensors"]

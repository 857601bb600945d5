"""The injection engine: lensed arcs rendered on tensors and added to host cutouts.

Per injection (batched over ``EngineConfig.chunk`` injections on the chosen device):

1. image-plane sub-pixel grid of the central ``render_box_pix`` pixels, ``oversample`` sub-pixels per side;
2. ray tracing through the SIE + external shear (:func:`lensaudit.lensing.mass.ray_trace`, the same function the mock ray-traces with) centred at the
   jittered lens centre (x0, y0);
3. the family's surface brightness at the traced positions times the sub-pixel area, block-summed to
   0.262 arcsec pixels (flux per pixel, nanomaggies);
4. scaled to the drawn brightness: the rendered lensed r flux to ``arc_mag_r_target`` (brightness
   "lensed") or the unlensed source to ``src_mag_r`` ("source"); AB magnitudes, zeropoint 22.5;
5. convolved per band with the host's PSF (Moffat or Gaussian of ``PSFSIZE_{G,R,Z}``), batched FFT;
6. added to the host cutout (nanomaggies), with the arc's own shot noise if configured (correlated like
   the host's pixels if configured), drawn on the CPU from a torch generator seeded by a hash of (seed,
   family, injection index), so an injection's pixels do not depend on the batch it is rendered in;
7. recorded: every parameter, lensed magnitude and magnification per band measured on the rendered
   flux, source size and concentration, arc S/N per band in the host's own pixel noise (robust sd of
   the stamp border), combined in quadrature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from lensaudit.inject.config import EngineConfig
from lensaudit.inject.families import SourceFamily, params_to_tensors
from lensaudit.inject.params import check_parameters
from lensaudit.inject.psf import convolve_spectrum, fft_length, psf_kernels
from lensaudit.lensing.mass import ray_trace, sie_branch
from lensaudit.survey.arcphot import edge_strips
from lensaudit.survey.constants import MAG_ZEROPOINT, PIXEL_SCALE_ARCSEC
from lensaudit.utils.alloc import keep_freed_memory
from lensaudit.utils.hashing import hash64
from lensaudit.utils.seeds import derive_seed, stream_id

BANDS = "grz"


def host_noise(hosts: np.ndarray, width: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(sigma, lag-1 correlation) per host and band from four edge strips ``width`` pixels wide (far from
    the centred host): robust sd (1.4826 MAD, on a checkerboard half of the strip pixels) and the mean
    correlation of horizontally and vertically adjacent strip pixels (clipped at 5 sigma)."""
    strips, _, med, sig = edge_strips(hosts, width)
    lim = 5 * sig[..., None, None]
    num = den = npair = 0.0
    for st in strips:
        d = np.clip(st - med[..., None], -lim, lim)
        num = num + (d[..., :, 1:] * d[..., :, :-1]).sum((-2, -1)) + (d[..., 1:, :] * d[..., :-1, :]).sum((-2, -1))
        npair = npair + d[..., :, 1:].shape[-2] * d[..., :, 1:].shape[-1] + d[..., 1:, :].shape[-2] * d.shape[-1]
        den = den + (d * d).sum((-2, -1)) / (d.shape[-2] * d.shape[-1])
    num, den = num / npair, den / len(strips)
    rho = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    return sig.astype(np.float64), rho.astype(np.float64)


def three_tap(rho: np.ndarray) -> np.ndarray:
    """a of the per-axis kernel [a, 1 - 2a, a] whose lag-1 autocorrelation is ``rho`` (clipped to [0, 0.6])."""
    r = np.clip(np.asarray(rho, float), 0.0, 0.6)
    qa, qb = 6 * r + 4, 4 * r + 2
    return (qb - np.sqrt(qb * qb - 4 * r * qa)) / (2 * qa)


def check_hosts(hosts: np.ndarray, psf_fwhm: np.ndarray, n: int) -> None:
    if hosts.ndim != 4 or hosts.shape[0] != n or hosts.shape[1] != 3 or hosts.shape[2] != hosts.shape[3]:
        raise ValueError(f"hosts: expected ({n}, 3, N, N) g,r,z cutouts, got shape {hosts.shape}")
    bad = ~np.isfinite(hosts).all(axis=(1, 2, 3))
    if bad.any():
        raise ValueError(f"hosts: cutout {int(np.flatnonzero(bad)[0])} holds NaN or infinite pixels")
    f = np.asarray(psf_fwhm, float)
    if f.shape != (n, 3):
        raise ValueError(f"psf_fwhm: expected ({n}, 3) arcsec, got shape {f.shape}")
    badp = ~(np.isfinite(f) & (f > 0)).all(axis=1)
    if badp.any():
        raise ValueError(f"psf_fwhm: host {int(np.flatnonzero(badp)[0])} has PSF FWHM {f[badp][0]} (must be > 0 arcsec)")


class InjectionEngine:
    """Renders a family's arcs and adds them to hosts; ``inject`` is the one entry point."""

    def __init__(self, family: SourceFamily, cfg: EngineConfig | None = None):
        self.family = family
        self.cfg = cfg or EngineConfig()
        if self.cfg.keep_freed_memory:
            keep_freed_memory()
        dev = self.cfg.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(dev)
        self.dtype = torch.float32 if self.cfg.dtype == "float32" else torch.float64
        L, s = self.cfg.render_box_pix, self.cfg.oversample
        sub = ((torch.arange(L * s, dtype=torch.float64) + 0.5) / s - 0.5 - (L - 1) / 2) * PIXEL_SCALE_ARCSEC
        yy, xx = torch.meshgrid(sub, sub, indexing="ij")                # rows = +y, columns = +x
        self._x = xx.to(self.dtype).to(self.device)
        self._y = yy.to(self.dtype).to(self.device)
        #: the function that renders: render_unit, or its torch.compile'd form (fused elementwise kernels)
        self._render = torch.compile(self.render_shape) if self.cfg.compile else self._render_eager

    # ------------------------------------------------------------------ rendering
    def render_shape(self, p: dict[str, torch.Tensor], branch: str | None = None) -> torch.Tensor:
        """(B, C, L, L) lensed flux per pixel (nanomaggies) of the unit-r source before the PSF: C = 3 bands, or C = 1
        (the r band) for an :attr:`~lensaudit.inject.families.SourceFamily.achromatic` family, whose colours
        :meth:`render_unit` applies. ``branch``: the batch's :func:`~lensaudit.lensing.mass.sie_branch` (found
        here when None); ``p`` may hold the family's :meth:`~lensaudit.inject.families.SourceFamily.constants`."""
        b = p["theta_e"].shape[0]
        x, y = self._x.expand(b, -1, -1), self._y.expand(b, -1, -1)
        bx, by = ray_trace(x, y, p["theta_e"], p["q_lens"], p["phi_lens"], p["gamma1"], p["gamma2"], p["x0"], p["y0"],
                           branch=branch)
        sb = self.family.sb(bx, by, p)                                   # nmgy / arcsec^2
        s = self.cfg.oversample
        return F.avg_pool2d(sb, s) * PIXEL_SCALE_ARCSEC**2 if s > 1 else sb * PIXEL_SCALE_ARCSEC**2   # block sum

    def render_unit(self, p: dict[str, torch.Tensor], branch: str | None = None) -> torch.Tensor:
        """(B, 3, L, L) lensed flux per pixel (nanomaggies) of the unit-r source in g, r, z, before the PSF."""
        flux = self.render_shape(p, branch)
        if self.family.achromatic:
            flux = flux * self.family.source_flux(p)[..., None, None]
        return flux

    def _render_eager(self, p: dict[str, torch.Tensor], branch: str | None = None) -> torch.Tensor:
        """:meth:`render_shape` over sub-batches of ``render_batch`` injections, with the temporaries in cache on a
        CPU: the same arcs to float32 rounding (the ray tracing and the light are elementwise, the block sum is per
        image, and ``branch``, the chunk's, gives each lens the formula it would get alone; how torch splits an
        elementwise operation over threads and vector lanes depends on the array's length, as with ``chunk``)."""
        b = p["theta_e"].shape[0]
        n = self.cfg.render_batch or (8 if self.device.type == "cpu" else b)
        if n >= b:
            return self.render_shape(p, branch)
        return torch.cat([self.render_shape({k: v[lo : lo + n] for k, v in p.items()}, branch) for lo in range(0, b, n)])

    def arcs(self, params: pd.DataFrame, psf_fwhm: np.ndarray) -> tuple[torch.Tensor, pd.DataFrame]:
        """(B, 3, M, M) final-pixel arcs in nanomaggies (M = box + kernel - 1, centred on the stamp centre)
        and the derived quantities (magnitudes, magnifications)."""
        arc, rec, _ = self._arcs(params, psf_fwhm)
        return arc, pd.DataFrame(rec, index=params.index)

    def _arcs(self, params: pd.DataFrame, psf_fwhm: np.ndarray) -> tuple[torch.Tensor, dict[str, np.ndarray],
                                                                          torch.Tensor | None]:
        """:meth:`arcs` (the table's columns as arrays) and, when convolved, the arcs' spectrum on an FFT grid at least M + 2 pixels wide (zero
        padded: :func:`spectral_snr` reads the arcs' autocorrelation at lags up to 2 from it)."""
        p = params_to_tensors(params, self.dtype, self.device)
        # what is read on the host (SciPy's constants, the SIE's branch) is found before the render step, so that
        # the compiled render is one graph and a GPU does not wait on it
        p.update(self.family.constants(p))
        shape = self._render(p, sie_branch(p["q_lens"]))                # (B, 1 or 3, L, L)
        src = self.family.source_flux(p)                                 # (B, 3) unlensed, unit r
        colour = src if self.family.achromatic else torch.ones_like(src)  # what the shape still lacks per band
        lensed_r = shape[:, 1 if shape.shape[1] == 3 else 0].sum(dim=(-2, -1)) * colour[:, 1]
        if "arc_mag_r_target" in p:
            scale = 10 ** (-0.4 * (p["arc_mag_r_target"] - MAG_ZEROPOINT)) / lensed_r.clamp_min(1e-30)
        else:
            scale = 10 ** (-0.4 * (p["src_mag_r"] - MAG_ZEROPOINT)) * torch.ones_like(lensed_r)
        weights = colour * scale[:, None]                                # (B, 3)
        k = self.cfg.psf_kernel_pix
        spec = None
        if self.family.needs_psf:
            ker = psf_kernels(torch.as_tensor(psf_fwhm, dtype=self.dtype, device=self.device), k,
                              self.cfg.psf_model, self.cfg.moffat_beta)
            m = shape.shape[-1] + k - 1
            arc, spec = convolve_spectrum(shape, ker, weights, fft_length(m + 2))
        else:
            arc = F.pad(shape * weights[..., None, None], ((k - 1) // 2,) * 4)
        flux = arc.sum(dim=(-2, -1)).double().cpu().numpy()              # (B, 3) rendered, after the PSF
        srcf = (src * scale[:, None]).double().cpu().numpy()
        rec = {"src_mag_r_rendered": MAG_ZEROPOINT - 2.5 * np.log10(srcf[:, 1])}
        for i, band in enumerate(BANDS):
            with np.errstate(divide="ignore"):
                rec[f"arc_mag_{band}"] = MAG_ZEROPOINT - 2.5 * np.log10(np.clip(flux[:, i], 1e-30, None))
            rec[f"mu_{band}"] = flux[:, i] / srcf[:, i]
        return arc, rec, spec

    def noise_keys(self, params: pd.DataFrame) -> np.ndarray:
        key = derive_seed(int(params["seed"].iat[0]) if len(params) else 0, "inject.noise", self.family.name)
        h = hash64(key & 0x7FFFFFFFFFFFFFFF, params["index"].to_numpy(np.int64), stream_id("noise"))
        return (h >> np.uint64(1)).astype(np.int64)      # a non-negative 63-bit seed per injection

    # ------------------------------------------------------------------ public
    def inject(self, hosts: np.ndarray, psf_fwhm: np.ndarray, params: pd.DataFrame,
               host_stats: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, pd.DataFrame]:
        """Add the arcs of ``params`` (one row per host) to ``hosts`` (B, 3, N, N nanomaggies); PSF FWHM
        (B, 3) arcsec in g, r, z. ``host_stats``: the hosts' (sigma, rho) of :func:`host_noise`, (B, 3) each,
        when already known (a host used many times). Returns the injected cutouts (float32) and the
        per-injection record."""
        hosts = np.asarray(hosts)
        n = len(params)
        check_hosts(hosts, psf_fwhm, n)
        check_parameters(params)
        out = np.array(hosts, dtype=np.float32)                 # the injected cutouts: the hosts' copy, arcs added
        recs = []
        for lo in range(0, n, self.cfg.chunk):
            sl = slice(lo, min(n, lo + self.cfg.chunk))
            stats = None if host_stats is None else (np.asarray(host_stats[0])[sl], np.asarray(host_stats[1])[sl])
            recs.append(self._chunk(out[sl], np.asarray(psf_fwhm, float)[sl], params.iloc[sl], stats))
        r_half, conc = self.family.sizes(params)             # every family sizes an empty table as empty arrays
        record = params.copy()
        for c in recs[0] if recs else ():
            record[c] = np.concatenate([r[c] for r in recs])
        record["src_r_half_arcsec"] = r_half
        record["src_concentration"] = conc
        record["planted"] = self.family.cfg.planted
        return out, record.reset_index(drop=True)

    def _chunk(self, stamps: np.ndarray, fwhm: np.ndarray, params: pd.DataFrame, stats=None) -> dict[str, np.ndarray]:
        """Adds the arcs of ``params`` to ``stamps`` (float32 host cutouts, in place; their noise statistics are
        measured first when ``stats`` is None); returns the chunk's record columns."""
        arc, rec, spec = self._arcs(params, fwhm)
        sig, rho = host_noise(stamps) if stats is None else stats
        a = arc.float().cpu().contiguous()                                               # (B, 3, M, M)
        if self.family.needs_noise and self.cfg.shot_noise:
            gain = torch.as_tensor(self.cfg.gain_e_per_nmgy, dtype=torch.float32)[None, :, None, None]
            z = torch.empty_like(a)
            gen = torch.Generator()
            for i, key in enumerate(self.noise_keys(params)):                         # each injection's own stream
                z[i].normal_(generator=gen.manual_seed(int(key)))
            if self.cfg.noise_correlation == "host":
                z = _correlate(z, torch.as_tensor(three_tap(rho), dtype=torch.float32))
            noisy = a.clamp_min(0).div_(gain).sqrt_().mul_(z).add_(a)                  # a + sqrt(a / gain) z
        else:
            noisy = a
        snr = (matched_filter_snr(a.numpy(), sig, rho) if spec is None
               else spectral_snr(spec, arc.shape[-1], sig, rho))                        # (B, 3)
        peak = a.amax(dim=(-2, -1)).double().numpy()
        rec.update({f"arc_snr_{band}": snr[:, i] for i, band in enumerate(BANDS)},
                   arc_snr=np.sqrt((snr * snr).sum(axis=1)),
                   arc_peak_snr=(peak / np.where(sig > 0, sig, np.inf)).max(axis=1),
                   **{f"host_sigma_{band}": sig[:, i] for i, band in enumerate(BANDS)},
                   **{f"host_rho_{band}": rho[:, i] for i, band in enumerate(BANDS)})
        paste(stamps, noisy.numpy(), (stamps.shape[-1] - 1) // 2)
        return rec


def correlate_like(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """White noise (B, 3, M, M) correlated per (injection, band) by the separable kernel [a, 1 - 2a, a] on
    each axis (edges reflected), renormalised to unit variance; ``z``'s dtype kept."""
    z = np.asarray(z)
    return _correlate(torch.from_numpy(np.ascontiguousarray(z)), torch.as_tensor(np.asarray(a, z.dtype))).numpy()


def _correlate(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """:func:`correlate_like` on tensors (``a`` of ``z``'s dtype, broadcast over its leading axes)."""
    a = a[..., None, None]
    c = 1 - 2 * a
    norm = torch.sqrt(c * c + 2 * a * a)
    for axis in (-1, -2):
        n = z.shape[axis]
        if n < 2:
            raise ValueError(f"correlate_like: noise images must be at least 2 pixels wide, got {tuple(z.shape)}")
        t = torch.empty_like(z)                                   # the two neighbours' sum, edges reflected
        t.narrow(axis, 1, n - 2).copy_(z.narrow(axis, 0, n - 2)).add_(z.narrow(axis, 2, n - 2))
        t.narrow(axis, 0, 1).copy_(z.narrow(axis, 1, 1)).mul_(2)              # an edge's outer neighbour is its inner
        t.narrow(axis, n - 1, 1).copy_(z.narrow(axis, n - 2, 1)).mul_(2)
        z = (c * z).add_(t.mul_(a)).div_(norm)
    return z


def noise_autocorrelation_1d(rho: np.ndarray) -> np.ndarray:
    """(..., 5) per-axis autocorrelation (lags -2..2, lag 0 = 1) of noise correlated by [a, 1 - 2a, a]."""
    a = three_tap(rho)
    lag0 = (1 - 2 * a) ** 2 + 2 * a * a
    return np.stack([a * a, 2 * a * (1 - 2 * a), lag0, 2 * a * (1 - 2 * a), a * a], axis=-1) / lag0[..., None]


def matched_filter_snr(arc: np.ndarray, sigma: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """S/N of arcs (B, 3, M, K) under their host's noise (pixel sd ``sigma``, lag-1 correlation ``rho``, both
    (B, 3)) with the arc's own matched filter: sum(a^2) / sqrt(a^T C a), C the separable noise covariance -
    the definition the mock's truth uses for its lenses, so the two can be compared."""
    ac = noise_autocorrelation_1d(rho).astype(arc.dtype)[..., None, None, :]  # (B, 3, 1, 1, 5)
    ca = arc
    for axis in (-1, -2):
        pad = [(0, 0)] * (arc.ndim - 1) + [(2, 2)] if axis == -1 else [(0, 0)] * (arc.ndim - 2) + [(2, 2), (0, 0)]
        p = np.pad(ca, pad)
        m = arc.shape[axis]
        taps = [p[..., :, j : j + m] if axis == -1 else p[..., j : j + m, :] for j in range(5)]
        ca = sum(ac[..., j] * taps[j] for j in range(5))
    aca = (arc * ca).sum(axis=(-2, -1))
    s2 = (arc * arc).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((sigma > 0) & (aca > 0), s2 / (sigma * np.sqrt(np.clip(aca, 1e-300, None))), 0.0).astype(float)


def spectral_snr(spec: torch.Tensor, m: int, sigma: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """:func:`matched_filter_snr` of (B, 3, M, M) arcs (``m`` = M) from their real-FFT spectrum ``spec`` on an N x N
    grid with N >= M + 2 (the arcs zero-padded): by Parseval, sum(a^2) = sum_k |A_k|^2 / N^2 and a^T C a =
    sum_k |A_k|^2 S_y(k_y) S_x(k_x) / N^2, S the DFT of the per-axis noise autocorrelation (lags -2..2, no
    wrap-around at N >= M + 2); the same quantity to rounding, without the two 5-tap filtering passes."""
    n = spec.shape[-2]
    if n < m + 2 or spec.shape[-1] != n // 2 + 1:
        raise ValueError(f"spectral_snr: an {tuple(spec.shape[-2:])} half spectrum does not hold {m}-pixel arcs "
                         "zero-padded by 2 (N >= M + 2 needed)")
    dev = spec.device
    ac = torch.as_tensor(noise_autocorrelation_1d(rho), dtype=torch.float64, device=dev)   # (B, 3, 5) lags -2..2
    k = torch.arange(n, dtype=torch.float64, device=dev) * (2 * np.pi / n)
    s = ac[..., 2:3] + 2 * ac[..., 3:4] * torch.cos(k) + 2 * ac[..., 4:5] * torch.cos(2 * k)    # (B, 3, N)
    w = torch.full((n // 2 + 1,), 2.0, dtype=torch.float64, device=dev)                   # rfft: the half spectrum
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    pw = spec.real.double() ** 2 + spec.imag.double() ** 2                                   # (B, 3, N, N // 2 + 1)
    s2 = (pw @ w).sum(dim=-1) / n**2
    rows = (pw * (s[..., : n // 2 + 1] * w)[..., None, :]).sum(dim=-1)                       # (B, 3, N) over k_x
    aca = (rows * s).sum(dim=-1) / n**2
    s2, aca = s2.cpu().numpy(), aca.cpu().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((sigma > 0) & (aca > 0), s2 / (sigma * np.sqrt(np.clip(aca, 1e-300, None))), 0.0).astype(float)


def paste(stamps: np.ndarray, arcs: np.ndarray, centre: int) -> None:
    """Add (B, 3, M, M) arcs centred on pixel ``centre`` of (B, 3, N, N) stamps, in place (clipped at the edges)."""
    n, m = stamps.shape[-1], arcs.shape[-1]
    lo = centre - (m - 1) // 2
    s0, s1 = max(lo, 0), min(lo + m, n)
    stamps[..., s0:s1, s0:s1] += arcs[..., s0 - lo : s1 - lo, s0 - lo : s1 - lo]


__all__ = ["InjectionEngine", "check_hosts", "correlate_like", "host_noise", "matched_filter_snr", "noise_autocorrelation_1d",
           "paste", "spectral_snr", "three_tap"]

"""Real-data check: mock cutouts against the real DR10 sample cutouts in shared/data.

Compares per-band empty-sky median and MAD (unscaled, nanomaggies), the empty-sky pixel
distribution (5th/95th percentiles), a PSF FWHM estimate of the brightest compact source, and
the density of neighbours (peaks above 5 sigma), and reports mock/real ratios. The pass rule of
the mock-survey issue: per-band sky MAD ratio within a factor 1.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lensaudit.errors import InputError
from lensaudit.mock.request import CutoutRequest
from lensaudit.survey.npz_cutout import read_npz_cutout

MAD_FACTOR = 1.5


def sky_stats(cube: np.ndarray) -> dict[str, np.ndarray]:
    """Per-band statistics of the sigma-clipped outer sky (r > 30 pixels) of a (3, N, N) cube."""
    n = cube.shape[1]
    yy, xx = np.mgrid[0:n, 0:n]
    outer = np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2) > 30
    med, mad, p5, p95, peaks = [], [], [], [], []
    for b in range(cube.shape[0]):
        v = cube[b][outer]
        v = v[np.isfinite(v)]
        m = np.median(v)
        d = np.median(np.abs(v - m))
        keep = np.abs(v - m) < 5 * 1.4826 * d  # drop neighbours from the sky sample
        v = v[keep]
        m = np.median(v)
        med.append(m)
        mad.append(np.median(np.abs(v - m)))
        p5.append(np.percentile(v, 5) - m)
        p95.append(np.percentile(v, 95) - m)
        peaks.append(float((cube[b] > m + 5 * 1.4826 * mad[-1]).mean()))
    return {"median": np.array(med), "mad": np.array(mad), "p5": np.array(p5), "p95": np.array(p95),
            "frac_above_5sigma": np.array(peaks)}


def _fwhm_pix(plane: np.ndarray) -> float:
    """Rough FWHM (pixels) of the central object: area above half maximum -> equivalent diameter."""
    c = plane.shape[0] // 2
    core = plane[c - 10 : c + 11, c - 10 : c + 11]
    bg = np.median(plane)
    peak = core.max() - bg
    area = float(((core - bg) > peak / 2).sum())
    return 2 * np.sqrt(area / np.pi)


def real_data_check(render, sources, sample_paths: list[Path], n_mock: int = 40, seed: int = 0) -> dict:
    """Compare mock cutouts centred on galaxies like the samples with the real cutouts, at matched depth.

    Each real cutout records its z-band exposure count (``meta_nobs_z``); its mock partners are
    drawn from the mock bricks whose mean z exposure count is nearest (depth scales with the
    exposure count), ``n_mock / n_real`` galaxies each. Ratios are the median over real cutouts
    of (median mock statistic of its partners) / (real statistic).
    """
    reals = [read_npz_cutout(p) for p in sample_paths]
    rng = np.random.default_rng(seed)
    like = sources[(sources["type"].isin(["SER", "DEV", "REX"])) & (sources["rmag"].between(18, 21))
                   & (sources["kind"] == "normal")]
    bricks = render.survey.bricks
    brick_nobs = bricks["nobs_mean_z"].to_numpy()
    per_real = max(1, n_mock // max(len(reals), 1))
    rs, groups, matched_nobs = [], [], []
    for cube, meta in reals:
        nobs = float(meta.get("nobs_z", np.nan))
        if np.isfinite(nobs):
            d = np.abs(brick_nobs[like["brick_idx"].to_numpy()] - nobs)
            pool = like[d <= d.min() + 1.0]  # the nearest-depth bricks (within one exposure)
        else:
            pool = like
        pick = pool.iloc[rng.choice(len(pool), min(per_real, len(pool)), replace=False)]
        mock = []
        for _, s in pick.iterrows():
            out = render(CutoutRequest(float(s.ra), float(s.dec), 101, 101, 0.262, "grz", "ls-dr10", False))
            if out is not None and np.all(out[0] != 0.0):
                mock.append(out[0])
        if not mock:
            continue
        rs.append(sky_stats(cube))
        groups.append([sky_stats(c) for c in mock])
        matched_nobs.append([nobs, float(np.median(brick_nobs[pick["brick_idx"].to_numpy()]))])
    if not rs:
        raise InputError("real-data check: no mock cutout could be rendered for any real sample")
    res: dict = {"n_real": len(rs), "n_mock": int(sum(len(g) for g in groups)), "bands": "grz",
                 "nobs_z_real_vs_mock": matched_nobs}
    for key in ("median", "mad", "p5", "p95", "frac_above_5sigma"):
        r = np.array([x[key] for x in rs])                                   # (n_real, 3)
        m = np.array([np.median([x[key] for x in g], axis=0) for g in groups])  # (n_real, 3)
        res[f"real_{key}"] = np.median(r, axis=0).tolist()
        res[f"mock_{key}"] = np.median(m, axis=0).tolist()
        if key != "median":
            with np.errstate(divide="ignore", invalid="ignore"):
                res[f"ratio_{key}"] = np.median(m / np.where(r == 0, np.nan, r), axis=0).tolist()
    res["real_fwhm_r_pix"] = float(np.median([_fwhm_pix(c[1]) for c, _ in reals]))
    res["mock_fwhm_r_pix"] = float(np.median([_fwhm_pix(c[1]) for c in _all_mock(render, like, rng, 10)]))
    res["ratio_fwhm_r"] = res["mock_fwhm_r_pix"] / res["real_fwhm_r_pix"]
    ratios = np.array(res["ratio_mad"])
    res["mad_within_factor"] = MAD_FACTOR
    res["passed"] = bool(np.all((ratios < MAD_FACTOR) & (ratios > 1 / MAD_FACTOR)))
    return res


def _all_mock(render, like, rng, n: int) -> list[np.ndarray]:
    pick = like.iloc[rng.choice(len(like), min(n, len(like)), replace=False)]
    outs = (render(CutoutRequest(float(s.ra), float(s.dec), 101, 101, 0.262, "grz", "ls-dr10", False))
            for _, s in pick.iterrows())
    return [o[0] for o in outs if o is not None]


def format_check(res: dict) -> str:
    lines = [f"real-data check: {res['n_mock']} mock vs {res['n_real']} real DR10 cutouts, matched in z exposure "
             f"count (ratios mock/real)"]
    for i, b in enumerate("grz"):
        lines.append(f"  {b}: sky MAD mock {res['mock_mad'][i]:.5f} real {res['real_mad'][i]:.5f} nmgy  "
                     f"ratio {res['ratio_mad'][i]:.2f}   p5/p95 ratios {res['ratio_p5'][i]:.2f}/{res['ratio_p95'][i]:.2f}"
                     f"   >5sigma pixel fraction ratio {res['ratio_frac_above_5sigma'][i]:.2f}")
    lines.append(f"  central-object FWHM (r): mock {res['mock_fwhm_r_pix']:.2f} real {res['real_fwhm_r_pix']:.2f} px "
                 f"ratio {res['ratio_fwhm_r']:.2f}")
    lines.append(f"  {'PASS' if res['passed'] else 'FAIL'}: sky MAD within a factor {res['mad_within_factor']}")
    return "\n".join(lines)

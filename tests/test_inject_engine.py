"""The injection engine: rendered arcs against lenstronomy, flux bookkeeping, PSFs, seeds, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from lenstronomy.Data.imaging_data import ImageData
from lenstronomy.Data.psf import PSF
from lenstronomy.ImSim.image_model import ImageModel
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel
from lenstronomy.Util.param_util import phi_q2_ellipticity
from scipy.special import gammaincinv

from lensaudit.inject import (
    EngineConfig,
    FamilyConfig,
    InjectionEngine,
    Priors,
    StampLibrary,
    StampLibraryError,
    build_family,
    draw_parameters,
    write_stamp_library,
)
from lensaudit.inject.engine import correlate_like, host_noise, three_tap
from lensaudit.inject.psf import fft_convolve, psf_kernels
from lensaudit.sources.library import curve_of_growth
from lensaudit.survey.constants import PIXEL_SCALE_ARCSEC as PS

SERSIC = FamilyConfig(name="sersic", kind="sersic")


def _hosts(n, seed=0, sigma=0.003, size=101):
    return np.random.default_rng(seed).normal(0, sigma, (n, 3, size, size)).astype(np.float32)


def _one(**kw) -> pd.DataFrame:
    base = {"index": 0, "family": "sersic", "seed": 1, "theta_e": 1.3, "q_lens": 0.7, "phi_lens": 0.4, "gamma1": 0.03,
            "gamma2": -0.02, "x0": 0.05, "y0": -0.03, "beta_frac": 0.2, "beta_x": 0.25, "beta_y": 0.1,
            "arc_mag_r_target": 21.0, "g_r": 1.0, "r_z": 0.8, "src_phi": 0.3, "src_re": 0.3, "src_q": 0.6, "src_n": 1.5}
    base.update(kw)
    return pd.DataFrame([base])


def _lenstronomy_image(p: dict, n_pix: int, supersampling: int) -> np.ndarray:
    """Unconvolved lensed Sersic of unit total source flux, flux per pixel, on the engine's box grid."""
    c = (n_pix - 1) / 2
    data = ImageData(image_data=np.zeros((n_pix, n_pix)), ra_at_xy_0=-c * PS, dec_at_xy_0=-c * PS,
                     transform_pix2angle=np.diag([PS, PS]))
    psf = PSF(psf_type="NONE")
    e1, e2 = phi_q2_ellipticity(p["phi_lens"], p["q_lens"])
    s1, s2 = phi_q2_ellipticity(p["src_phi"], p["src_q"])
    n, re = p["src_n"], p["src_re"]
    b = gammaincinv(2 * n, 0.5)
    from scipy.special import gamma
    amp = b ** (2 * n) / (2 * np.pi * n * gamma(2 * n) * re**2) * np.exp(-b)   # I(r_e) of a unit-flux profile
    model = ImageModel(data, psf, lens_model_class=LensModel(["SIE", "SHEAR"]),
                       source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                       kwargs_numerics={"supersampling_factor": supersampling})
    kl = [{"theta_E": p["theta_e"], "e1": e1, "e2": e2, "center_x": p["x0"], "center_y": p["y0"]},
          {"gamma1": p["gamma1"], "gamma2": p["gamma2"], "ra_0": p["x0"], "dec_0": p["y0"]}]
    ks = [{"amp": amp, "R_sersic": re, "n_sersic": n, "e1": s1, "e2": s2, "center_x": p["beta_x"],
           "center_y": p["beta_y"]}]
    return model.image(kwargs_lens=kl, kwargs_source=ks, unconvolved=True)


@pytest.mark.parametrize("n_sersic,q_lens", [(1.0, 0.7), (3.0, 1.0), (0.7, 0.45)])
def test_rendered_arc_equals_lenstronomy_pixel_by_pixel_and_in_total_flux(n_sersic, q_lens):
    row = _one(src_n=n_sersic, q_lens=q_lens)
    eng = InjectionEngine(build_family(SERSIC), EngineConfig(oversample=7, dtype="float64", render_box_pix=41))
    from lensaudit.inject.families import params_to_tensors

    ours = eng.render_unit(params_to_tensors(row, torch.float64, torch.device("cpu")))[0, 1].numpy()
    ref = _lenstronomy_image(row.iloc[0].to_dict(), 41, 7)
    assert ours.sum() == pytest.approx(ref.sum(), rel=0.01)
    assert np.abs(ours - ref).max() < 0.02 * ref.max()
    # the lensed flux of a unit source is its magnification: > 1 for these images
    assert ours.sum() > 2.0


def test_unlensed_unit_sources_render_to_unit_flux_in_every_family(tmp_path):
    lib = _library(tmp_path / "lib.fits")
    for cfg in (SERSIC, FamilyConfig(name="c", kind="clumpy"), FamilyConfig(name="s", kind="stamps",
                                                                             stamp_library=str(lib))):
        fam = build_family(cfg)
        p = draw_parameters(Priors(brightness="source"), cfg, 3, np.arange(6), n_stamps=fam.n_stamps())
        p["theta_e"] = 1e-6                    # no deflection: the source as it is
        p[["x0", "y0", "beta_x", "beta_y"]] = 0.0
        if "src_re" in p:                      # resolved by the sub-pixels (a cusp is a sampling question,
            p["src_re"], p["src_n"] = 0.3, 1.0  # tested against lenstronomy above), so this tests normalisation
        eng = InjectionEngine(fam, EngineConfig(oversample=5, dtype="float64", shot_noise=False))
        _, rec = eng.inject(np.zeros((6, 3, 101, 101), np.float32), np.full((6, 3), 1.1), p)
        # magnification 1 in every band means the rendered flux equals the source's stated flux
        for b in "grz":
            np.testing.assert_allclose(rec[f"mu_{b}"], 1.0, rtol=0.01, err_msg=f"{cfg.kind} band {b}")


def test_lensed_magnitude_is_the_target_and_the_psf_conserves_flux_per_band():
    p = draw_parameters(Priors(), SERSIC, 5, np.arange(8))
    eng = InjectionEngine(build_family(SERSIC), EngineConfig(shot_noise=False))
    hosts = np.zeros((8, 3, 101, 101), np.float32)
    fw = np.column_stack([np.full(8, 1.6), np.full(8, 1.3), np.full(8, 1.1)])
    img, rec = eng.inject(hosts, fw, p)
    np.testing.assert_allclose(rec["arc_mag_r"], p["arc_mag_r_target"], atol=2e-4)
    # colours of the arc are the drawn source colours (lensing is achromatic)
    np.testing.assert_allclose(rec["arc_mag_g"] - rec["arc_mag_r"], p["g_r"], atol=2e-3)
    np.testing.assert_allclose(rec["arc_mag_r"] - rec["arc_mag_z"], p["r_z"], atol=2e-3)
    # what lands in the stamp is the rendered flux (box + PSF kernel fit inside 101 pixels)
    np.testing.assert_allclose(22.5 - 2.5 * np.log10(img[:, 1].sum(axis=(1, 2))), rec["arc_mag_r"], atol=2e-3)
    assert (rec["mu_r"] > 1).all() and np.isfinite(rec["arc_snr"]).all()


@pytest.mark.parametrize("model", ["moffat", "gaussian"])
def test_psf_kernels_are_normalised_per_band_and_have_the_stated_fwhm(model):
    fw = torch.tensor([[1.5, 1.2, 0.9], [2.0, 1.0, 1.8]], dtype=torch.float64)
    k = psf_kernels(fw, 41, model)
    np.testing.assert_allclose(k.sum(dim=(-2, -1)).numpy(), 1.0, atol=1e-12)
    from scipy.ndimage import zoom
    for i in range(2):
        for b in range(3):
            z = zoom(k[i, b].numpy(), 8, order=1)
            fwhm = 2 * np.sqrt((z >= z.max() / 2).sum() / 64 / np.pi) * PS
            assert fwhm == pytest.approx(float(fw[i, b]), rel=0.06)
    assert not torch.allclose(k[0, 0], k[0, 1])


def test_round_moffat_kernel_equals_the_mock_surveys_moffat():
    from lensaudit.mock.psf import _moffat
    for fwhm_arcsec, beta in ((1.1, 3.5), (1.6, 2.5)):
        ours = psf_kernels(torch.tensor([[fwhm_arcsec] * 3], dtype=torch.float64), 25, "moffat", beta)[0, 1].numpy()
        theirs = _moffat(fwhm_arcsec / PS, beta, 0.0, 0.0, 25, oversample=3)
        np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_fft_convolution_is_a_linear_convolution():
    from scipy.signal import fftconvolve
    rng = np.random.default_rng(1)
    a, kk = rng.random((2, 3, 20, 20)), rng.random((2, 3, 5, 5))
    got = fft_convolve(torch.as_tensor(a), torch.as_tensor(kk)).numpy()
    for i in range(2):
        for b in range(3):
            np.testing.assert_allclose(got[i, b], fftconvolve(a[i, b], kk[i, b]), atol=1e-10)


def test_spherical_limit_is_continuous():
    eng = InjectionEngine(build_family(SERSIC), EngineConfig(shot_noise=False, dtype="float64"))
    hosts, fw = np.zeros((1, 3, 101, 101), np.float32), np.full((1, 3), 1.2)
    a, _ = eng.inject(hosts, fw, _one(q_lens=1.0, gamma1=0.0, gamma2=0.0))
    b, _ = eng.inject(hosts, fw, _one(q_lens=1 - 1e-5, gamma1=0.0, gamma2=0.0))
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-4 * a.max())


@pytest.mark.parametrize("kind", ["sersic", "clumpy", "planted"])
def test_injections_do_not_depend_on_batch_size_or_order(kind):
    cfg = FamilyConfig(name=kind, kind=kind)
    p = draw_parameters(Priors(), cfg, 11, np.arange(10))
    hosts, fw = _hosts(10), np.random.default_rng(2).uniform(0.9, 1.8, (10, 3))
    big, rec = InjectionEngine(build_family(cfg), EngineConfig(chunk=16)).inject(hosts, fw, p)
    rev = np.arange(10)[::-1]
    small, rec2 = InjectionEngine(build_family(cfg), EngineConfig(chunk=3)).inject(hosts[rev], fw[rev],
                                                                                   p.iloc[rev].reset_index(drop=True))
    # equal to float32 rounding of the batched FFTs (the noise is drawn per injection, identically)
    np.testing.assert_allclose(small[::-1], big, rtol=0, atol=1e-4 * np.abs(big - hosts).max())
    np.testing.assert_allclose(rec2["arc_mag_r"].to_numpy()[::-1], rec["arc_mag_r"], atol=1e-5)
    # draws: a subset drawn alone equals the same rows of a larger draw
    sub = draw_parameters(Priors(), cfg, 11, np.array([7, 2]))
    pd.testing.assert_frame_equal(sub, p.iloc[[7, 2]].reset_index(drop=True))
    assert not np.allclose(draw_parameters(Priors(), cfg, 12, np.arange(10))["theta_e"], p["theta_e"])


def test_draws_follow_the_stated_priors():
    p = draw_parameters(Priors(), SERSIC, 0, np.arange(20000))
    assert p["theta_e"].between(0.5, 3.0).all() and p["beta_frac"].between(0.1, 0.4).all()
    # area weighting: beta^2 is uniform, so the median of beta_frac is sqrt((0.1^2 + 0.4^2) / 2)
    assert np.median(p["beta_frac"]) == pytest.approx(np.sqrt((0.01 + 0.16) / 2), abs=0.005)
    assert p["g_r"].mean() == pytest.approx(1.15, abs=0.01) and p["g_r"].std() == pytest.approx(0.30, abs=0.01)
    assert p["r_z"].mean() == pytest.approx(0.85, abs=0.01) and p["r_z"].std() == pytest.approx(0.20, abs=0.01)
    np.testing.assert_allclose(np.hypot(p["beta_x"] - p["x0"], p["beta_y"] - p["y0"]), p["beta_frac"] * p["theta_e"],
                               rtol=1e-9)
    cell = draw_parameters(Priors(), SERSIC, 0, np.arange(100), bounds={"theta_e_arcsec": (1.0, 1.25),
                                                                        "arc_mag_r": (22.0, 22.5)})
    assert cell["theta_e"].between(1.0, 1.25).all() and cell["arc_mag_r_target"].between(22.0, 22.5).all()


def test_arc_shot_noise_has_the_poisson_variance_and_host_correlation():
    p = draw_parameters(Priors(), SERSIC, 4, np.arange(1))
    p["arc_mag_r_target"] = 15.0                                           # bright enough to measure its noise
    host = np.zeros((1, 3, 101, 101), np.float32)
    eng = InjectionEngine(build_family(SERSIC), EngineConfig(noise_correlation="none"))
    quiet = InjectionEngine(build_family(SERSIC), EngineConfig(shot_noise=False))
    noisy, _ = eng.inject(host, np.full((1, 3), 1.2), p)
    clean, _ = quiet.inject(host, np.full((1, 3), 1.2), p)
    r = (noisy - clean)[0, 1].astype(float)
    sel = clean[0, 1] > clean[0, 1].max() * 0.05
    z = r[sel] / np.sqrt(clean[0, 1][sel] / EngineConfig().gain_e_per_nmgy[1])
    assert z.std() == pytest.approx(1.0, abs=0.1)
    assert (r[clean[0, 1] == 0] == 0).all()


def test_host_noise_and_three_tap_recover_a_correlation():
    z = np.random.default_rng(0).normal(size=(2, 3, 101, 101))
    rho = np.array([[0.0, 0.2, 0.45], [0.1, 0.3, 0.5]])
    c = correlate_like(z, three_tap(rho))
    sig, got = host_noise(c)
    np.testing.assert_allclose(got, rho, atol=0.04)
    np.testing.assert_allclose(sig, 1.0, atol=0.05)


@pytest.mark.parametrize("bad,match", [({"theta_e": 0.0}, "theta_e"), ({"q_lens": 1.2}, "q_lens"),
                                       ({"arc_mag_r_target": np.nan}, "arc_mag_r_target"), ({"src_re": -1.0}, "src_re")])
def test_unphysical_parameters_are_refused_before_any_work(bad, match):
    eng = InjectionEngine(build_family(SERSIC))
    with pytest.raises(ValueError, match=match):
        eng.inject(_hosts(1), np.full((1, 3), 1.2), _one(**bad))


def test_bad_hosts_and_psfs_are_refused():
    eng = InjectionEngine(build_family(SERSIC))
    h = _hosts(2)
    h[1, 0, 5, 5] = np.nan
    p = pd.concat([_one(), _one(index=1)], ignore_index=True)
    with pytest.raises(ValueError, match="cutout 1 holds NaN"):
        eng.inject(h, np.full((2, 3), 1.2), p)
    with pytest.raises(ValueError, match="expected"):
        eng.inject(_hosts(2)[:, :2], np.full((2, 3), 1.2), p)
    with pytest.raises(ValueError, match="PSF FWHM"):
        eng.inject(_hosts(2), np.array([[1.2, 1.2, 1.2], [1.2, 0.0, 1.1]]), p)
    with pytest.raises(ValueError, match="theta_E"):
        draw_parameters(Priors(), SERSIC, 0, np.arange(3), bounds={"theta_e_arcsec": (0.0, 1.0)})
    with pytest.raises(ValueError):
        Priors(theta_e_arcsec=(0.0, 3.0))
    with pytest.raises(ValueError, match="stamp_library"):
        FamilyConfig(name="x", kind="stamps")


# ---------------------------------------------------------------- stamp libraries
def _library(path, n=4, size=64, pixscale=0.03):
    g = (np.arange(size) - (size - 1) / 2) * pixscale
    xx, yy = np.meshgrid(g, g)
    rng = np.random.default_rng(5)
    imgs, rows = [], []
    for i in range(n):
        re = rng.uniform(0.1, 0.25)
        prof = np.exp(-1.678 * np.hypot(xx - 0.1 * i * pixscale, yy) / re)
        flux = 10 ** (-0.4 * (np.array([23.6, 23.0, 22.4]) - 22.5))        # g - r 0.6, r - z 0.6
        img = flux[:, None, None] * prof[None] / prof.sum()
        imgs.append(img)
        rows.append({"ID": f"s{i}", "Z": 1.5, "MAG_G": 23.6, "MAG_R": 23.0, "MAG_Z": 22.4})
    return write_stamp_library(path, np.array(imgs), pixscale, pd.DataFrame(rows), zeropoint=27.0)


def test_stamp_library_round_trip_and_rendered_with_its_stated_flux_and_colours(tmp_path):
    path = _library(tmp_path / "lib.fits")
    lib = StampLibrary.read(path)
    assert len(lib) == 4 and lib.pixscale == pytest.approx(0.03)
    np.testing.assert_allclose(22.5 - 2.5 * np.log10(lib.images.sum(axis=(2, 3))[:, 1]), 23.0, atol=1e-5)
    cfg = FamilyConfig(name="st", kind="stamps", stamp_library=str(path))
    fam = build_family(cfg)
    p = draw_parameters(Priors(), cfg, 2, np.arange(5), n_stamps=len(lib))
    _, rec = InjectionEngine(fam, EngineConfig(shot_noise=False)).inject(np.zeros((5, 3, 101, 101), np.float32),
                                                                         np.full((5, 3), 1.2), p)
    np.testing.assert_allclose(rec["arc_mag_r"], p["arc_mag_r_target"], atol=2e-4)
    np.testing.assert_allclose(rec["arc_mag_g"] - rec["arc_mag_r"], 0.6, atol=5e-3)   # the stamp's own colours
    np.testing.assert_allclose(rec["arc_mag_r"] - rec["arc_mag_z"], 0.6, atol=5e-3)
    assert rec["src_r_half_arcsec"].between(0.08, 0.3).all()


def test_stamp_library_with_missing_metadata_is_refused(tmp_path):
    from astropy.io import fits
    path = _library(tmp_path / "lib.fits")
    with fits.open(path) as h:
        del h["STAMPS"].header["PIXSCALE"]
        h.writeto(tmp_path / "nopix.fits")
    with pytest.raises(StampLibraryError, match="PIXSCALE"):
        StampLibrary.read(tmp_path / "nopix.fits")
    lib = StampLibrary.read(path)
    with pytest.raises(StampLibraryError, match="MAG_Z"):
        write_stamp_library(tmp_path / "x.fits", lib.images, 0.03, lib.meta.drop(columns="MAG_Z"))
    bad = lib.meta.copy()
    bad.loc[1, "MAG_R"] = 21.0
    with pytest.raises(StampLibraryError, match="s1"):
        write_stamp_library(tmp_path / "y.fits", lib.images, 0.03, bad)
    with pytest.raises(StampLibraryError, match="not found"):
        StampLibrary.read(tmp_path / "nothing.fits")


def test_curve_of_growth_gives_the_same_numbers_on_any_number_of_threads():
    """The images are measured by threads: every worker count gives the numbers of one thread bit for bit,
    an image with no light gives NaN, and a flux-weighted hand computation of one image agrees."""
    rng = np.random.default_rng(5)
    g = (np.arange(61) - 30) * 0.05
    xx, yy = np.meshgrid(g, g)
    imgs = np.stack([np.exp(-np.hypot(xx - rng.normal(0, 0.2), yy - rng.normal(0, 0.2)) / rng.uniform(0.1, 0.5))
                     + rng.normal(0, 1e-3, xx.shape) for _ in range(9)])
    imgs[4] = 0.0
    pix = rng.uniform(0.01, 0.05, 9)
    one = curve_of_growth(imgs, pix, workers=1)
    assert np.isnan(one[0][4]) and np.isnan(one[1][4]) and np.isfinite(np.delete(one[0], 4)).all()
    for workers in (2, 3, 8):
        got = curve_of_growth(imgs, pix, workers=workers)
        np.testing.assert_array_equal(got[0], one[0])
        np.testing.assert_array_equal(got[1], one[1])
    # image 0 by hand: sort pixels by distance from the positive-light centroid, accumulate
    im = imgs[0]
    pos = np.clip(im, 0, None)
    yi, xi = np.mgrid[0:61, 0:61]
    cx, cy = (pos * xi).sum() / pos.sum(), (pos * yi).sum() / pos.sum()
    r = np.hypot(xi - cx, yi - cy).ravel()
    o = np.argsort(r)
    cum = np.maximum.accumulate(np.cumsum(im.ravel()[o]) / im.sum())
    assert one[0][0] == pytest.approx(np.interp(0.5, cum, r[o] * pix[0]), rel=1e-12)


def test_curve_of_growth_measures_an_exponential_profile():
    g = (np.arange(201) - 100) * 0.02
    xx, yy = np.meshgrid(g, g)
    img = np.exp(-1.6783 * np.hypot(xx, yy) / 0.5)[None]
    rh, c = curve_of_growth(img, 0.02)
    assert rh[0] == pytest.approx(0.5, rel=0.02)
    b = gammaincinv(2.0, 0.5)
    exact = 5 * np.log10(gammaincinv(2.0, 0.8) / gammaincinv(2.0, 0.2))
    assert c[0] == pytest.approx(exact, abs=0.05) and b > 0


def test_matched_filter_snr_is_the_optimal_snr_under_correlated_noise():
    from scipy.signal import fftconvolve

    from lensaudit.inject.engine import matched_filter_snr, noise_autocorrelation_1d
    rng = np.random.default_rng(3)
    arc = np.zeros((1, 3, 31, 31))
    arc[0, :, 10:20, 12:16] = rng.uniform(0.5, 1.0, (3, 10, 4))
    sigma, rho = np.array([[0.1, 0.2, 0.3]]), np.array([[0.0, 0.25, 0.45]])
    got = matched_filter_snr(arc, sigma, rho)[0]
    for b in range(3):
        ac1 = noise_autocorrelation_1d(rho[0, b])
        cov = np.outer(ac1, ac1) * sigma[0, b] ** 2
        a = arc[0, b]
        want = (a * a).sum() / np.sqrt((a * fftconvolve(a, cov, mode="same")).sum())
        assert got[b] == pytest.approx(want, rel=1e-9)
    # white noise: S/N = sqrt(sum a^2) / sigma
    assert got[0] == pytest.approx(np.sqrt((arc[0, 0] ** 2).sum()) / 0.1, rel=1e-9)
    # correlated noise of the same pixel sd lowers the S/N of an extended arc
    assert got[2] < np.sqrt((arc[0, 2] ** 2).sum()) / 0.3


@pytest.mark.parametrize("kind", ["sersic", "clumpy", "stamps", "planted"])
@pytest.mark.parametrize("brightness", ["lensed", "source"])
def test_each_family_draws_exactly_the_parameters_it_declares(kind, brightness):
    from lensaudit.inject.params import param_columns, parameter_table

    fam = FamilyConfig(name=kind, kind=kind, stamp_library="x.fits" if kind == "stamps" else None)
    pri = Priors(brightness=brightness, src_re_arcsec=(0.2, 0.5))
    p = draw_parameters(pri, fam, 3, np.arange(50), n_stamps=7)
    assert list(p.columns) == param_columns(kind, brightness)
    t = parameter_table(pri, fam)
    assert set(t["parameter"]) == {c for c in param_columns(kind, brightness) if c not in ("index", "family", "seed")
                                   and not c.startswith("knot") or c in ("knot_fraction",)} | (
        {f"knot{{j}}_{a}" for a in ("x", "y", "sigma", "w", "g_r", "r_z")} if kind == "clumpy" else set())
    if kind != "stamps":
        assert t.set_index("parameter").loc["src_re", "prior"] == "log-uniform in [0.2, 0.5]"
    assert t.set_index("parameter").loc["theta_e", "unit"] == "arcsec"


def test_parameters_outside_their_valid_range_are_refused_by_name():
    from lensaudit.inject.params import check_parameters

    p = draw_parameters(Priors(), SERSIC, 1, np.arange(4))
    check_parameters(p, "sersic")
    with pytest.raises(ValueError, match=r"injection 2: q_lens = 1.5 is outside its valid range \(0.0, 1.0\)"):
        check_parameters(p.assign(q_lens=[0.5, 0.6, 1.5, 0.7]), "sersic")
    with pytest.raises(ValueError, match=r"injection 0: src_n = 9.0"):
        check_parameters(p.assign(src_n=9.0), "sersic")
    with pytest.raises(ValueError, match=r"injection 1: theta_e = 0.0 is outside"):
        check_parameters(p.assign(theta_e=[1.0, 0.0, 1.0, 1.0]), "sersic")
    with pytest.raises(ValueError, match="missing column 'src_re'"):
        check_parameters(p.drop(columns="src_re"), "sersic")


def test_parameter_table_rows_give_range_prior_config_key_and_meaning():
    from lensaudit.inject.params import param_columns, parameter_table

    pri = Priors(theta_e_arcsec=(0.75, 2.5), g_r=(1.2, 0.3), r_z=(0.8, 0.25))
    t = parameter_table(pri, SERSIC)
    assert t.columns.tolist() == ["parameter", "unit", "valid", "prior", "config", "meaning"]
    r = t.set_index("parameter")
    assert r.loc["theta_e"].tolist() == ["arcsec", "(0, 10]", "uniform in [0.75, 2.5] (a grid cell narrows it)",
                                         "priors.theta_e_arcsec", "Einstein radius of the SIE"]
    assert r.loc["phi_lens", "valid"] == "[0, 3.14159]" and r.loc["phi_lens", "config"] == ""   # closed below
    assert r.loc["g_r", "prior"] == "normal, mean 1.2, sd 0.3" and r.loc["r_z", "prior"] == "normal, mean 0.8, sd 0.25"
    assert r.loc["src_n", "valid"] == "[0.2, 8]"
    # the default brightness is the lensed arc magnitude
    assert param_columns("sersic") == param_columns("sersic", "lensed") != param_columns("sersic", "source")
    assert "arc_mag_r_target" in param_columns("sersic") and "src_mag_r" not in param_columns("sersic")


@pytest.mark.parametrize("lo, hi", [(0, 5), (2, 5), (3, 3)])
def test_hashed_integers_are_uniform_over_the_inclusive_range(lo, hi):
    """Chi-square against the uniform distribution on lo..hi (20,000 draws): a range one too wide or too narrow,
    or an end value drawn twice as often, is rejected (p < 1e-6); the uniform case passes."""
    from scipy.stats import chisquare

    from lensaudit.inject.draws import Draw

    v = Draw(11, "fam", np.arange(20_000)).integers("stamp", lo, hi)
    assert v.dtype == np.int64 and v.min() == lo and v.max() == hi
    counts = np.bincount(v - lo, minlength=hi - lo + 1)
    assert len(counts) == hi - lo + 1
    if hi > lo:
        assert chisquare(counts).pvalue > 1e-6


def test_every_drawn_parameter_follows_its_stated_prior_with_non_default_priors():
    """Kolmogorov-Smirnov test of each column against the distribution parameter_table states, with priors
    unlike the defaults (so a swapped or dropped prior argument shows). 20,000 draws: a shift of 3 percent of a
    range, or a scale off by 5 percent, gives p < 1e-6; the test requires p > 1e-4 (deterministic: seeded)."""
    from scipy import stats

    n = 20_000
    pri = Priors(theta_e_arcsec=(0.7, 2.9), q_lens=(0.4, 0.9), shear_max=0.08, centre_jitter_arcsec=0.07,
                 beta_frac=(0.05, 0.6), arc_mag_r=(20.0, 23.0), g_r=(1.0, 0.2), r_z=(0.6, 0.15),
                 src_re_arcsec=(0.15, 0.7), src_n=(0.7, 3.5), src_q=(0.3, 0.95))
    fam = FamilyConfig(name="c", kind="clumpy", n_knots=(1, 4), knot_fraction=(0.25, 0.45),
                       knot_sigma_arcsec=(0.02, 0.09), knot_colour_offset=(-0.3, 0.1))
    sers = draw_parameters(pri, SERSIC, 9, np.arange(n))
    clumpy = draw_parameters(pri, fam, 9, np.arange(n))

    def ks(x, dist):
        assert stats.kstest(np.asarray(x, float), dist).pvalue > 1e-4

    U = stats.uniform
    for p in (sers, clumpy):
        ks(p["theta_e"], U(0.7, 2.2).cdf)
        ks(p["q_lens"], U(0.4, 0.5).cdf)
        ks(p["phi_lens"], U(0, np.pi).cdf)
        ks(p["src_phi"], U(0, np.pi).cdf)
        g = np.hypot(p["gamma1"], p["gamma2"])
        ks(g, U(0, 0.08).cdf)
        ks(np.mod(0.5 * np.arctan2(p["gamma2"], p["gamma1"]), np.pi), U(0, np.pi).cdf)
        ks(p["x0"], stats.norm(0, 0.07).cdf)
        ks(p["y0"], stats.norm(0, 0.07).cdf)
        ks(p["beta_frac"] ** 2, U(0.05**2, 0.6**2 - 0.05**2).cdf)
        ang = np.arctan2(p["beta_y"] - p["y0"], p["beta_x"] - p["x0"])
        ks(np.mod(ang, 2 * np.pi), U(0, 2 * np.pi).cdf)
        ks(p["arc_mag_r_target"], U(20.0, 3.0).cdf)
        ks(p["g_r"], stats.norm(1.0, 0.2).cdf)
        ks(p["r_z"], stats.norm(0.6, 0.15).cdf)
        ks(np.log(p["src_re"]), U(np.log(0.15), np.log(0.7 / 0.15)).cdf)
        ks(p["src_q"], U(0.3, 0.65).cdf)
        # independent streams: no two parameters drawn from one stream
        assert abs(np.corrcoef(p["theta_e"], p["q_lens"])[0, 1]) < 0.03
        assert abs(np.corrcoef(p["x0"], p["y0"])[0, 1]) < 0.03
    ks(sers["src_n"], U(0.7, 2.8).cdf)
    assert (clumpy["src_n"] == 1.0).all()
    k = clumpy["n_knots"].to_numpy()
    assert stats.chisquare(np.bincount(k - 1, minlength=4)).pvalue > 1e-4 and k.min() == 1 and k.max() == 4
    ks(clumpy["knot_fraction"], U(0.25, 0.2).cdf)
    for j in range(4):
        on = j < k
        ks(clumpy.loc[on, f"knot{j}_x"] / clumpy.loc[on, "src_re"], stats.norm(0, 1).cdf)
        ks(clumpy.loc[on, f"knot{j}_y"] / clumpy.loc[on, "src_re"], stats.norm(0, 1).cdf)
        ks(clumpy.loc[on, f"knot{j}_w"], stats.expon().cdf)
        assert (clumpy.loc[~on, [f"knot{j}_x", f"knot{j}_y", f"knot{j}_w"]].to_numpy() == 0).all()
        ks(clumpy[f"knot{j}_sigma"], U(0.02, 0.07).cdf)
        off = clumpy[f"knot{j}_g_r"] - clumpy["g_r"]
        ks(off, stats.norm(-0.3, 0.1).cdf)
        np.testing.assert_allclose(clumpy[f"knot{j}_r_z"] - clumpy["r_z"], 0.75 * off, atol=1e-12)
    src = draw_parameters(pri.model_copy(update={"brightness": "source", "src_mag_r": (22.0, 24.5)}), SERSIC, 9,
                          np.arange(n))
    ks(src["src_mag_r"], U(22.0, 2.5).cdf)
    st = draw_parameters(pri, FamilyConfig(name="s", kind="stamps", stamp_library="x.fits"), 9, np.arange(n),
                         n_stamps=5)
    assert stats.chisquare(np.bincount(st["stamp"], minlength=5)).pvalue > 1e-4 and st["stamp"].max() == 4
    assert stats.binomtest(int(st["stamp_flip"].sum()), n, 0.5).pvalue > 1e-4


def test_clumpy_surface_brightness_is_its_disc_and_knots_with_their_shares_offsets_and_colours():
    """The clumpy family, source by source, against the stated composition in NumPy: an exponential disc
    (circularised r_e, q, phi) at the source centre with (1 - f) of the r light, and Gaussian knots at their
    offsets from that centre sharing f by their normalised weights, each with its own colours; no knots: the
    disc alone. The total flux per band integrates to source_flux."""
    from lensaudit.inject.families import build_family, params_to_tensors
    from lensaudit.inject.params import MAX_KNOTS
    from lensaudit.lensing.light import gaussian_unit_flux, sersic_unit_flux

    fam = build_family(FamilyConfig(name="c", kind="clumpy", n_knots=(0, 3)))
    p = draw_parameters(Priors(), FamilyConfig(name="c", kind="clumpy", n_knots=(0, 3)), 3, np.arange(3))
    p["n_knots"] = [0, 1, 3]
    p["knot_fraction"] = [0.4, 0.3, 0.5]                   # a fraction without knots is ignored
    for j in range(MAX_KNOTS):                               # weights summing below 1; unused knots weigh 0
        p[f"knot{j}_w"] = np.where(j < p["n_knots"], 0.05 * (j + 1), 0.0)
    p["beta_x"], p["beta_y"] = [0.1, -0.2, 0.05], [0.3, 0.0, -0.1]
    g = np.linspace(-4.0, 4.0, 641)
    bx, by = np.meshgrid(g, g)
    t = params_to_tensors(p, torch.float64, torch.device("cpu"))
    sb = fam.sb(torch.as_tensor(np.broadcast_to(bx, (3,) + bx.shape).copy()),
                torch.as_tensor(np.broadcast_to(by, (3,) + by.shape).copy()), t).numpy()
    cw = lambda gr, rz: np.array([10 ** (-0.4 * gr), 1.0, 10 ** (0.4 * rz)])[:, None, None]  # noqa: E731
    for i, r in p.iterrows():
        dx, dy = bx - r["beta_x"], by - r["beta_y"]
        f = r["knot_fraction"] if r["n_knots"] > 0 else 0.0
        want = cw(r["g_r"], r["r_z"]) * sersic_unit_flux(dx, dy, r["src_re"], 1.0, r["src_q"], r["src_phi"]) * (1 - f)
        w = np.array([r[f"knot{j}_w"] for j in range(MAX_KNOTS)])
        for j in range(int(r["n_knots"])):
            want = want + cw(r[f"knot{j}_g_r"], r[f"knot{j}_r_z"]) * f * w[j] / w.sum() * gaussian_unit_flux(
                dx - r[f"knot{j}_x"], dy - r[f"knot{j}_y"], r[f"knot{j}_sigma"])
        np.testing.assert_allclose(sb[i], want, rtol=1e-9, atol=1e-12 * want.max(), err_msg=f"source {i}")
    flux = fam.source_flux(t).numpy()
    np.testing.assert_allclose(sb.sum(axis=(2, 3)) * (g[1] - g[0]) ** 2, flux, rtol=2e-3)
    assert flux[0] == pytest.approx(cw(p["g_r"][0], p["r_z"][0]).ravel())             # no knots: the disc's colours
    w1 = cw(p["knot0_g_r"][1], p["knot0_r_z"][1]).ravel()
    assert flux[1] == pytest.approx(0.7 * cw(p["g_r"][1], p["r_z"][1]).ravel() + 0.3 * w1)   # one knot
    # an empty batch renders nothing (no knot count to take a maximum of)
    empty = params_to_tensors(p.iloc[:0], torch.float64, torch.device("cpu"))
    assert fam.sb(torch.zeros((0, 4, 4), dtype=torch.float64), torch.zeros((0, 4, 4), dtype=torch.float64),
                  empty).shape == (0, 3, 4, 4)
    # one band at a time (what sizes measures, the r band) is that band of all three, bit for bit
    tx, ty = (torch.as_tensor(np.broadcast_to(v, (3,) + v.shape).copy()) for v in (bx, by))
    for k in range(3):
        assert torch.equal(fam._sb(tx, ty, t, slice(k, k + 1)), torch.as_tensor(sb[:, k:k + 1]))


def test_clumpy_sizes_match_photutils_aperture_photometry_of_a_finely_sampled_source():
    """Half-light radius and concentration 5 log10(r80 / r20) of each clumpy source, r band, about its flux
    centroid, against photutils circular apertures on a 4x finer, wider grid (independent of curve_of_growth):
    within 2 percent (r_half) and 0.05 (concentration)."""
    from photutils.aperture import CircularAperture, aperture_photometry
    from photutils.centroids import centroid_com

    from lensaudit.inject.families import build_family
    from lensaudit.inject.params import MAX_KNOTS
    from lensaudit.lensing.light import gaussian_unit_flux, sersic_unit_flux

    cfg = FamilyConfig(name="c", kind="clumpy", n_knots=(0, 4))
    p = draw_parameters(Priors(src_re_arcsec=(0.15, 0.4)), cfg, 8, np.arange(4))
    p["n_knots"] = [0, 2, 4, 3]
    p["knot_fraction"] = np.where(p["n_knots"] > 0, 0.4, 0.0)
    for j in range(MAX_KNOTS):
        on = j < p["n_knots"]
        p[f"knot{j}_x"] = np.where(on, p[f"knot{j}_x"], 0.0)
        p[f"knot{j}_y"] = np.where(on, p[f"knot{j}_y"], 0.0)
        p[f"knot{j}_w"] = np.where(on, 0.3 + j, 0.0)
    fam = build_family(cfg)
    rh, conc = fam.sizes(p)
    fam.SIZE_BATCH = 3                                   # measured in batches: the same numbers
    np.testing.assert_array_equal(np.array(fam.sizes(p)), np.array([rh, conc]))
    for i, r in p.iterrows():
        ext = 8 * r["src_re"] + 2 * np.abs(r[[f"knot{j}_{a}" for j in range(MAX_KNOTS) for a in "xy"]]).max()
        g = np.linspace(-ext, ext, 801)
        pix = g[1] - g[0]
        x, y = np.meshgrid(g, g)
        f = r["knot_fraction"]
        img = sersic_unit_flux(x, y, r["src_re"], 1.0, r["src_q"], r["src_phi"]) * (1 - f)
        w = np.array([r[f"knot{j}_w"] for j in range(MAX_KNOTS)])
        for j in range(int(r["n_knots"])):
            img = img + f * w[j] / w.sum() * gaussian_unit_flux(x - r[f"knot{j}_x"], y - r[f"knot{j}_y"],
                                                                 r[f"knot{j}_sigma"])
        cen = centroid_com(img)
        radii = np.linspace(0.2, 0.95 * ext / pix, 400)
        ph = aperture_photometry(img, [CircularAperture(cen, rad) for rad in radii])
        cum = np.array([ph[f"aperture_sum_{k}"][0] for k in range(len(radii))]) / img.sum()
        r20, r50, r80 = np.interp([0.2, 0.5, 0.8], np.maximum.accumulate(cum), radii * pix)
        assert rh[i] == pytest.approx(r50, rel=0.02), i
        assert conc[i] == pytest.approx(5 * np.log10(r80 / r20), abs=0.05), i


def test_psf_kernel_defaults_and_refusals():
    """The default is the DR10 Moffat with beta = 3.5 (pixel-integrated astropy Moffat2D as the oracle); a
    zero, negative or non-finite FWHM and an even stamp size are refused, odd sizes of any kind are accepted."""
    from astropy.modeling.functional_models import Moffat2D
    fw = torch.tensor([[1.3, 1.1, 0.95]], dtype=torch.float64)
    k = psf_kernels(fw, 15)
    for b in range(3):
        alpha = float(fw[0, b]) / PS / (2 * np.sqrt(2 ** (1 / 3.5) - 1))
        s = (np.arange(15 * 9) + 0.5) / 9 - 0.5 - 7
        m = Moffat2D(1.0, 0.0, 0.0, alpha, 3.5)(*np.meshgrid(s, s)).reshape(15, 9, 15, 9).sum(axis=(1, 3))
        np.testing.assert_allclose(k[0, b].numpy(), m / m.sum(), atol=2e-4)
    np.testing.assert_array_equal(k.numpy(), psf_kernels(fw, 15, "moffat", 3.5).numpy())
    assert psf_kernels(fw, 9).shape == (1, 3, 9, 9)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="FWHM"):
            psf_kernels(torch.tensor([[1.0, bad, 1.0]]), 15)
    for size in (4, 10):
        with pytest.raises(ValueError, match="odd"):
            psf_kernels(fw, size)


def test_draw_bounds_and_the_validity_check_of_draws():
    """Bounds must be finite with lo <= hi (a degenerate cell fixes the value); the family name is recorded;
    a clumpy family without knots has no knot light; a prior that draws outside a parameter's valid range is
    refused before any work, for the common and the family-specific parameters."""
    cfg = FamilyConfig(name="my-sersic", kind="sersic")
    idx = np.arange(6)
    p = draw_parameters(Priors(), cfg, 3, idx, bounds={"theta_e_arcsec": (1.2, 1.2), "arc_mag_r": (np.full(6, 21.0),
                                                                                                  np.full(6, 22.0))})
    np.testing.assert_allclose(p["theta_e"], 1.2)
    assert (p["family"] == "my-sersic").all()
    for lo, hi in ((1.5, 1.0), (1.0, np.nan), (np.nan, 1.0), (1.0, np.inf)):
        with pytest.raises(ValueError, match="bounds for theta_e_arcsec"):
            draw_parameters(Priors(), cfg, 3, idx, bounds={"theta_e_arcsec": (lo, hi)})
    with pytest.raises(ValueError, match="arc_mag_r_target"):
        draw_parameters(Priors(), cfg, 3, idx, bounds={"arc_mag_r": (40.0, 41.0)})
    none = draw_parameters(Priors(), FamilyConfig(name="c", kind="clumpy", n_knots=(0, 0)), 3, idx)
    assert (none["n_knots"] == 0).all() and (none["knot_fraction"] == 0).all()
    with pytest.raises(ValueError, match="knot0_sigma"):
        draw_parameters(Priors(), FamilyConfig(name="c", kind="clumpy", knot_sigma_arcsec=(20.0, 30.0)), 3, idx)


def test_hashed_draws_do_not_depend_on_the_integer_type_of_the_index():
    from lensaudit.inject.draws import Draw
    want = Draw(5, "f", np.array([3, 200])).u("a")
    for index in (np.array([3, 200], np.uint8), np.array([3, 200], np.int32), [3.0, 200.0]):
        np.testing.assert_array_equal(Draw(5, "f", index).u("a"), want)


def test_clumpy_size_images_equal_the_sources_own_light_to_float64_rounding():
    """The sizes' images (each knot as the outer product of its x and y factors) against the family's ``sb`` r band
    on the same grid, the reference they replace: equal to float64 rounding (1e-12 of the peak), for sources with
    0 to 8 knots, elliptical discs and knots far off the centre; the measured sizes agree to 1e-12 with those of
    the reference images; a wrong knot factor (x for y) is caught."""
    from lensaudit.inject.families import params_to_tensors
    from lensaudit.inject.params import MAX_KNOTS

    cfg = FamilyConfig(name="c", kind="clumpy", n_knots=(0, 8))
    p = draw_parameters(Priors(src_re_arcsec=(0.05, 0.6)), cfg, 11, np.arange(24))
    p["n_knots"] = np.arange(24) % 9
    fam = build_family(cfg)
    t = params_to_tensors(p, torch.float64, torch.device("cpu"))
    t = {**t, "beta_x": torch.zeros_like(t["beta_x"]), "beta_y": torch.zeros_like(t["beta_y"])}
    g = (torch.arange(97, dtype=torch.float64) - 48) / 48
    half = torch.as_tensor(5 * p["src_re"].to_numpy() + np.abs(p[[f"knot{j}_{a}" for j in range(MAX_KNOTS)
                                                                  for a in "xy"]].to_numpy()).max(axis=1))
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    ref = fam._sb(xx[None] * half[:, None, None], yy[None] * half[:, None, None], t, slice(1, 2))[:, 0]
    got = fam.size_images(t, g[None, :] * half[:, None])
    peak = ref.flatten(1).max(dim=1).values[:, None, None]
    assert ref.shape == got.shape and float(((got - ref).abs() / peak).max()) < 1e-12
    pix = (2 * half / 96).numpy()
    for a, b in zip(curve_of_growth(got.numpy(), pix), curve_of_growth(ref.numpy(), pix), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # the check can fail: a knot's y factor evaluated at its x offset is far from the reference
    swapped = {**t, **{f"knot{j}_y": t[f"knot{j}_x"] for j in range(MAX_KNOTS)}}
    bad = fam.size_images(swapped, g[None, :] * half[:, None])
    assert float(((bad - ref).abs() / peak).max()) > 1e-3


def test_clumpy_sizes_of_a_round_exponential_disc_are_the_analytic_ones_wherever_it_sits():
    """A round exponential disc (no knot light) has r_half = r_e and concentration 5 log10(r80 / r20) from the
    incomplete gamma function; the measurement is centred on the source whatever its offset in the image plane,
    its grid follows each source's own extent (a far knot of one source does not coarsen another's), and one
    source per batch gives the same numbers. Within 0.5 percent (r_half) and 0.02 (concentration)."""
    from scipy.special import gammaincinv

    cfg = FamilyConfig(name="c", kind="clumpy", n_knots=(0, 0))
    p = draw_parameters(Priors(), cfg, 1, np.arange(3))
    p["src_q"], p["src_re"] = 1.0, [0.1, 0.3, 0.2]
    p["beta_x"], p["beta_y"] = [2.5, -1.8, 0.0], [-2.0, 1.0, 0.0]
    p["n_knots"], p["knot_fraction"] = [0, 0, 1], [0.0, 0.0, 1e-9]
    p["knot0_x"], p["knot0_w"] = [0.0, 0.0, 3.0], [0.0, 0.0, 1.0]
    fam = build_family(cfg)
    rh, conc = fam.sizes(p)
    np.testing.assert_allclose(rh[:2], [0.1, 0.3], rtol=0.005)
    np.testing.assert_allclose(conc[:2], 5 * np.log10(gammaincinv(2, 0.8) / gammaincinv(2, 0.2)), atol=0.02)
    fam.SIZE_BATCH = 1
    np.testing.assert_array_equal(np.array(fam.sizes(p)), np.array([rh, conc]))


def test_the_stamp_library_tensor_is_cached_per_dtype():
    from lensaudit.inject.families import Stamps

    class Lib:
        unit_images = np.ones((2, 3, 4, 4))
        colour_ratios = np.ones((2, 3))

        def __len__(self):
            return 2

    fam = Stamps(FamilyConfig(name="s", kind="stamps", stamp_library="unused"), library=Lib())
    assert fam._lib(torch.zeros(1, dtype=torch.float32)).dtype == torch.float32
    assert fam._lib(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64


def test_parameter_checks_name_a_missing_family_column_and_check_every_knot():
    """With a family kind, a missing column is named even when the table has a source magnitude; a knot column left
    out does not stop the checks of the other knots; an open-ended range (knot weights, 0 to infinity) still has
    its lower end."""
    from lensaudit.inject.params import check_parameters

    cfg = FamilyConfig(name="c", kind="clumpy")
    p = draw_parameters(Priors(), cfg, 2, np.arange(3))
    check_parameters(p, "clumpy")
    with pytest.raises(ValueError, match="missing column 'src_n'"):
        check_parameters(p.drop(columns="src_n").assign(src_mag_r=22.0), "sersic")
    bad = p.drop(columns="knot0_sigma").assign(knot3_sigma=-1.0)
    with pytest.raises(ValueError, match="knot3_sigma = -1"):
        check_parameters(bad, "clumpy")
    with pytest.raises(ValueError, match="knot2_w = -1"):
        check_parameters(p.assign(knot2_w=-1.0), "clumpy")


def test_stamp_sources_are_sampled_like_the_mocks_source_images():
    """The stamps family's surface brightness at source-plane positions equals the mock's bilinear SourceImage
    sampler (an independent implementation: scipy map_coordinates) for the same stamp placed at (beta_x, beta_y),
    turned by src_phi after the optional mirror image; asymmetric stamps so every sign and axis shows."""
    from lensaudit.inject.families import Stamps
    from lensaudit.sources.procedural import SourceImage

    size, ps = 24, 0.05
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    blob = lambda x0, y0, s: np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s * s))  # noqa: E731
    imgs = np.stack([np.stack([blob(-2, 1, 2.5) + 0.6 * blob(4, 3, 1.2)] * 3) * [[[0.8]], [[1.0]], [[1.3]]],
                     np.stack([blob(1, -3, 1.8) + 0.4 * blob(-4, 2, 1.0)] * 3) * [[[1.1]], [[1.0]], [[0.7]]]])

    class Lib:
        pixscale = ps
        unit_images = imgs / imgs[:, 1].sum(axis=(1, 2))[:, None, None, None]
        colour_ratios = imgs.sum(axis=(2, 3)) / imgs[:, 1:2].sum(axis=(2, 3))

        def __len__(self):
            return 2

    fam = Stamps(FamilyConfig(name="s", kind="stamps", stamp_library="unused"), library=Lib())
    p = pd.DataFrame({"stamp": [0, 1, 0, 1], "stamp_flip": [False, True, True, False], "src_phi": [0.3, 1.1, 2.5, 0.0],
                      "beta_x": [0.2, -0.3, 0.05, 0.4], "beta_y": [-0.1, 0.25, 0.3, -0.2]})
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.35, 0.35, (2, 4, 40))
    bx, by = pts[0] + p["beta_x"].to_numpy()[:, None], pts[1] + p["beta_y"].to_numpy()[:, None]
    t = {c: torch.as_tensor(p[c].to_numpy(float)) for c in p.columns}
    got = fam.sb(torch.as_tensor(bx)[:, None], torch.as_tensor(by)[:, None], t)[:, :, 0].numpy()   # (4, 3, 40)
    for i, r in p.iterrows():
        s = SourceImage(Lib.unit_images[r["stamp"]], ps, r["beta_x"], r["beta_y"], angle=r["src_phi"],
                        flip=bool(r["stamp_flip"]))
        np.testing.assert_allclose(got[i], s.sample(bx[i], by[i]), rtol=1e-9, atol=1e-9 * got.max(), err_msg=str(i))
    np.testing.assert_allclose(fam.source_flux(t).numpy(), Lib.colour_ratios[p["stamp"]], rtol=1e-12)
    assert fam.source_flux({k: v.float() for k, v in t.items()}).dtype == torch.float32


def test_correlated_noise_is_reflected_at_the_stamp_edges():
    """[a, 1 - 2a, a] per axis with reflected edges: interior pixels keep unit variance; an edge row's variance is
    ((1 - 2a)^2 + 4 a^2) / ((1 - 2a)^2 + 2 a^2) (its outer neighbour is its inner one), 1.18 for a = 0.2; 6000
    draws give each variance to 2 percent."""
    z = np.random.default_rng(3).normal(size=(6000, 1, 9, 9)).astype(np.float32)
    out = correlate_like(z, np.full((6000, 1), 0.2, np.float32))
    assert out.dtype == np.float32
    assert correlate_like(z[:2], np.full((2, 1), 0.2)).dtype == np.float32          # float64 weights: z's dtype kept
    a = 0.2
    edge = ((1 - 2 * a) ** 2 + 4 * a * a) / ((1 - 2 * a) ** 2 + 2 * a * a)
    assert out[:, 0, 4, 4].var() == pytest.approx(1.0, rel=0.06)
    assert out[:, 0, 0, 4].var() == pytest.approx(edge, rel=0.06) and out[:, 0, 4, 8].var() == pytest.approx(edge, rel=0.06)


def test_arc_shot_noise_is_keyed_by_seed_family_and_injection():
    """The arc's noise draw is a function of (seed, family, injection index): the same triple gives the same pixels,
    another seed or another family (of the same kind and parameters) other pixels, and its noise seeds are
    non-negative 63-bit integers."""
    p = draw_parameters(Priors(), SERSIC, 4, np.arange(2))
    p["arc_mag_r_target"] = 17.0
    host = np.zeros((2, 3, 101, 101), np.float32)
    fw = np.full((2, 3), 1.2)

    def noise(params, name="sersic"):
        eng = InjectionEngine(build_family(FamilyConfig(name=name, kind="sersic")), EngineConfig(noise_correlation="none"))
        quiet = InjectionEngine(build_family(FamilyConfig(name=name, kind="sersic")), EngineConfig(shot_noise=False))
        keys = eng.noise_keys(params)
        assert keys.dtype == np.int64 and (keys >= 0).all() and len(set(keys.tolist())) == len(keys)
        return eng.inject(host, fw, params)[0] - quiet.inject(host, fw, params)[0]

    base = noise(p)
    np.testing.assert_array_equal(noise(p.copy()), base)
    assert not np.allclose(noise(p.assign(seed=5)), base)
    assert not np.allclose(noise(p, "sersic-b"), base)
    assert not np.allclose(base[0], base[1])


def test_source_brightness_scales_the_unlensed_source_and_a_faint_box_still_hits_its_target():
    """Brightness "source": the unlensed source has the drawn r magnitude and the arc is brighter by the
    magnification; brightness "lensed" hits the target also when the box holds less than the unit source's flux;
    the Moffat beta of the configuration is the one used."""
    hosts, fw = np.zeros((3, 3, 101, 101), np.float32), np.full((3, 3), 1.1)
    p = draw_parameters(Priors(brightness="source"), SERSIC, 3, np.arange(3))
    _, rec = InjectionEngine(build_family(SERSIC), EngineConfig(shot_noise=False, dtype="float64")).inject(hosts, fw, p)
    np.testing.assert_allclose(rec["src_mag_r_rendered"], p["src_mag_r"], atol=1e-6)
    np.testing.assert_allclose(rec["arc_mag_r"], p["src_mag_r"] - 2.5 * np.log10(rec["mu_r"]), atol=1e-4)
    wide = _one(src_re=2.0, beta_x=3.0, beta_y=3.0)                     # a source far off the box
    eng = InjectionEngine(build_family(SERSIC), EngineConfig(shot_noise=False, dtype="float64", render_box_pix=21))
    from lensaudit.inject.families import params_to_tensors
    unit = eng.render_unit(params_to_tensors(wide, torch.float64, torch.device("cpu")))[:, 1].sum().item()
    assert unit < 0.5                                                     # the box holds under half the unit flux
    img, rec = eng.inject(hosts[:1], fw[:1], wide)
    assert rec["arc_mag_r"].iat[0] == pytest.approx(21.0, abs=2e-3)
    b35 = InjectionEngine(build_family(SERSIC), EngineConfig(shot_noise=False, dtype="float64")).inject(hosts[:1], fw[:1], _one())[0]
    b25 = InjectionEngine(build_family(SERSIC), EngineConfig(shot_noise=False, dtype="float64", moffat_beta=2.5)).inject(
        hosts[:1], fw[:1], _one())[0]
    assert np.abs(b35 - b25).max() > 1e-3 * b35.max()


# ---------------------------------------------------------------- pinned by hand (mutation testing, issue 32)
def _host_noise_by_hand(img: np.ndarray, w: int = 12) -> tuple[float, float]:
    """One band of one cutout, written out: the four edge strips, their checkerboard median and 1.4826 MAD, then the
    mean product of horizontally and vertically adjacent pixels over all strips divided by the mean of the strips'
    own mean square, every pixel clipped at 5 sigma about the median."""
    n = img.shape[-1]
    strips = [img[:w, :], img[n - w:, :], img[w:n - w, :w], img[w:n - w, n - w:]]
    pix = np.concatenate([s.ravel()[::2] for s in strips])
    med = np.median(pix)
    sig = 1.4826 * np.median(np.abs(pix - med))
    prods, msq = [], []
    for s in strips:
        d = np.clip(s - med, -5 * sig, 5 * sig)
        prods += [(d[:, 1:] * d[:, :-1]).ravel(), (d[1:, :] * d[:-1, :]).ravel()]
        msq.append(np.mean(d * d))
    return sig, np.concatenate(prods).mean() / np.mean(msq)


def test_host_noise_is_the_clipped_strip_correlation_written_out_by_hand():
    """sigma and rho of :func:`host_noise` against a by-hand computation on hosts with a sky offset, correlated noise
    and outliers at 5.5 and 20 sigma of both signs (the clip at 5 sigma matters); one cutout (3, N, N) and one image
    (N, N) give their rows of the batch; a constant host has rho 0 and no warning."""
    import warnings
    rng = np.random.default_rng(11)
    z = correlate_like(rng.normal(size=(2, 3, 61, 61)), three_tap(np.array([[0.1, 0.3, 0.5], [0.2, 0.0, 0.4]])))
    hosts = 0.01 * z + 0.5                                               # a sky offset: the median is subtracted
    hosts[0, 0, 3, 7] += 0.055
    hosts[0, 1, 58, 20] -= 0.055
    hosts[1, 2, 30, 2] += 0.2
    hosts[1, 0, 40, 59] -= 0.2
    hosts[1, 1, 30, 30] += 50.0                                          # the centre is not in any strip
    sig, rho = host_noise(hosts)
    for i in range(2):
        for b in range(3):
            s, r = _host_noise_by_hand(hosts[i, b])
            assert sig[i, b] == pytest.approx(s, rel=1e-9) and rho[i, b] == pytest.approx(r, rel=1e-9, abs=1e-12)
    s8, r8 = host_noise(hosts, 8)                                       # another strip width
    assert (s8[1, 1], r8[1, 1]) == pytest.approx(_host_noise_by_hand(hosts[1, 1], 8), rel=1e-9)
    assert not np.isclose(r8[1, 1], rho[1, 1], rtol=1e-6)
    s1, r1 = host_noise(hosts[1])
    np.testing.assert_allclose(s1, sig[1], rtol=1e-12)
    np.testing.assert_allclose(r1, rho[1], rtol=1e-12)
    s2, r2 = host_noise(hosts[0, 2])
    assert float(s2) == pytest.approx(sig[0, 2], rel=1e-12) and float(r2) == pytest.approx(rho[0, 2], rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sc, rc = host_noise(np.full((1, 3, 61, 61), 0.25))
    np.testing.assert_array_equal(sc, 0.0)
    np.testing.assert_array_equal(rc, 0.0)


def test_noise_autocorrelation_is_the_kernels_own_and_three_tap_clips_rho():
    """The per-axis autocorrelation of noise correlated by k = [a, 1 - 2a, a] is correlate(k, k) / (k . k)
    (numpy's own correlation as the oracle); three_tap clips rho to [0, 0.6]."""
    from lensaudit.inject.engine import noise_autocorrelation_1d
    rho = np.array([0.05, 0.2, 0.35, 0.5, 0.6])
    got = noise_autocorrelation_1d(rho)
    for r, row in zip(rho, got, strict=True):
        a = three_tap(r)
        k = np.array([a, 1 - 2 * a, a])
        np.testing.assert_allclose(row, np.correlate(k, k, "full") / (k @ k), rtol=1e-12)
        assert row[1] == pytest.approx(r, rel=1e-9)                   # lag 1 is the rho it was built for
    assert three_tap(-0.3) == 0.0 and three_tap(0.0) == 0.0
    assert three_tap(0.9) == three_tap(0.6) > three_tap(0.5)
    np.testing.assert_allclose(noise_autocorrelation_1d(0.95)[1], 0.6, rtol=1e-9)


def test_matched_filter_snr_of_faint_rectangular_arcs_and_of_noiseless_bands():
    """S/N is linear in the arc's amplitude down to faint arcs (1e-4 nanomaggies per pixel), holds for a rectangular
    arc against the explicit covariance, and is 0 without a warning where the band's sigma is 0 or the arc is 0."""
    import warnings

    from scipy.signal import fftconvolve

    from lensaudit.inject.engine import matched_filter_snr, noise_autocorrelation_1d
    rng = np.random.default_rng(4)
    arc = np.zeros((1, 3, 19, 27))
    arc[0, :, 6:13, 5:20] = rng.uniform(0.5, 1.0, (3, 7, 15))
    sigma, rho = np.array([[0.1, 0.2, 0.3]]), np.array([[0.15, 0.3, 0.5]])
    got = matched_filter_snr(arc, sigma, rho)[0]
    for b in range(3):
        ac1 = noise_autocorrelation_1d(rho[0, b])
        a = arc[0, b]
        want = (a * a).sum() / np.sqrt((a * fftconvolve(a, np.outer(ac1, ac1) * sigma[0, b] ** 2, mode="same")).sum())
        assert got[b] == pytest.approx(want, rel=1e-9)
    np.testing.assert_allclose(matched_filter_snr(arc * 1e-4, sigma, rho)[0], got * 1e-4, rtol=1e-9)
    arc[0, 2] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = matched_filter_snr(arc, np.array([[0.0, 0.2, 0.0]]), rho)[0]
    assert out[0] == 0.0 and out[2] == 0.0 and out[1] == pytest.approx(got[1], rel=1e-9)


def test_check_hosts_refuses_each_bad_shape_and_psf_and_names_the_host():
    from lensaudit.inject.engine import check_hosts
    ok, fw = _hosts(3, size=21), np.full((3, 3), 1.2)
    check_hosts(ok, fw, 3)
    with pytest.raises(ValueError, match=r"hosts: expected \(3, 3, N, N\)"):
        check_hosts(np.zeros((3, 3, 21, 20), np.float32), fw, 3)              # not square
    with pytest.raises(ValueError, match=r"hosts: expected \(4, 3, N, N\)"):
        check_hosts(ok, np.full((4, 3), 1.2), 4)                              # 3 hosts for 4 injections
    with pytest.raises(ValueError, match="hosts: expected"):
        check_hosts(ok[0], fw, 3)
    for bad, host in ((-1.0, 2), (0.0, 1), (None, 2), (np.inf, 0)):
        f = fw.tolist()
        f[host][1] = bad
        with pytest.raises(ValueError, match=rf"psf_fwhm: host {host} has PSF FWHM"):
            check_hosts(ok, f, 3)
    with pytest.raises(ValueError, match=r"psf_fwhm: expected \(3, 3\) arcsec"):
        check_hosts(ok, fw[:, :2], 3)


def test_paste_adds_a_centred_arc_and_clips_it_at_the_edges():
    from lensaudit.inject.engine import paste
    arc = np.arange(1, 3 * 25 + 1, dtype=float).reshape(1, 3, 5, 5)
    for centre, n in ((4, 9), (2, 9), (1, 9), (7, 9), (5, 11)):
        got = np.zeros((1, 3, n, n))
        paste(got, arc, centre)
        want = np.zeros((1, 3, n + 8, n + 8))                            # a frame wide enough for any position
        want[..., centre + 2:centre + 7, centre + 2:centre + 7] = arc
        np.testing.assert_array_equal(got, want[..., 4:n + 4, 4:n + 4], err_msg=f"centre {centre}, n {n}")


def test_engine_device_dtype_and_its_sub_pixel_grid():
    """device 'auto' is the CPU here; dtype float32/float64 is the dtype of the arcs; construction warns of nothing;
    the float64 grid is exactly the sub-pixel centres ((i + 1/2)/s - 1/2 - (L - 1)/2) x 0.262 arcsec, so a float64
    render equals the family's surface brightness evaluated on a numpy grid, block-summed."""
    import warnings

    from lensaudit.inject.families import params_to_tensors
    from lensaudit.lensing.mass import ray_trace
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto = InjectionEngine(build_family(SERSIC), EngineConfig(device="auto"))
    if not torch.cuda.is_available():
        assert auto.device == torch.device("cpu")
    row = _one()
    for dt, tdt in (("float32", torch.float32), ("float64", torch.float64)):
        eng = InjectionEngine(build_family(SERSIC), EngineConfig(dtype=dt, render_box_pix=11, oversample=3))
        assert eng.device == torch.device("cpu") and eng.dtype == tdt
        arc, _ = eng.arcs(row, np.full((1, 3), 1.2))
        assert arc.dtype == tdt and eng.render_unit(params_to_tensors(row, tdt, eng.device)).dtype == tdt
    L = 11
    p = params_to_tensors(row, torch.float64, torch.device("cpu"))
    fam = build_family(SERSIC)
    for s in (2, 3):
        sub = ((np.arange(L * s) + 0.5) / s - 0.5 - (L - 1) / 2) * PS
        yy, xx = np.meshgrid(sub, sub, indexing="ij")
        bx, by = ray_trace(torch.as_tensor(xx)[None], torch.as_tensor(yy)[None], p["theta_e"], p["q_lens"],
                           p["phi_lens"], p["gamma1"], p["gamma2"], p["x0"], p["y0"])
        sb = fam.sb(bx, by, p).numpy()
        want = sb.reshape(1, 1, L, s, L, s).mean((3, 5)) * PS**2 * fam.source_flux(p).numpy()[..., None, None]
        eng = InjectionEngine(fam, EngineConfig(dtype="float64", render_box_pix=L, oversample=s))
        np.testing.assert_allclose(eng.render_unit(p).numpy(), want, rtol=1e-11, atol=1e-15, err_msg=f"oversample {s}")
    one = InjectionEngine(fam, EngineConfig(dtype="float64", render_box_pix=11, oversample=1))
    grid1 = (np.arange(L) - (L - 1) / 2) * PS
    y1, x1 = np.meshgrid(grid1, grid1, indexing="ij")
    b1x, b1y = ray_trace(torch.as_tensor(x1)[None], torch.as_tensor(y1)[None], p["theta_e"], p["q_lens"], p["phi_lens"],
                         p["gamma1"], p["gamma2"], p["x0"], p["y0"])
    want1 = fam.sb(b1x, b1y, p).numpy() * PS**2 * fam.source_flux(p).numpy()[..., None, None]
    np.testing.assert_allclose(one.render_unit(p).numpy(), want1, rtol=1e-11, atol=1e-15)


def _noise_by_hand(eng: InjectionEngine, hosts, fw, p) -> np.ndarray:
    """Hosts plus the documented arc: the clean arc of :meth:`arcs` plus sqrt(max(a, 0) / gain) times the standard
    normal stream seeded by each injection's noise key (correlated like the host if so configured), added centred
    on pixel (N - 1) / 2."""
    from lensaudit.inject.engine import paste
    arc = eng.arcs(p, fw)[0].float().numpy()
    m = arc.shape[-1]
    z = np.stack([torch.randn((3, m, m), generator=torch.Generator().manual_seed(int(k)), dtype=torch.float32).numpy()
                  for k in eng.noise_keys(p)])
    if eng.cfg.noise_correlation == "host":
        z = correlate_like(z, three_tap(host_noise(hosts)[1]).astype(np.float32))
    gain = np.asarray(eng.cfg.gain_e_per_nmgy, np.float32)[None, :, None, None]
    out = np.array(hosts, np.float32)
    paste(out, arc + np.sqrt(np.clip(arc, 0, None) / gain) * z, (hosts.shape[-1] - 1) // 2)
    return out


@pytest.mark.parametrize("corr", ["none", "host"])
def test_arc_noise_is_the_documented_stream_added_at_the_stamp_centre(corr):
    """Pixel for pixel: injected = host + arc + sqrt(arc / gain) z, z the keyed normal stream, correlated like the
    host (rho about 0.4 here) when configured; the arc lands centred on pixel 50 of a 101-pixel stamp."""
    rng = np.random.default_rng(8)
    hosts = (0.004 * correlate_like(rng.normal(size=(3, 3, 101, 101)), np.full((3, 3), 0.2))).astype(np.float32)
    p = draw_parameters(Priors(), SERSIC, 6, np.arange(3))
    p["arc_mag_r_target"] = 17.5
    eng = InjectionEngine(build_family(SERSIC), EngineConfig(noise_correlation=corr, chunk=2))
    got, _ = eng.inject(hosts, np.full((3, 3), 1.2), p)
    # atol: float32 round-off of a bright arc's sum (seen up to 3e-6 under another thread count), 0.25 % of the
    # host noise (0.004 nanomaggies); any change to the noise model moves pixels by a fraction of that noise
    np.testing.assert_allclose(got, _noise_by_hand(eng, hosts, np.full((3, 3), 1.2), p), rtol=1e-5, atol=1e-5)
    if corr == "host":
        assert (host_noise(hosts)[1] > 0.3).all()
        plain = InjectionEngine(build_family(SERSIC), EngineConfig(noise_correlation="none")).inject(
            hosts, np.full((3, 3), 1.2), p)[0]
        assert np.abs(plain - got).max() > 1e-3
    # a centred ring (lens and source on the axis, no shear) lands centred on the stamp's central pixel
    ring = _one(x0=0.0, y0=0.0, beta_x=0.0, beta_y=0.0, beta_frac=0.0, gamma1=0.0, gamma2=0.0, q_lens=1.0, src_q=1.0)
    quiet = InjectionEngine(build_family(SERSIC), EngineConfig(shot_noise=False))
    img = quiet.inject(np.zeros((1, 3, 101, 101), np.float32), np.full((1, 3), 1.2), ring)[0][0, 1].astype(float)
    yy, xx = np.mgrid[0:101, 0:101]
    assert (img * xx).sum() / img.sum() == pytest.approx(50.0, abs=1e-3)
    assert (img * yy).sum() / img.sum() == pytest.approx(50.0, abs=1e-3)


def test_the_injection_record_is_measured_on_the_arc_and_the_given_host_statistics():
    """Every derived column against its direct computation: S/N per band (matched filter under the host's sigma and
    rho) and combined in quadrature, the peak S/N over bands (a band of sigma 0 contributes nothing), host sigma and
    rho, planted flag; host statistics passed in are the ones used; no other columns; float32 cutouts out of float64
    hosts; the arcs' table is indexed like the parameters; zero injections give empty outputs."""
    from lensaudit.inject.engine import matched_filter_snr
    rng = np.random.default_rng(2)
    hosts = rng.normal(0, 0.004, (3, 3, 101, 101))
    hosts[2, 0] = 0.0                                                    # a band without noise
    fw = np.full((3, 3), 1.2)
    p = draw_parameters(Priors(), SERSIC, 9, np.arange(3))
    eng = InjectionEngine(build_family(SERSIC), EngineConfig(shot_noise=False, chunk=2))
    out, rec = eng.inject(hosts, fw, p)
    assert out.dtype == np.float32
    arc = eng.arcs(p, fw)[0].float().numpy()
    sig, rho = host_noise(hosts.astype(np.float32))
    snr = matched_filter_snr(arc, sig, rho)
    for i, b in enumerate("grz"):
        np.testing.assert_allclose(rec[f"arc_snr_{b}"], snr[:, i], rtol=1e-5)
        np.testing.assert_allclose(rec[f"host_sigma_{b}"], sig[:, i], rtol=1e-6)
        np.testing.assert_allclose(rec[f"host_rho_{b}"], rho[:, i], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(rec["arc_snr"], np.sqrt((snr**2).sum(1)), rtol=1e-5)
    peak = arc.max(axis=(2, 3)) / np.where(sig > 0, sig, np.inf)
    np.testing.assert_allclose(rec["arc_peak_snr"], peak.max(1), rtol=1e-5)
    assert rec["arc_snr_g"].iat[2] == 0.0 and rec["arc_peak_snr"].iat[2] == pytest.approx(peak[2, 1:].max(), rel=1e-5)
    assert (rec["planted"] == FamilyConfig(name="sersic", kind="sersic").planted).all()
    derived = {"src_mag_r_rendered", "src_r_half_arcsec", "src_concentration", "planted", "arc_snr", "arc_peak_snr"}
    derived |= {f"{c}_{b}" for c in ("arc_mag", "mu", "arc_snr", "host_sigma", "host_rho") for b in "grz"}
    assert set(rec.columns) == set(p.columns) | derived and list(rec.index) == [0, 1, 2]
    given = (np.full((3, 3), 0.01), np.full((3, 3), 0.25))
    _, rec2 = eng.inject(hosts, fw, p, host_stats=given)
    np.testing.assert_allclose(rec2[["host_sigma_g", "host_sigma_r", "host_sigma_z"]], 0.01)
    np.testing.assert_allclose(rec2[["host_rho_g", "host_rho_r", "host_rho_z"]], 0.25)
    np.testing.assert_allclose(rec2["arc_snr_r"], matched_filter_snr(arc, *given)[:, 1], rtol=1e-5)
    sub = p.iloc[1:3]
    assert list(eng.arcs(sub, fw[1:3])[1].index) == list(sub.index)
    out0, rec0 = eng.inject(hosts[:0], fw[:0], p.iloc[:0])
    assert out0.shape == (0, 3, 101, 101) and len(rec0) == 0
    assert {"src_r_half_arcsec", "src_concentration", "planted"} <= set(rec0.columns)


@pytest.mark.parametrize("kind", ["sersic", "planted"])
def test_arcs_are_box_plus_kernel_minus_one_pixels_and_centred(kind):
    """The arcs of :meth:`arcs` are (B, 3, L + k - 1, L + k - 1) with or without a PSF (the planted family is padded
    instead of convolved), their light centred on the middle pixel for a centred ring."""
    ring = _one(x0=0.0, y0=0.0, beta_x=0.0, beta_y=0.0, beta_frac=0.0, gamma1=0.0, gamma2=0.0, q_lens=1.0, src_q=1.0,
                family=kind)
    eng = InjectionEngine(build_family(FamilyConfig(name=kind, kind=kind)), EngineConfig(render_box_pix=21, psf_kernel_pix=9))
    arc = eng.arcs(ring, np.full((1, 3), 1.2))[0][0, 1].double().numpy()
    assert arc.shape == (29, 29)
    yy, xx = np.mgrid[0:29, 0:29]
    assert (arc * xx).sum() / arc.sum() == pytest.approx(14.0, abs=1e-4)
    assert (arc * yy).sum() / arc.sum() == pytest.approx(14.0, abs=1e-4)
    if kind == "planted":
        assert (arc[:4] == 0).all() and (arc[:, -4:] == 0).all() and arc[4:-4, 4:-4].sum() > 0


def test_sersic_sizes_are_the_profiles_own_radii_by_numerical_integration():
    """Half-light radius and concentration 5 log10(r80 / r20) of Sersic sources against the curve of growth of
    I(r) = exp(-b_n (r / r_e)^(1/n)) integrated numerically (scipy quad) and inverted (brentq)."""
    from scipy.integrate import quad
    from scipy.optimize import brentq

    from lensaudit.lensing.light import sersic_b
    p = pd.concat([_one(src_n=n, src_re=re, index=i) for i, (n, re) in enumerate([(0.6, 0.2), (1.0, 0.5), (2.5, 0.3),
                                                                                 (4.0, 1.1)])], ignore_index=True)
    r_half, conc = build_family(SERSIC).sizes(p)
    np.testing.assert_allclose(r_half, p["src_re"])
    for i, (n, re) in enumerate(zip(p["src_n"], p["src_re"], strict=True)):
        b = float(sersic_b(np.array(n)))

        def light(r, n=n, re=re, b=b):
            return quad(lambda x: np.exp(-b * (x / re) ** (1 / n)) * 2 * np.pi * x, 0, r, limit=200)[0]

        total = light(np.inf)
        rf = {f: brentq(lambda r, f=f, t=total: light(r) - f * t, 1e-6 * re, 100 * re, xtol=1e-12) for f in (0.2, 0.5, 0.8)}
        assert rf[0.5] == pytest.approx(re, rel=1e-5)
        assert conc[i] == pytest.approx(5 * np.log10(rf[0.8] / rf[0.2]), rel=1e-5)


def test_build_family_hands_an_open_library_to_stamps_only(tmp_path):
    """``library=`` is the stamps family's open library (used instead of the file its config names) and is ignored
    by families that draw no stamps."""
    from lensaudit.sources.xdf import open_library
    cfg = FamilyConfig(name="s", kind="stamps", stamp_library=str(_library(tmp_path / "a.fits", n=4)))
    other = open_library(_library(tmp_path / "b.fits", n=6))
    assert build_family(cfg).n_stamps() == 4
    fam = build_family(cfg, library=other)
    assert fam.library is other and fam.n_stamps() == 6
    assert type(build_family(SERSIC, library=other)).__name__ == "Sersic"


def test_valid_ranges_open_above_refuse_infinity_and_values_below():
    """A parameter valid on [0, inf) (knot weights, stamp rows) refuses -1, inf and NaN; a source-brightness table
    missing a profile column is refused by name; a bound on src_mag_r narrows the source-magnitude draw."""
    from lensaudit.inject.params import Param, check_parameters
    par = Param("w", "", (0.0, np.inf), "", None, "")
    np.testing.assert_array_equal(par.ok(np.array([-1.0, 0.0, 2.0, np.inf, np.nan])), [False, True, True, False, False])
    p = draw_parameters(Priors(brightness="source"), SERSIC, 1, np.arange(3))
    check_parameters(p, "sersic")
    with pytest.raises(ValueError, match="missing column 'src_n' of family kind 'sersic'"):
        check_parameters(p.drop(columns="src_n"), "sersic")
    q = draw_parameters(Priors(brightness="source"), SERSIC, 1, np.arange(50), bounds={"src_mag_r": (23.0, 23.2)})
    assert q["src_mag_r"].between(23.0, 23.2).all()


def test_an_arc_that_lands_outside_the_box_is_recorded_as_no_light_not_as_its_target():
    """A source so far off that no light reaches the rendered box (its Gaussian-like profile underflows): nothing is
    added to the host, and the record says so with finite numbers - a magnitude of 22.5 - 2.5 log10(1e-30) = 97.5 in
    every band and magnification 0 - instead of the target or an infinity."""
    far = _one(src_n=0.5, src_re=0.05, beta_x=9.0, beta_y=0.0, theta_e=0.5)
    eng = InjectionEngine(build_family(SERSIC), EngineConfig(shot_noise=False, render_box_pix=21))
    hosts = _hosts(1)
    img, rec = eng.inject(hosts, np.full((1, 3), 1.2), far)
    np.testing.assert_array_equal(img, hosts)
    for b in "grz":
        assert rec[f"arc_mag_{b}"].iat[0] == pytest.approx(97.5) and rec[f"mu_{b}"].iat[0] == 0.0
    assert np.isfinite(rec.select_dtypes("number").to_numpy()).all()


@pytest.mark.parametrize("kind", ["sersic", "clumpy", "stamps", "planted"])
def test_zero_injections_give_empty_cutouts_and_an_empty_record_in_every_family(kind, tmp_path):
    lib = str(_library(tmp_path / "lib.fits")) if kind == "stamps" else None
    cfg = FamilyConfig(name=kind, kind=kind, stamp_library=lib)
    fam = build_family(cfg)
    p = draw_parameters(Priors(), cfg, 1, np.arange(0), n_stamps=fam.n_stamps())
    out, rec = InjectionEngine(fam).inject(_hosts(0), np.zeros((0, 3)), p)
    assert out.shape == (0, 3, 101, 101) and out.dtype == np.float32 and len(rec) == 0
    assert {"src_r_half_arcsec", "src_concentration", "planted"} <= set(rec.columns)


def test_prior_intervals_may_be_points_and_are_checked_against_each_physical_limit_alone():
    from lensaudit.inject.config import Priors, _ordered

    assert _ordered("x", (2, 2), 0.0, 5.0) == (2.0, 2.0)                 # a point is an interval
    assert _ordered("x", (1, 2), None, 5.0) == (1.0, 2.0) and _ordered("x", (1, 2), 0.0, None) == (1.0, 2.0)
    assert _ordered("x", (-9, 9)) == (-9.0, 9.0)
    with pytest.raises(ValueError, match=r"x: \(-1.0, 2.0\) outside the physical range \[0.0, 5.0\]"):
        _ordered("x", (-1, 2), 0.0, 5.0)                                   # below only
    with pytest.raises(ValueError, match="outside the physical range"):
        _ordered("x", (1, 6), 0.0, 5.0)                                    # above only
    with pytest.raises(ValueError, match="x: lower bound 3.0 above upper bound 2.0"):
        _ordered("x", (3, 2))
    assert Priors(q_lens=(0.7, 0.7)).q_lens == (0.7, 0.7)


@pytest.mark.slow
# torch's tracer notes that it traces through array_api_compat's lru_cache'd type checks: what this test compares
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning")
def test_compiled_engine_gives_the_eager_injections():
    """``engine.compile``: the torch.compile'd ray tracing and source light give the eager path's injections and
    records to float32 round-off (a fast path, not another model): flux within 1e-4 of the arc's peak. The render
    step compiles whole: nothing in it reads a value on the host (the SIE's branch and the Sersic constants are
    found before it), so torch's tracer breaks no graph."""
    from torch._dynamo.utils import counters

    p = draw_parameters(Priors(), SERSIC, 10, np.arange(8))       # two chunks of one shape: a single compilation
    hosts, fwhm = _hosts(8, seed=3), np.full((8, 3), 1.3)
    eager, rec = InjectionEngine(build_family(SERSIC), EngineConfig(chunk=4)).inject(hosts, fwhm, p)
    counters.clear()
    fast, rec_fast = InjectionEngine(build_family(SERSIC), EngineConfig(chunk=4, compile=True)).inject(hosts, fwhm, p)
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"], dict(counters["graph_break"])
    arc = eager - hosts
    assert np.abs(arc).max() > 0.05
    np.testing.assert_allclose(fast, eager, rtol=0, atol=1e-4 * np.abs(arc).max())
    for col in ("arc_mag_r", "mu_r", "arc_snr"):
        np.testing.assert_allclose(rec_fast[col], rec[col], rtol=1e-4)
    assert not np.allclose(fast[:, :, 40:61, 40:61], hosts[:, :, 40:61, 40:61], atol=1e-3)


def test_the_engine_compiles_its_render_step_only_when_asked():
    """compile: false renders with the eager method itself; compile: true wraps it with torch.compile (compiled on
    the first call; its injections equal the eager ones to float32 round-off: the slow test above)."""
    eager = InjectionEngine(build_family(SERSIC), EngineConfig(chunk=4))
    assert eager._render == eager._render_eager
    fast = InjectionEngine(build_family(SERSIC), EngineConfig(chunk=4, compile=True))
    assert fast._render != fast.render_shape and fast._render.__wrapped__ == fast.render_shape   # torch.compile's wrapper


def test_families_hand_the_engine_the_sersic_constants_its_profiles_would_compute():
    """``constants``: b_n and the total flux of the Sersic body (the clumpy disc: n = 1), the values
    ``sersic_unit_flux`` computes itself; the profiles read them from the parameters (a wrong one changes them)."""
    from lensaudit.inject.families import params_to_tensors
    from lensaudit.lensing.light import sersic_b, sersic_total

    for fam_cfg, pre, n_col in ((SERSIC, "src", "src_n"), (FamilyConfig(name="c", kind="clumpy"), "disc", None)):
        fam = build_family(fam_cfg)
        p = params_to_tensors(draw_parameters(Priors(), fam_cfg, 4, np.arange(5)), torch.float32, torch.device("cpu"))
        n = p[n_col] if n_col else torch.ones_like(p["src_re"])
        c = fam.constants(p)
        assert set(c) == {f"{pre}_b", f"{pre}_total"} and all(v.dtype == torch.float32 for v in c.values())
        np.testing.assert_array_equal(c[f"{pre}_b"].numpy(), np.float32(sersic_b(n)))
        np.testing.assert_array_equal(c[f"{pre}_total"].numpy(), np.float32(sersic_total(p["src_re"], n)))
        g = torch.linspace(-1.5, 1.5, 21).repeat(5, 1, 1)
        bx, by = g, g.transpose(-1, -2)
        assert torch.equal(fam.sb(bx, by, {**p, **c}), fam.sb(bx, by, p))
        assert not torch.equal(fam.sb(bx, by, {**p, **c, f"{pre}_b": 1.1 * c[f"{pre}_b"]}), fam.sb(bx, by, p))
        twice = fam.sb(bx, by, {**p, **c, f"{pre}_total": 2 * c[f"{pre}_total"]})      # the total is read too
        assert not torch.allclose(twice, fam.sb(bx, by, p), rtol=1e-3)
    assert build_family(FamilyConfig(name="p", kind="planted")).constants(p) != {}       # planted is a Sersic


def test_the_eager_render_in_sub_batches_gives_the_same_arcs():
    """``render_batch``: ray tracing a chunk a few injections at a time (the CPU default, 8: its temporaries stay in
    cache) gives the same pixels and records to float32 rounding (as the chunk size: how torch splits an elementwise
    operation over threads and vector lanes depends on the array's length), whatever the sub-batch, for a chunk
    mixing spherical and elliptical lenses, for every family kind with light of its own."""
    for fam_cfg in (SERSIC, FamilyConfig(name="c", kind="clumpy")):
        p = draw_parameters(Priors(), fam_cfg, 5, np.arange(11))
        p.loc[p.index[[1, 6]], "q_lens"] = 1.0
        hosts, fwhm = _hosts(11, seed=4), np.full((11, 3), 1.2)
        ref, rec = InjectionEngine(build_family(fam_cfg), EngineConfig(chunk=11, render_batch=11)).inject(hosts, fwhm, p)
        peak = np.abs(ref - hosts).max()
        assert peak > 0.01
        for rb in (1, 3, None):
            got, rg = InjectionEngine(build_family(fam_cfg), EngineConfig(chunk=11, render_batch=rb)).inject(hosts, fwhm, p)
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * peak)
            pd.testing.assert_frame_equal(rg, rec, rtol=1e-5)
    eng = InjectionEngine(build_family(SERSIC), EngineConfig(chunk=11))
    calls = []
    real = eng.render_shape
    eng.render_shape = lambda q, branch=None: calls.append((len(q["theta_e"]), branch)) or real(q, branch)
    eng.inject(hosts, fwhm, draw_parameters(Priors(q_lens=(0.5, 0.9)), SERSIC, 5, np.arange(11)))
    assert calls == [(8, "elliptical"), (3, "elliptical")]        # the CPU default, one branch for the chunk
    with pytest.raises(ValueError, match="render_batch"):
        EngineConfig(render_batch=0)


def _plain_psf_kernels(fw: torch.Tensor, size: int, model: str, beta: float = 3.5) -> torch.Tensor:
    """The kernels' definition written out: the profile at every one of the (3 size)^2 sub-pixel centres, summed
    3 x 3 per pixel, normalised."""
    s = ((torch.arange(3 * size, dtype=fw.dtype) + 0.5) / 3 - 0.5 - (size - 1) / 2) * PS
    r2 = s[None, :] ** 2 + s[:, None] ** 2
    f = fw[..., None, None]
    if model == "moffat":
        k = (1 + r2 / (f / (2 * np.sqrt(2 ** (1 / beta) - 1))) ** 2) ** (-beta)
    else:
        k = torch.exp(-0.5 * r2 / (f / (2 * np.sqrt(2 * np.log(2)))) ** 2)
    k = k.reshape(*fw.shape, size, 3, size, 3).sum(dim=(-3, -1))
    return k / k.sum(dim=(-2, -1), keepdim=True)


@pytest.mark.parametrize("model", ["moffat", "gaussian"])
def test_psf_kernels_from_distinct_radii_equal_every_sub_pixel_evaluated(model):
    """The fast path (each distinct sub-pixel radius and pixel of the 8-fold symmetric stamp once) against the
    definition on every sub-pixel: to float64 rounding, and to a few float32 ulps of the peak in float32; every
    kernel is symmetric under the stamp's reflections and its transpose, as a round PSF's must be."""
    fw = torch.as_tensor(np.random.default_rng(5).uniform(0.6, 2.5, (4, 3)))
    for size in (1, 3, 9, 25):
        for dt, tol in ((torch.float64, 1e-14), (torch.float32, 2e-6)):
            got = psf_kernels(fw.to(dt), size, model, 2.5)
            want = _plain_psf_kernels(fw.to(dt), size, model, 2.5)
            assert got.dtype == dt and got.shape == (4, 3, size, size)
            np.testing.assert_allclose(got.double().numpy(), want.double().numpy(), rtol=0,
                                       atol=tol * float(want.max()))
        k = psf_kernels(fw, size, model).numpy()
        np.testing.assert_array_equal(k, k[..., ::-1, :])
        np.testing.assert_array_equal(k, k[..., :, ::-1])
        np.testing.assert_array_equal(k, np.swapaxes(k, -1, -2))


def test_fft_length_is_the_next_5_smooth_number():
    from lensaudit.inject.psf import fft_length
    smooth = [m for m in range(1, 200) if all(p in (2, 3, 5) for p in _prime_factors(m))]
    for n in range(1, 190):
        assert fft_length(n) == min(m for m in smooth if m >= n), n
    assert fft_length(77) == 80 and fft_length(75) == 75
    with pytest.raises(ValueError, match="n must be >= 1"):
        fft_length(0)


def _prime_factors(m: int) -> list[int]:
    out, d = [], 2
    while m > 1:
        while m % d == 0:
            out.append(d)
            m //= d
        d += 1
    return out


def test_convolve_spectrum_on_a_larger_grid_is_the_weighted_linear_convolution():
    """One image for all bands, scaled per band, on an FFT grid larger than the convolution: the same pixels as
    SciPy's convolution of the scaled image with each band's kernel, and the spectrum is the zero-padded
    convolution's; a grid smaller than the convolution is refused."""
    from scipy.signal import fftconvolve

    from lensaudit.inject.psf import convolve_spectrum
    rng = np.random.default_rng(2)
    img, ker, w = rng.random((2, 1, 20, 20)), rng.random((2, 3, 5, 5)), rng.uniform(0.5, 2.0, (2, 3))
    out, spec = convolve_spectrum(torch.as_tensor(img), torch.as_tensor(ker), torch.as_tensor(w), 30)
    assert out.shape == (2, 3, 24, 24) and spec.shape == (2, 3, 30, 16)
    for i in range(2):
        for b in range(3):
            want = fftconvolve(img[i, 0] * w[i, b], ker[i, b])
            np.testing.assert_allclose(out[i, b].numpy(), want, atol=1e-10)
            padded = np.zeros((30, 30))
            padded[:24, :24] = want
            np.testing.assert_allclose(spec[i, b].numpy(), np.fft.rfft2(padded), atol=1e-9)
    with pytest.raises(ValueError, match="smaller than the convolution"):
        convolve_spectrum(torch.as_tensor(img), torch.as_tensor(ker), n_fft=23)
    with pytest.raises(ValueError, match="smaller than the convolution"):        # too narrow on one axis only
        convolve_spectrum(torch.zeros(1, 1, 20, 26, dtype=torch.float64), torch.as_tensor(ker[:1]), n_fft=26)


def test_spectral_snr_is_the_matched_filter_snr():
    """S/N from the zero-padded spectrum (Parseval) against the 5-tap definition: faint and bright, white and
    correlated noise, a band of zero noise and an empty band (both 0), on the smallest grid allowed (M + 2) and
    a larger one; float32 spectra to float32 rounding; a grid without room for the lags is refused."""
    from lensaudit.inject.engine import matched_filter_snr, spectral_snr
    rng = np.random.default_rng(4)
    arc = np.zeros((3, 3, 31, 31))
    arc[:, :, 8:24, 10:20] = rng.uniform(0.0, 1.0, (3, 3, 16, 10)) ** 3
    arc[:, :, 0, :] += 0.01                                             # light on the edge row: the lags must not wrap
    arc[1] *= 1e-4
    arc[2, 2] = 0.0
    sigma = rng.uniform(0.01, 0.1, (3, 3))
    sigma[0, 1] = sigma[2, 2] = 0.0                                     # no noise: with light, and without
    rho = np.array([[0.0, 0.3, 0.5], [0.2, 0.45, 0.1], [0.6, 0.05, 0.35]])
    want = matched_filter_snr(arc, sigma, rho)
    assert want[0, 1] == 0.0 and want[2, 2] == 0.0 and (np.delete(want.ravel(), [1, 8]) > 0).all()
    for n in (33, 40):
        spec = torch.fft.rfft2(torch.as_tensor(arc), s=(n, n))
        with warnings.catch_warnings():
            warnings.simplefilter("error")                             # 0 / 0 and x / 0 are answered, not warned
            np.testing.assert_allclose(spectral_snr(spec, 31, sigma, rho), want, rtol=1e-10, atol=0)
            np.testing.assert_allclose(spectral_snr(spec.to(torch.complex64), 31, sigma, rho), want, rtol=2e-6,
                                       atol=0)
    with pytest.raises(ValueError, match="N >= M \\+ 2"):
        spectral_snr(torch.fft.rfft2(torch.as_tensor(arc), s=(32, 32)), 31, sigma, rho)


def test_correlated_noise_is_the_padded_three_tap_filter_written_out():
    """correlate_like against NumPy's reflect padding and the two 3-tap passes, to float64 rounding, any weights,
    down to images 2 pixels wide (each pixel the other's reflection); 1 pixel is refused."""
    rng = np.random.default_rng(6)
    for shape in ((2, 3, 12, 9), (2, 3, 2, 5), (2, 3, 4, 2)):
        z, a = rng.normal(size=shape), rng.uniform(0.0, 0.3, (2, 3))
        want = z.copy()
        aa = a[..., None, None]
        for axis in (-1, -2):
            p = np.pad(want, [(0, 0), (0, 0), (1, 1), (0, 0)] if axis == -2 else [(0, 0), (0, 0), (0, 0), (1, 1)],
                       mode="reflect")
            lo, hi = (p[..., :-2, :], p[..., 2:, :]) if axis == -2 else (p[..., :-2], p[..., 2:])
            want = ((1 - 2 * aa) * want + aa * (lo + hi)) / np.sqrt((1 - 2 * aa) ** 2 + 2 * aa * aa)
        np.testing.assert_allclose(correlate_like(z, a), want, rtol=1e-13, atol=1e-14)
    with pytest.raises(ValueError, match="at least 2 pixels"):
        correlate_like(z[..., :1], a)


def test_the_arcs_table_is_the_records_photometry():
    """``arcs``' table (indexed like the parameters) holds the rendered source magnitude, the lensed magnitude and
    magnification per band: the same numbers as ``inject``'s record of the same injections."""
    p = draw_parameters(Priors(), SERSIC, 12, np.arange(4)).set_index(pd.Index([7, 3, 9, 1]))
    eng = InjectionEngine(build_family(SERSIC), EngineConfig(shot_noise=False, chunk=3))
    fw = np.full((4, 3), 1.3)
    _, table = eng.arcs(p, fw)
    _, rec = eng.inject(_hosts(4), fw, p)
    cols = ["src_mag_r_rendered"] + [f"{c}_{b}" for c in ("arc_mag", "mu") for b in "grz"]
    assert sorted(table.columns) == sorted(cols) and list(table.index) == [7, 3, 9, 1]
    np.testing.assert_allclose(table[cols].to_numpy(), rec[cols].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(table["arc_mag_r"], p["arc_mag_r_target"], atol=2e-4)

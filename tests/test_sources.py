"""Source galaxies: the stamp-library format and its halves, the XDF library (measured stretch, cuts, provenance,
determinism), real-galaxy stamps through the injection engine against lenstronomy, and a mock universe whose true
lenses' sources are XDF galaxies."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.stats import sigma_clipped_stats

from lensaudit.sources import StampLibrary, StampLibraryError, library_half, split_spec, write_stamp_library
from lensaudit.sources import xdf as X
from lensaudit.survey.constants import MAG_ZEROPOINT


def _lib(n=40, size=32, pixscale=0.05, seed=0, **meta_over) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    imgs = np.empty((n, 3, size, size))
    for i in range(n):
        s = rng.uniform(1.5, 4.0)
        g = np.exp(-(xx**2 + yy**2 / rng.uniform(0.4, 1)) / (2 * s * s))
        imgs[i] = g[None] * np.array([0.7, 1.0, 1.2])[:, None, None] * 0.1 / g.sum()
    f = imgs.sum(axis=(2, 3))
    meta = pd.DataFrame({"ID": [f"s{i:03d}" for i in range(n)], "Z": 1.5,
                         **{f"MAG_{b}": MAG_ZEROPOINT - 2.5 * np.log10(f[:, j]) for j, b in enumerate("GRZ")}})
    for k, v in meta_over.items():
        meta[k] = v
    return imgs, meta


# ------------------------------------------------------------------ halves and the format
def test_halves_are_disjoint_deterministic_and_independent_of_order(tmp_path):
    ids = [f"xdf_{i:04d}" for i in range(2000)]
    h = library_half(ids)
    assert set(h) == {"A", "B"} and 0.45 < (h == "A").mean() < 0.55
    assert (library_half(ids[::-1])[::-1] == h).all() and (library_half(ids[:10]) == h[:10]).all()
    imgs, meta = _lib()
    write_stamp_library(tmp_path / "lib.fits", imgs, 0.05, meta)
    full = StampLibrary.read(tmp_path / "lib.fits")
    a, b = StampLibrary.open(f"{tmp_path / 'lib.fits'}:A"), StampLibrary.open(f"{tmp_path / 'lib.fits'}:B")
    assert set(a.meta["ID"]).isdisjoint(b.meta["ID"]) and len(a) + len(b) == len(full)
    assert (a.meta["HALF"] == "A").all() and (b.meta["HALF"] == "B").all()
    i = int(np.flatnonzero(full.meta["ID"] == a.meta["ID"].iat[0])[0])
    np.testing.assert_array_equal(a.images[0], full.images[i])
    assert split_spec("/x/y.fits:B") == ("/x/y.fits", "B") and split_spec("/x/y.fits") == ("/x/y.fits", None)
    assert split_spec("C:/win/lib.fits") == ("C:/win/lib.fits", None)


def test_ids_of_exactly_eight_characters_round_trip(tmp_path):
    """Eight characters is the size of an object pointer: astropy once took the id array for bytes."""
    imgs, meta = _lib(n=6)
    ids = [f"xdf_{k:04d}" for k in range(6)]
    write_stamp_library(tmp_path / "l.fits", imgs, 0.05, meta.assign(ID=ids))
    lib = StampLibrary.read(tmp_path / "l.fits")
    assert lib.meta["ID"].tolist() == ids and lib.meta["HALF"].tolist() == library_half(ids).tolist()


@pytest.mark.parametrize("edit,match", [
    (lambda i, m: (i, m.drop(columns="MAG_Z")), r"lacks column\(s\) \['MAG_Z'\]"),
    (lambda i, m: (np.where(np.arange(i.size).reshape(i.shape) == 5, np.nan, i), m), r"stamp 0 holds NaN"),
    (lambda i, m: (i + np.where(np.arange(i.shape[0])[:, None, None, None] == 3,
                                np.random.default_rng(1).normal(0, 1e-5, i.shape) - 5e-5, 0.0), m),
     r"stamp 's003' has a g-band border median .* an over-subtracted background"),
    (lambda i, m: (i, m.assign(ID=["dup"] * len(m))), r"duplicate stamp ids"),
    (lambda i, m: (i, m.assign(HALF="A")), r"is marked half 'A' but its id hashes to half 'B'"),
], ids=["missing metadata", "NaN pixels", "negative pixels beyond noise", "duplicate ids", "a wrong half"])
def test_bad_libraries_are_refused_naming_the_stamp(tmp_path, edit, match):
    imgs, meta = edit(*_lib())
    with pytest.raises(StampLibraryError, match=match):
        write_stamp_library(tmp_path / "bad.fits", imgs, 0.05, meta)
    assert not (tmp_path / "bad.fits").exists()


def test_a_half_is_the_library_of_its_stamps():
    """A half is sliced from its library, not validated again: every attribute equals a library built from the
    half's stamps alone."""
    imgs, meta = _lib(n=30)
    lib = StampLibrary(imgs, 0.05, meta)
    for name in ("A", "B"):
        half = lib.half(name)
        keep = np.flatnonzero(library_half(meta["ID"]) == name)
        fresh = StampLibrary(imgs[keep], 0.05, meta.iloc[keep], source=f"{lib.source}:{name}")
        assert half.source == fresh.source and half.pixscale == fresh.pixscale and len(half) == len(keep) > 0
        pd.testing.assert_frame_equal(half.meta, fresh.meta)
        for attr in ("images", "unit_images", "colour_ratios", "r_half", "concentration"):
            np.testing.assert_array_equal(getattr(half, attr), getattr(fresh, attr), err_msg=attr)


def test_the_vectorised_screen_passes_no_stamp_that_negative_excess_flags():
    """may_have_negative_excess is a superset of negative_excess's flags (the library only judges those one by one):
    stamps with holes, offset borders and masked borders at and around each threshold."""
    from lensaudit.sources.library import may_have_negative_excess, negative_excess

    rng = np.random.default_rng(5)
    stamps = []
    for k in range(600):
        v = rng.normal(0, 1.0, (3, 24, 24))
        v[:, 3:-3, 3:-3] += rng.uniform(0, 40)
        b = rng.integers(3)
        kind = k % 4
        if kind == 0:                                   # a hole near -10 sigma of a size near 5 percent of the light
            v[b, 10:10 + rng.integers(1, 5), 10:14] = -rng.uniform(8, 12)
        elif kind == 1:                                 # a border offset near 5 standard errors
            v[b] -= rng.uniform(0, 0.5)
        elif kind == 2:                                 # a masked (zero) border, a hole measured against the negatives
            v[b, :3], v[b, -3:], v[b, :, :3], v[b, :, -3:] = 0, 0, 0, 0
            v[b, 10:10 + rng.integers(1, 5), 10:14] = -rng.uniform(0, 60)
        stamps.append(v)
    stamps = np.array(stamps)
    flagged = np.array([negative_excess(v) is not None for v in stamps])
    screen = may_have_negative_excess(stamps)
    assert 30 < flagged.sum() < 570                    # both outcomes represented
    assert not (flagged & ~screen).any()
    masked = np.arange(len(stamps)) % 4 == 2           # zero borders: the noise from the negative pixels
    assert 0 < flagged[masked].sum() < masked.sum()
    assert (screen & ~flagged).sum() < 20              # and it screens: few extra stamps judged one by one


def test_a_wrong_pixel_scale_an_empty_half_and_a_missing_half(tmp_path):
    imgs, meta = _lib()
    with pytest.raises(StampLibraryError, match=r"PIXSCALE 2\.0 arcsec per pixel is outside"):
        write_stamp_library(tmp_path / "x.fits", imgs, 2.0, meta)
    one = meta[library_half(meta["ID"]) == "A"].head(3)
    write_stamp_library(tmp_path / "a.fits", imgs[one.index], 0.05, one.reset_index(drop=True))
    with pytest.raises(StampLibraryError, match=r"a\.fits:B: half B is empty|half B is empty"):
        StampLibrary.open(f"{tmp_path / 'a.fits'}:B")
    with pytest.raises(StampLibraryError, match="no half 'C'"):
        StampLibrary.read(tmp_path / "a.fits").half("C")
    from lensaudit.inject import FamilyConfig, build_family

    with pytest.raises(StampLibraryError, match="half B is empty"):   # before any rendering
        build_family(FamilyConfig(name="s", kind="stamps", stamp_library=f"{tmp_path / 'a.fits'}:B"))


# ------------------------------------------------------------------ the XDF library
@pytest.mark.slow
def test_the_xdf_library_has_hundreds_of_galaxies_in_both_halves_and_counts_every_cut(xdf):
    d, rep = xdf
    assert rep["n_stamps"] >= 300 and min(rep["halves"].values()) >= 150
    assert rep["n_detected"] == rep["n_stamps"] + sum(rep["rejected"].values())
    assert rep["provenance"]["sha256"] and rep["provenance"]["scikit_image"] and rep["provenance"]["photutils"]
    assert 1.0 < rep["gamma"] < 4.0 and rep["gamma_for_literature_range"][0] <= rep["gamma"]
    assert rep["pixscale_arcsec"] == pytest.approx(0.138)
    lib = StampLibrary.read(d / "xdf_stamps.fits")
    assert len(lib) == rep["n_stamps"] and np.allclose(lib.meta["MAG_R"], 25.0, atol=0.01)
    gr = lib.meta["MAG_G"] - lib.meta["MAG_R"]
    assert np.median(gr) == pytest.approx(0.45, abs=0.01) and gr.std() > 0.1   # the prior's zero point, own scatter


@pytest.mark.slow
def test_the_xdf_build_is_deterministic_and_its_provenance_is_checked(xdf, tmp_path):
    from lensaudit.sources import xdf as X
    from lensaudit.sources.xdf import XdfError, XdfSettings, build_xdf_library, check_provenance, copy_library

    d, rep = xdf
    X._gamma_calibration.cache_clear()              # the whole build again, its stretch calibration included
    again = build_xdf_library(tmp_path / "again")
    assert (tmp_path / "again" / "xdf_stamps.fits").read_bytes() == (d / "xdf_stamps.fits").read_bytes()
    assert again["gamma_calibration"] == rep["gamma_calibration"] and again["gamma"] == rep["gamma"]
    assert check_provenance(d)["n_stamps"] == rep["n_stamps"]
    # a copy instead of a build (validation matrices): the same file; a library of other settings is refused
    copied = copy_library(d, tmp_path / "copy")
    assert (tmp_path / "copy" / "xdf_stamps.fits").read_bytes() == (d / "xdf_stamps.fits").read_bytes()
    assert copied["gamma"] == rep["gamma"] and copied["copied_from"] == str(d)
    with pytest.raises(XdfError, match=r"other settings than asked for \(min_snr\)"):
        copy_library(d, tmp_path / "other", XdfSettings(min_snr=20.0))
    assert not (tmp_path / "other" / "xdf_stamps.fits").exists()
    shutil.copytree(d, tmp_path / "tampered")
    r = json.loads((tmp_path / "tampered" / "xdf_report.json").read_text())
    r["provenance"]["sha256"] = "0" * 64
    (tmp_path / "tampered" / "xdf_report.json").write_text(json.dumps(r))
    with pytest.raises(XdfError, match="built from an XDF image with SHA-256 0000"):
        check_provenance(tmp_path / "tampered")


def test_the_stretch_estimate_recovers_a_known_stretch(tmp_path):
    """On a synthetic 8-bit field of known stretch the calibrated estimate returns it (the calibration is built on
    other fields: another seed here)."""
    from lensaudit.sources.xdf import XdfSettings, calibrated_gamma, gamma_calibration, raw_gamma, synthetic_field

    s = XdfSettings()
    truth, est = gamma_calibration(s)
    assert (np.diff(est) >= 0).all() and est[-1] > est[0]
    est[0] = -1.0                                    # computed once per process: each call gets arrays of its own
    assert gamma_calibration(s)[1][0] != -1.0
    img = synthetic_field(2.5, seed=7).astype(float)
    raw, _ = raw_gamma(img - np.median(img), s)
    assert calibrated_gamma(raw, truth, est) == pytest.approx(2.5, abs=0.35)


# ------------------------------------------------------------------ real stamps through the engine
@pytest.mark.slow
def test_an_xdf_stamp_through_the_engine_conserves_flux_and_matches_lenstronomy_interpol(xdf):
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    from lensaudit.inject import EngineConfig, FamilyConfig, InjectionEngine, build_family
    from lensaudit.inject.families import params_to_tensors

    d, _ = xdf
    lib = StampLibrary.open(f"{d / 'xdf_stamps.fits'}:B")
    i = int(np.argsort(lib.r_half)[len(lib) * 3 // 4])           # a well-resolved galaxy
    fam = build_family(FamilyConfig(name="s", kind="stamps", stamp_library=f"{d / 'xdf_stamps.fits'}:B"))
    eng = InjectionEngine(fam, EngineConfig(oversample=7, dtype="float64", render_box_pix=61))
    base = {"index": 0, "family": "s", "seed": 0, "theta_e": 1.4, "q_lens": 0.8, "phi_lens": 0.4, "gamma1": 0.03,
            "gamma2": -0.02, "x0": 0.0, "y0": 0.0, "beta_frac": 0.2, "beta_x": 0.25, "beta_y": -0.1, "src_phi": 0.7,
            "stamp": i, "stamp_flip": False, "arc_mag_r_target": 21.0, "g_r": 0.5, "r_z": 0.3}
    row = pd.DataFrame([base])
    ours = eng.render_unit(params_to_tensors(row, torch.float64, torch.device("cpu")))[0, 1].numpy()
    # no lens: the unit source's flux
    flat = eng.render_unit(params_to_tensors(row.assign(theta_e=1e-6, gamma1=0.0, gamma2=0.0), torch.float64,
                                             torch.device("cpu")))[0, 1].numpy()
    assert flat.sum() == pytest.approx(1.0, rel=0.01)
    # lenstronomy: the same stamp as an INTERPOL source (surface brightness per arcsec^2) behind the same SIE + shear
    n, pix = 61, 0.262
    data = ImageData(image_data=np.zeros((n, n)), ra_at_xy_0=-(n - 1) / 2 * pix, dec_at_xy_0=-(n - 1) / 2 * pix,
                     transform_pix2angle=np.diag([pix, pix]))
    model = ImageModel(data, PSF(psf_type="NONE"), lens_model_class=LensModel(["SIE", "SHEAR"]),
                       source_model_class=LightModel(["INTERPOL"]), kwargs_numerics={"supersampling_factor": 7})
    e1, e2 = phi_q2_ellipticity(base["phi_lens"], base["q_lens"])
    unit_r = lib.unit_images[i, 1].astype(float)                 # r band, flux 1 over the stamp
    kl = [{"theta_E": base["theta_e"], "e1": e1, "e2": e2, "center_x": 0.0, "center_y": 0.0},
          {"gamma1": base["gamma1"], "gamma2": base["gamma2"], "ra_0": 0.0, "dec_0": 0.0}]
    ks = [{"image": unit_r / lib.pixscale**2, "amp": 1.0, "center_x": base["beta_x"], "center_y": base["beta_y"],
           "phi_G": base["src_phi"], "scale": lib.pixscale}]
    ref = model.image(kwargs_lens=kl, kwargs_source=ks, unconvolved=True)
    assert ours.sum() == pytest.approx(ref.sum(), rel=0.02)
    yy, xx = np.mgrid[0:n, 0:n]

    def moments(img):
        w = img / img.sum()
        mx, my = (w * xx).sum(), (w * yy).sum()
        return np.array([mx, my, (w * (xx - mx) ** 2).sum(), (w * (yy - my) ** 2).sum(), (w * (xx - mx) * (yy - my)).sum()])

    mo, mr = moments(ours), moments(ref)
    np.testing.assert_allclose(mo[:2], mr[:2], atol=0.05)                       # centroids, pixels
    np.testing.assert_allclose(mo[2:4], mr[2:4], rtol=0.02)                     # second moments
    assert abs(mo[4] - mr[4]) < 0.02 * np.sqrt(mr[2] * mr[3])


# ------------------------------------------------------------------ a universe of real-galaxy sources
@pytest.mark.slow
def test_a_mock_universe_with_xdf_sources_takes_half_a_and_follows_the_size_relation(xdf, tmp_path, reference):
    from lensaudit.mock.config import MockConfig
    from lensaudit.mock.render import load_renderer
    from lensaudit.mock.survey import build_survey

    d, _ = xdf
    cfg = MockConfig(area_deg2=1.0, seed=3, lenses={"sources": f"{d / 'xdf_stamps.fits'}:A"})
    build_survey(cfg, tmp_path / "m", reference)
    lenses = pd.read_parquet(tmp_path / "m" / "internal" / "lenses.parquet")
    lib = StampLibrary.read(d / "xdf_stamps.fits")
    half = dict(zip(lib.meta["ID"], lib.meta["HALF"], strict=True))
    assert len(lenses) > 20 and {half[i] for i in lenses["src_stamp_id"]} == {"A"}
    # sizes follow r_e = 0.15 x 10^(-0.4 x 0.27 (m - 24)) with 0.2 dex scatter
    x, y = lenses["src_rmag"].to_numpy(), np.log10(lenses["src_re_relation"].to_numpy())
    slope = np.polyfit(x, y, 1)[0]
    assert slope == pytest.approx(-0.4 * 0.27, abs=0.06)
    # the renderer lenses the stamp: the source image it uses is that stamp, at the drawn flux
    r = load_renderer(tmp_path / "m")
    lid = lenses["id"].iat[0]
    img = r.source_image(lid)
    row = lenses.iloc[0]
    assert img.flux[1] == pytest.approx(10 ** (-0.4 * (row["src_rmag"] - MAG_ZEROPOINT)), rel=1e-9)
    assert img.pixscale == pytest.approx(lib.pixscale * row["src_scale"])
    from test_mock_truth import _assert_same_sources  # the report's path: the same stamps, scaled alike

    _assert_same_sources(tmp_path / "m", r)
    t = pd.read_parquet(tmp_path / "m" / "truth" / "truth.parquet")
    assert t.loc[t["kind"] == "lens", "arc_mag_r"].notna().all()
    with pytest.raises(ValueError, match="names no half"):
        MockConfig(lenses={"sources": str(d / "xdf_stamps.fits")})


# ------------------------------------------------------------------ procedural sources: flux, colours, geometry
def _blue(**over) -> dict:
    """A blue rich source with every optional component off."""
    p = {"src_re": 0.3, "src_offset_max": 0.0, "src_q": 0.6, "src_phi": 0.4, "src_red": False, "src_n": 1.0,
         "src_gr": 0.45, "src_rz": 0.35, "src_texture": 0.0, "src_arms": False, "src_arm_phase": 0.0,
         "src_bar": False, "src_bar_angle": 0.0, "src_bulge_frac": 0.0, "src_n_components": 0, "src_n_knots": 0,
         "src_knot_frac": 0.0, "src_dust_tau": 0.0, "src_gradient": 0.0, "src_rmag": 23.0, "src_x": 0.1,
         "src_y": -0.2}
    return p | over


def _flux(mag: float) -> float:
    return 10 ** (-0.4 * (mag - MAG_ZEROPOINT))


def test_a_source_image_is_sampled_bilinearly_in_surface_brightness_turned_and_mirrored():
    from lensaudit.sources.procedural import SourceImage

    img = np.zeros((3, 5, 5))
    img[:, 2, 3] = [1.0, 2.0, 4.0]                        # one pixel right of the centre (x = +0.1 arcsec)
    s = SourceImage(img, 0.1, 1.0, 2.0)
    np.testing.assert_allclose(s.flux, [1.0, 2.0, 4.0])
    np.testing.assert_allclose(s.sample(np.array([1.1]), np.array([2.0]))[:, 0], [100.0, 200.0, 400.0])  # per arcsec^2
    np.testing.assert_allclose(s.sample(np.array([1.05]), np.array([2.0]))[:, 0], [50.0, 100.0, 200.0])  # halfway
    np.testing.assert_allclose(s.sample(np.array([1.1]), np.array([2.05]))[:, 0], [50.0, 100.0, 200.0])
    assert s.sample(np.array([9.0]), np.array([2.0])).max() == 0.0                                   # outside
    assert s.sample(np.zeros((2, 4)), np.zeros((2, 4))).shape == (3, 2, 4)
    turned = SourceImage(img, 0.1, 1.0, 2.0, angle=np.pi / 2)     # the stamp's +x now points along +y
    np.testing.assert_allclose(turned.sample(np.array([1.0]), np.array([2.1]))[:, 0], [100.0, 200.0, 400.0])
    assert turned.sample(np.array([1.1]), np.array([2.0])).max() < 1e-9
    mirrored = SourceImage(img, 0.1, 1.0, 2.0, flip=True)          # x -> -x
    np.testing.assert_allclose(mirrored.sample(np.array([0.9]), np.array([2.0]))[:, 0], [100.0, 200.0, 400.0])
    assert mirrored.sample(np.array([1.1]), np.array([2.0])).max() < 1e-9


def test_colour_weights_are_flux_ratios_to_r_of_ab_colours():
    from lensaudit.sources.procedural import colour_weights

    np.testing.assert_allclose(colour_weights(1.0, 0.5), [10**-0.4, 1.0, 10**0.2])
    w = colour_weights(np.array([0.0, 2.5]), np.array([2.5, 0.0]))
    assert w.shape == (3, 2)
    np.testing.assert_allclose(w, [[1.0, 0.1], [1.0, 1.0], [10.0, 1.0]])


def test_the_gaussian_random_field_is_standardised_and_has_the_stated_power_law():
    from lensaudit.sources.procedural import gaussian_random_field

    f = gaussian_random_field(128, np.random.default_rng(0), slope=3.0, k0=1e-6)
    assert abs(f.mean()) < 1e-12 and f.std() == pytest.approx(1.0)
    np.testing.assert_array_equal(f, gaussian_random_field(128, np.random.default_rng(0), slope=3.0, k0=1e-6))
    # power ~ k^-slope: the log-log slope of the radially averaged power between k = 4 and 40
    p = np.abs(np.fft.fft2(f)) ** 2
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(128) * 128, np.fft.fftfreq(128) * 128))
    ks = np.arange(4, 41)
    pk = [p[(k >= a - 0.5) & (k < a + 0.5)].mean() for a in ks]
    assert np.polyfit(np.log(ks), np.log(pk), 1)[0] == pytest.approx(-3.0, abs=0.25)
    flat = gaussian_random_field(128, np.random.default_rng(0), slope=3.0, k0=1e4)   # k0 >> k: white
    pf = np.abs(np.fft.fft2(flat)) ** 2
    assert np.polyfit(np.log(ks), np.log([pf[(k >= a - 0.5) & (k < a + 0.5)].mean() for a in ks]), 1)[0] == \
        pytest.approx(0.0, abs=0.25)


def test_a_red_source_is_one_sersic_spheroid_with_its_colours_and_r_magnitude():
    from lensaudit.lensing.light import sersic
    from lensaudit.sources.procedural import N_SOURCE, render_rich

    p = _blue(src_red=True, src_n=3.0, src_gr=1.3, src_rz=0.9, src_re=0.25)
    s = render_rich(p, np.random.default_rng(1))
    assert s.image.shape == (3, N_SOURCE, N_SOURCE) and s.image.dtype == np.float64
    assert (s.x0, s.y0, s.angle, s.flip) == (0.1, -0.2, 0.0, False)
    assert s.pixscale == pytest.approx(2.5 / N_SOURCE)                  # ten half-light radii across
    g = (np.arange(N_SOURCE) - (N_SOURCE - 1) / 2) * s.pixscale
    body = sersic(*np.meshgrid(g, g), 0.25, 3.0, 0.6, 0.4)
    want = np.array([10 ** (-0.4 * 1.3), 1.0, 10 ** (0.4 * 0.9)])[:, None, None] * body / body.sum() * _flux(23.0)
    np.testing.assert_allclose(s.image, want, rtol=1e-12)
    tiny = render_rich(p | {"src_re": 0.05}, np.random.default_rng(1))
    assert tiny.pixscale == pytest.approx(1.2 / N_SOURCE)               # at least 1.2 arcsec across


def test_a_bare_blue_disc_is_an_exponential_and_each_component_changes_flux_shares_and_colours():
    from lensaudit.lensing.light import sersic
    from lensaudit.sources.procedural import N_SOURCE, render_rich

    s = render_rich(_blue(), np.random.default_rng(2))
    g = (np.arange(N_SOURCE) - (N_SOURCE - 1) / 2) * s.pixscale
    disc = sersic(*np.meshgrid(g, g), 0.3, 1.0, 0.6, 0.4)
    want = np.array([10 ** (-0.4 * 0.45), 1.0, 10 ** (0.4 * 0.35)])[:, None, None] * disc / disc.sum() * _flux(23.0)
    np.testing.assert_allclose(s.image, want, rtol=1e-12)
    np.testing.assert_allclose(s.image[1].sum(), _flux(23.0), rtol=1e-12)

    def gr(img):
        return -2.5 * np.log10(img[0].sum() / img[1].sum())

    def rz(img):
        return -2.5 * np.log10(img[1].sum() / img[2].sum())

    # a bulge (0.3 of the light, 0.5 redder in g - r, 0.3 in r - z) reddens the total by the flux-weighted mix
    b = render_rich(_blue(src_bulge_frac=0.3), np.random.default_rng(2)).image
    # (r-band shares 1 - f and f: g/r and z/r of the total are the share-weighted flux ratios)
    mix = lambda c0, dc, f: -2.5 * np.log10((1 - f) * 10 ** (-0.4 * c0) + f * 10 ** (-0.4 * (c0 + dc)))  # noqa: E731
    mixz = lambda c0, dc, f: 2.5 * np.log10((1 - f) * 10 ** (0.4 * c0) + f * 10 ** (0.4 * (c0 + dc)))  # noqa: E731
    assert gr(b) == pytest.approx(mix(0.45, 0.5, 0.3), abs=1e-9) and rz(b) == pytest.approx(mixz(0.35, 0.3, 0.3), abs=1e-9)
    assert b[1, 48, 48] > s.image[1, 48, 48] * 1.5                    # concentrated in the centre
    # knots (0.4 of the light) are bluer by 0.35 and 0.3
    k = render_rich(_blue(src_n_knots=6, src_knot_frac=0.4), np.random.default_rng(2)).image
    assert gr(k) == pytest.approx(mix(0.45, -0.35, 0.4), abs=1e-9) and rz(k) == pytest.approx(mixz(0.35, -0.3, 0.4), abs=1e-9)
    assert render_rich(_blue(src_n_knots=6, src_knot_frac=0.0), np.random.default_rng(2)).image == pytest.approx(s.image)
    # dust dims g more than z: the source gets redder; texture and arms keep the flux, change the light
    d = render_rich(_blue(src_dust_tau=0.8), np.random.default_rng(2)).image
    att = d.sum(axis=(1, 2)) / s.image.sum(axis=(1, 2)) * (s.image[1].sum() / d[1].sum())   # per band, r fixed
    assert gr(d) > 0.45 + 0.05 and rz(d) > 0.35 + 0.05 and att[0] < att[1] < att[2]
    for opt in ({"src_texture": 0.6}, {"src_arms": True}, {"src_bar": True, "src_bar_angle": 1.0},
                {"src_n_components": 2, "src_offset_max": 0.4}):
        o = render_rich(_blue(**opt), np.random.default_rng(2)).image
        assert o[1].sum() == pytest.approx(_flux(23.0), rel=1e-12), opt
        assert np.abs(o[1] - s.image[1]).max() > 0.05 * s.image[1].max(), opt
        assert (o >= 0).all(), opt
    # a colour gradient bluer outwards: g - r of the outskirts below the centre's
    gi = render_rich(_blue(src_gradient=0.3), np.random.default_rng(2)).image
    r = np.hypot(*np.meshgrid(g, g))
    inner, outer = r < 0.3, (r > 0.6) & (r < 1.2)
    assert -2.5 * np.log10(gi[0][outer].sum() / gi[1][outer].sum()) < -2.5 * np.log10(gi[0][inner].sum() / gi[1][inner].sum()) - 0.1
    # offset components widen the extent by twice the largest offset
    assert render_rich(_blue(src_n_components=1, src_offset_max=0.4), np.random.default_rng(2)).pixscale == \
        pytest.approx((10 * 0.3 + 0.8) / N_SOURCE)


def test_a_simple_source_is_a_disc_and_bluer_knots_with_its_r_magnitude():
    from lensaudit.lensing.light import sersic
    from lensaudit.sources.procedural import N_SOURCE, render_simple

    p = {"src_re": 0.2, "src_n": 1.2, "src_q": 0.7, "src_phi": 0.3, "src_gr": 0.5, "src_rz": 0.4, "src_rmag": 24.0,
         "src_x": 0.3, "src_y": 0.0, "src_n_knots": 0, "src_knot_frac": 0.0}
    s = render_simple(p)
    assert s.pixscale == pytest.approx(2.0 / N_SOURCE) and (s.x0, s.y0) == (0.3, 0.0)
    g = (np.arange(N_SOURCE) - (N_SOURCE - 1) / 2) * s.pixscale
    disc = sersic(*np.meshgrid(g, g), 0.2, 1.2, 0.7, 0.3)
    np.testing.assert_allclose(s.image, np.array([10**-0.2, 1.0, 10**0.16])[:, None, None] * disc / disc.sum()
                               * _flux(24.0), rtol=1e-12)
    knots = {f"knot{k}_{c}": v for k in range(2) for c, v in zip(("x", "y", "sig", "w"), (0.1 * k, -0.1, 0.03, 1.0 + k), strict=True)}
    only = render_simple(p | knots | {"src_n_knots": 2, "src_knot_frac": 1.0}).image
    np.testing.assert_allclose(only.sum(axis=(1, 2)) / only[1].sum(), [10 ** (-0.4 * 0.05), 1.0, 10 ** (0.4 * 0.05)])
    ky, kx = np.unravel_index(np.argmax(only[1]), only[1].shape)
    assert abs(g[kx] - 0.1) < 0.03 and abs(g[ky] + 0.1) < 0.03                  # the heavier knot, at (0.1, -0.1)
    assert render_simple(p | {"src_re": 0.05}).pixscale == pytest.approx(1.2 / N_SOURCE)
    assert render_simple(p | {"src_rmag": 21.5}).image[1].sum() == pytest.approx(_flux(21.5))


def test_a_library_stamp_becomes_a_source_with_its_scale_turn_mirror_and_r_magnitude(tmp_path):
    from lensaudit.sources.procedural import stamp_source

    imgs, meta = _lib(n=3)
    write_stamp_library(tmp_path / "l.fits", imgs, 0.05, meta)
    lib = StampLibrary.read(tmp_path / "l.fits")
    s = stamp_source(lib, {"src_stamp": 2, "src_rmag": 22.0, "src_scale": 1.5, "src_x": 0.2, "src_y": -0.1,
                           "src_phi": 0.7, "src_flip": True})
    assert s.pixscale == pytest.approx(0.075) and (s.x0, s.y0, s.angle, s.flip) == (0.2, -0.1, 0.7, True)
    np.testing.assert_allclose(s.image, imgs[2] * _flux(22.0) / imgs[2][1].sum(), rtol=1e-6)
    assert stamp_source(lib, {"src_stamp": 0, "src_rmag": 22.0, "src_scale": 1.0, "src_x": 0, "src_y": 0,
                              "src_phi": 0.0, "src_flip": 0}).flip is False


def test_a_library_writes_itself_at_any_zeropoint_and_reads_back_the_same_nanomaggies(tmp_path):
    from astropy.io import fits

    imgs, meta = _lib()
    lib = StampLibrary(imgs, 0.05, meta)
    for zp, path in ((MAG_ZEROPOINT, tmp_path / "a.fits"), (27.0, tmp_path / "b.fits")):
        out = lib.write(path) if zp == MAG_ZEROPOINT else lib.write(path, 27.0)
        assert out == path
        with fits.open(path) as h:
            assert h["STAMPS"].header["ZEROPT"] == zp
            np.testing.assert_allclose(h["STAMPS"].data, imgs * 10 ** (0.4 * (zp - MAG_ZEROPOINT)), rtol=1e-6, atol=1e-12)
        back = StampLibrary.read(path)
        np.testing.assert_allclose(back.images, lib.images, rtol=1e-6, atol=1e-12)
        assert back.pixscale == 0.05 and back.meta["ID"].tolist() == meta["ID"].tolist()


def test_a_source_image_is_sampled_at_the_inverse_turn_and_mirror_of_each_sky_position():
    """A linear ramp is reproduced exactly by bilinear sampling: the sampled value at a sky offset d is the ramp at
    the stamp position u = mirror(R(-angle) d), for angles that are not multiples of 90 degrees."""
    from lensaudit.sources.procedural import SourceImage

    n, pix = 21, 0.1
    c = (n - 1) / 2
    rows, cols = np.mgrid[0:n, 0:n].astype(float)
    img = np.stack([(1 + b) * (2 + 0.3 * cols + 0.7 * rows) for b in range(3)])
    d = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 50))
    for angle, flip in ((0.0, False), (np.pi / 6, False), (2.0, True), (0.0, True)):
        s = SourceImage(img, pix, 0.4, -0.2, angle=angle, flip=flip)
        got = s.sample(d[0] + 0.4, d[1] - 0.2)
        ca, sa = np.cos(angle), np.sin(angle)
        u, v = ca * d[0] + sa * d[1], -sa * d[0] + ca * d[1]
        u = -u if flip else u
        want = np.stack([(1 + b) * (2 + 0.3 * (u / pix + c) + 0.7 * (v / pix + c)) for b in range(3)]) / pix**2
        np.testing.assert_allclose(got, want, rtol=1e-10, err_msg=f"angle {angle}, flip {flip}")


def test_the_random_field_has_the_stated_spectrum_zero_mean_unit_variance_and_fresh_phases():
    """Mean power over 300 fields (64 x 64) against (k^2 + k0^2)^(-slope/2), mode by mode within 20 percent
    (each mode's mean of 300 exponential draws has a 6 percent sd); every mode but k = 0 carries power."""
    from lensaudit.sources.procedural import gaussian_random_field

    n = 64
    k = np.fft.fftfreq(n) * n
    kk = np.hypot(*np.meshgrid(k, k))
    for slope, k0, kw in ((3.0, 3.0, {}), (2.0, 5.0, {"slope": 2.0, "k0": 5.0})):
        rng = np.random.default_rng(1)
        fields = [gaussian_random_field(n, rng, **kw) for _ in range(300)]
        for f in fields[:3]:
            assert abs(f.mean()) < 1e-12 and f.std() == pytest.approx(1.0, abs=1e-12)
        power = np.mean([np.abs(np.fft.fft2(f)) ** 2 for f in fields], axis=0)
        want = (kk**2 + k0**2) ** (-slope / 2)
        want[0, 0] = 0.0
        sel = (kk > 0) & (kk < 12)
        ratio = power[sel] / want[sel]
        ratio /= np.median(ratio)
        assert np.abs(ratio - 1).max() < 0.3 and np.abs(np.mean(ratio) - 1) < 0.03
        assert power[0, 1] > 0 and power[1, 0] > 0 and power[0, 0] < 1e-20
        assert abs(np.corrcoef(fields[0].ravel(), fields[1].ravel())[0, 1]) < 0.2        # new phases each call
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(gaussian_random_field(32, a), gaussian_random_field(32, b, slope=3.0, k0=3.0))


def test_simple_and_rich_sources_share_light_between_components_as_stated():
    from lensaudit.sources.procedural import render_rich, render_simple

    def gr(img):
        return -2.5 * np.log10(img[0].sum() / img[1].sum())

    def rz(img):
        return -2.5 * np.log10(img[1].sum() / img[2].sum())

    mix = lambda c0, dc, f: -2.5 * np.log10((1 - f) * 10 ** (-0.4 * c0) + f * 10 ** (-0.4 * (c0 + dc)))  # noqa: E731
    mixz = lambda c0, dc, f: 2.5 * np.log10((1 - f) * 10 ** (0.4 * c0) + f * 10 ** (0.4 * (c0 + dc)))  # noqa: E731
    p = {"src_re": 0.2, "src_n": 1.2, "src_q": 0.7, "src_phi": 0.3, "src_gr": 0.5, "src_rz": 0.4, "src_rmag": 24.0,
         "src_x": 0.3, "src_y": 0.0, "src_n_knots": 2, "src_knot_frac": 0.4,
         **{f"knot{k}_{c}": v for k in range(2) for c, v in zip(("x", "y", "sig", "w"), (0.1 * k, -0.1, 0.03, 1.0 + k),
                                                                 strict=True)}}
    s = render_simple(p).image
    assert s[1].sum() == pytest.approx(_flux(24.0), rel=1e-12)
    # knots: 0.4 of the r light, 0.45 bluer in g - r and 0.35 in r - z
    assert gr(s) == pytest.approx(mix(0.5, -0.45, 0.4), abs=1e-9) and rz(s) == pytest.approx(mixz(0.4, -0.35, 0.4), abs=1e-9)
    # a knot fraction without knots: the disc alone, still at its r magnitude
    bare = render_simple(p | {"src_n_knots": 0}).image
    assert bare[1].sum() == pytest.approx(_flux(24.0), rel=1e-12) and gr(bare) == pytest.approx(0.5, abs=1e-9)
    # a bar carries 0.15 of the disc's light, 0.3 redder in g - r and 0.2 in r - z
    b = render_rich(_blue(src_bar=True, src_bar_angle=1.0), np.random.default_rng(2)).image
    f = 0.15 / 1.15
    assert gr(b) == pytest.approx(mix(0.45, 0.3, f), abs=1e-9) and rz(b) == pytest.approx(mixz(0.35, 0.2, f), abs=1e-9)
    # an offset component carries 0.1-0.3 of the disc's light and is 0.15 / 0.1 bluer: its share from the colours
    for seed in range(6):
        c = render_rich(_blue(src_n_components=1, src_offset_max=0.4), np.random.default_rng(seed)).image
        w = 10 ** (-0.4 * gr(c)) / 10 ** (-0.4 * 0.45)            # (1 + w x 10^(0.4 x 0.15)) / (1 + w), solved for w
        share = (w - 1) / (10 ** (0.06) - w)
        assert 0.1 - 1e-9 <= share <= 0.3 + 1e-9
        assert rz(c) == pytest.approx(mixz(0.35, -0.1, share / (1 + share)), abs=1e-9)
    # the components' directions cover the circle: light-weighted offsets from the disc centre
    angles = []
    for seed in range(12):
        one = render_rich(_blue(src_n_components=1, src_offset_max=0.4), np.random.default_rng(seed))
        base = render_rich(_blue(src_offset_max=0.4), np.random.default_rng(seed)).image
        diff = one.image[1] / one.image[1].sum() * 1.2 - base[1] / base[1].sum()
        g = (np.arange(diff.shape[0]) - (diff.shape[0] - 1) / 2) * one.pixscale
        xx, yy = np.meshgrid(g, g)
        angles.append(np.arctan2((diff * yy).sum(), (diff * xx).sum()))
    assert np.ptp(np.unwrap(np.sort(angles))) > np.pi


def test_rich_source_gradient_bulge_bar_and_arms_pixel_by_pixel():
    from lensaudit.lensing.light import sersic
    from lensaudit.sources.procedural import N_SOURCE, render_rich

    # a colour gradient: each pixel's g/r and z/r are the disc's times 10^(+-0.4 grad clip(r/re - 1, -1, 3))
    s = render_rich(_blue(src_gradient=0.3), np.random.default_rng(2))
    g = (np.arange(N_SOURCE) - (N_SOURCE - 1) / 2) * s.pixscale
    x, y = np.meshgrid(g, g)
    rr = np.hypot(x, y) / 0.3
    step = 10 ** (0.4 * 0.3 * np.clip(rr - 1, -1, 3))
    ok = s.image[1] > 1e-12 * s.image[1].max()
    np.testing.assert_allclose((s.image[0] / s.image[1])[ok], (10 ** (-0.4 * 0.45) * step)[ok], rtol=1e-9)
    np.testing.assert_allclose((s.image[2] / s.image[1])[ok], (10 ** (0.4 * 0.35) / step)[ok], rtol=1e-9)
    # all of the disc's share in the bulge: the bulge alone (0.3 re, n = 3.5, q + 0.2 capped at 1), plus the
    # bar at 0.15 of the light (0.6 re, n = 0.5, q = 0.25, turned by the bar angle); colours as stated
    for q in (0.6, 0.9):
        b = render_rich(_blue(src_q=q, src_bulge_frac=1.0, src_bar=True, src_bar_angle=0.7), np.random.default_rng(2))
        g = (np.arange(N_SOURCE) - (N_SOURCE - 1) / 2) * b.pixscale
        x, y = np.meshgrid(g, g)
        bulge = sersic(x, y, 0.09, 3.5, min(1.0, q + 0.2), 0.4)
        bar = sersic(x, y, 0.18, 0.5, 0.25, 0.4 + 0.7)
        cw = lambda gr_, rz_: np.array([10 ** (-0.4 * gr_), 1.0, 10 ** (0.4 * rz_)])[:, None, None]  # noqa: E731
        want = cw(0.95, 0.65) * (bulge / bulge.sum()) + cw(0.75, 0.55) * (bar / bar.sum()) * 0.15
        np.testing.assert_allclose(b.image, want * _flux(23.0) / want[1].sum(), rtol=1e-9)
    # two logarithmic spiral arms of pitch 0.35 rad: the m = 2 azimuthal mode's phase winds by
    # 2 ln(r2 / r1) / tan(0.35) between two radii (face-on, phi = 0, so the disc is round)
    a = render_rich(_blue(src_q=1.0, src_phi=0.0, src_arms=True, src_arm_phase=0.5), np.random.default_rng(2))
    plain = render_rich(_blue(src_q=1.0, src_phi=0.0), np.random.default_rng(2))
    g = (np.arange(N_SOURCE) - (N_SOURCE - 1) / 2) * a.pixscale
    x, y = np.meshgrid(g, g)
    ratio = a.image[1] / plain.image[1]
    th, r = np.arctan2(y, x), np.hypot(x, y)
    phases = []
    for r0 in (0.25, 0.5):
        ring = np.abs(r - r0) < 0.6 * a.pixscale
        m2 = np.sum(ratio[ring] * np.exp(-2j * th[ring]))
        m3 = np.sum(ratio[ring] * np.exp(-3j * th[ring]))
        assert abs(m2) > 5 * abs(m3)                                        # two arms, not three
        phases.append(np.angle(m2))
        # cos(2 th + b) has an m = 2 coefficient of phase b = arm phase - 2 ln(r0 / re) / tan(0.35)
        want = 0.5 - 2 * np.log(r0 / 0.3) / np.tan(0.35)
        assert np.angle(np.exp(1j * (phases[-1] - want))) == pytest.approx(0.0, abs=0.15)


def test_knots_without_light_draw_nothing_so_the_dust_that_follows_is_unchanged():
    from lensaudit.sources.procedural import render_rich

    base = render_rich(_blue(src_dust_tau=0.8), np.random.default_rng(4)).image
    for over in ({"src_n_knots": 6, "src_knot_frac": 0.0}, {"src_n_knots": 0, "src_knot_frac": 0.3}):
        got = render_rich(_blue(src_dust_tau=0.8) | over, np.random.default_rng(4)).image
        if over["src_knot_frac"] == 0.0:
            np.testing.assert_array_equal(got, base)
        else:                                   # a knot share without knots: the disc keeps 0.7 and is rescaled
            np.testing.assert_allclose(got, base, rtol=1e-12)


def _rich_recipe(p: dict, rng: np.random.Generator) -> np.ndarray:
    """The rich blue source written out from its stated recipe, drawing from ``rng`` in the stated order: a textured
    exponential disc (field of slope 3 and k0 = half the grid in half-light radii), two logarithmic arms of pitch
    0.35 rad at the disc's tilt, a colour gradient, bulge and bar, offset components, knots and patchy dust."""
    from lensaudit.lensing.light import knots_profile, sersic
    from lensaudit.sources.procedural import DUST_RATIO, N_SOURCE, gaussian_random_field

    re, q, phi = p["src_re"], p["src_q"], p["src_phi"]
    pix = max(10.0 * re + 2.0 * p["src_offset_max"], 1.2) / N_SOURCE
    g = (np.arange(N_SOURCE) - (N_SOURCE - 1) / 2) * pix
    x, y = np.meshgrid(g, g)
    cw = lambda gr_, rz_: np.array([10 ** (-0.4 * gr_), 1.0, 10 ** (0.4 * rz_)])[:, None, None]  # noqa: E731
    tex = gaussian_random_field(N_SOURCE, rng, 3.0, N_SOURCE * pix / re / 2)
    disc = sersic(x, y, re, 1.0, q, phi) * np.exp(p["src_texture"] * tex - p["src_texture"] ** 2 / 2)
    if p["src_arms"]:
        u, v = np.cos(phi) * x + np.sin(phi) * y, np.cos(phi) * y - np.sin(phi) * x      # along the major axis
        r = np.sqrt(q * u**2 + v**2 / q) + 1e-3
        arm = np.cos(2 * (np.arctan2(v, u) - np.log(r / re) / np.tan(0.35)) + p["src_arm_phase"])
        disc = disc * (0.35 + np.maximum(arm, 0) ** 2)
    step = 10 ** (0.4 * p["src_gradient"] * np.clip(np.hypot(x, y) / re - 1, -1, 3))
    out = cw(p["src_gr"], p["src_rz"]) * np.stack([step, np.ones_like(step), 1 / step]) * disc / disc.sum() \
        * (1 - p["src_bulge_frac"] - p["src_knot_frac"])
    bulge = sersic(x, y, 0.3 * re, 3.5, min(1.0, q + 0.2), phi)
    out = out + cw(p["src_gr"] + 0.5, p["src_rz"] + 0.3) * bulge / bulge.sum() * p["src_bulge_frac"]
    if p["src_bar"]:
        bar = sersic(x, y, 0.6 * re, 0.5, 0.25, phi + p["src_bar_angle"])
        out = out + cw(p["src_gr"] + 0.3, p["src_rz"] + 0.2) * bar / bar.sum() * 0.15
    for _ in range(p["src_n_components"]):
        ang, d = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.0) * p["src_offset_max"]
        size, cq, cphi = re * rng.uniform(0.2, 0.5), rng.uniform(0.4, 1.0), rng.uniform(0, np.pi)
        comp = sersic(x - d * np.cos(ang), y - d * np.sin(ang), size, 1.0, cq, cphi)
        out = out + cw(p["src_gr"] - 0.15, p["src_rz"] - 0.1) * comp / comp.sum() * rng.uniform(0.1, 0.3)
    k = p["src_n_knots"]
    kx, ky = rng.normal(0, 1.2 * re, k), rng.normal(0, 1.2 * re, k)
    ks, kw = rng.uniform(0.015, 0.05, k), rng.exponential(1.0, k)
    knots = knots_profile(x, y, kx, ky, ks, kw / kw.sum())
    out = out + cw(p["src_gr"] - 0.35, p["src_rz"] - 0.3) * knots / knots.sum() * p["src_knot_frac"]
    dust = np.maximum(gaussian_random_field(N_SOURCE, rng, 2.5, 4.0) + 0.3, 0)
    out = out * np.exp(-p["src_dust_tau"] * DUST_RATIO[:, None, None] * dust)
    return out * _flux(p["src_rmag"]) / out[1].sum()


def test_a_rich_source_with_every_component_follows_its_recipe_pixel_by_pixel():
    """Every component on at once, tilted and flattened (so the arms' frame, the offset components' geometry, the
    knots' spread and the dust's field all show), against the recipe written out independently."""
    from lensaudit.sources.procedural import render_rich

    for seed, over in ((0, {}), (5, {"src_q": 0.45, "src_phi": 2.2, "src_re": 0.15, "src_offset_max": 0.6})):
        p = _blue(src_texture=0.6, src_arms=True, src_arm_phase=0.8, src_gradient=0.25, src_bulge_frac=0.15,
                  src_bar=True, src_bar_angle=0.9, src_n_components=2, src_offset_max=0.3, src_n_knots=4,
                  src_knot_frac=0.2, src_dust_tau=0.7, src_q=0.55, src_phi=0.6) | over
        got = render_rich(p, np.random.default_rng(seed))
        want = _rich_recipe(p, np.random.default_rng(seed))
        np.testing.assert_allclose(got.image, want, rtol=1e-9, atol=1e-12 * want.max())


def test_the_random_field_is_stationary():
    """Fourier coefficients with uniform phases: the pixel variance over many fields is the same everywhere, also
    at the grid's origin and centre (a field built from unequal real and imaginary parts would have a quieter
    origin, where only the real parts add up). 400 fields: each pixel variance has a 7 percent sd."""
    from lensaudit.sources.procedural import gaussian_random_field

    rng = np.random.default_rng(7)
    f = np.stack([gaussian_random_field(32, rng) for _ in range(400)])
    var = f.var(axis=0)
    assert var[0, 0] == pytest.approx(var.mean(), rel=0.25) and var[16, 16] == pytest.approx(var.mean(), rel=0.25)


def _stamp_with(border_noise=1.0, plateau=500.0, n=32, seed=0):
    """(3, n, n): unit-sd noise everywhere, a bright plateau filling all but the outer 3 pixels."""
    v = np.random.default_rng(seed).normal(0, border_noise, (3, n, n))
    v[:, 3:-3, 3:-3] += plateau
    return v


def test_negative_excess_rules_by_hand():
    """The noise is 1.4826 MAD of the outer 3 pixels (the plateau inside, most of the stamp, does not enter it); a
    pixel below -10 sigma flags a stamp only when the negative pixels sum to more than 5 percent of the light; a
    border median more than 5 standard errors (sigma / sqrt(n / 2)) below zero flags it; with a zero (masked)
    border the noise comes from the negative pixels."""
    from lensaudit.sources.library import negative_excess

    assert negative_excess(_stamp_with()) is None
    # a negative hole of -12 sigma: flagged when the negative light is more than 5 percent of the positive
    for depth, plateau, flagged in ((-12.0, 0.3, True), (-8.0, 0.3, False), (-12.0, 500.0, False)):
        v = _stamp_with(plateau=plateau)
        v[1, 10:14, 10:14] = depth
        why = negative_excess(v)
        assert (why is not None) == flagged, (depth, plateau, why)
        if flagged:
            assert why.startswith("has a r-band pixel of -12")
    # the border median: the standard error of 384 border pixels is sigma / sqrt(192)
    for shift_se, flagged in ((-5.6, True), (-4.4, False), (4.4, False)):
        v = _stamp_with(border_noise=3.0, seed=3)
        sig = 1.4826 * np.median(np.abs(np.concatenate([v[0, :3].ravel(), v[0, -3:].ravel(), v[0, :, :3].ravel(),
                                                         v[0, :, -3:].ravel()])))
        border = np.ones((32, 32), bool)
        border[3:-3, 3:-3] = False
        v[0][border] -= np.median(v[0][border])                     # a border median of exactly zero first
        v[0][border] += shift_se * sig / np.sqrt(384 / 2)
        why = negative_excess(v)
        assert (why is not None) == flagged, (shift_se, why)
        if flagged:
            assert why.startswith("has a g-band border median")
            in_sigma = float(why.split("(")[1].split(" sigma")[0])               # the median in pixel sigmas
            assert in_sigma == pytest.approx(shift_se / np.sqrt(192), abs=0.03)
    # a ring just inside the frame (the 4th pixel) does not belong to the border
    v = _stamp_with()
    v[:, 3, 3:-3] = v[:, -4, 3:-3] = v[:, 3:-3, 3] = v[:, 3:-3, -4] = -50.0
    assert negative_excess(v) is None
    # a masked (zero) border: sigma = 1.4826 x median |negative pixels|
    base = np.zeros((3, 32, 32))
    inner = np.random.default_rng(5).permutation(np.r_[np.full(338, -2.0), np.full(338, 10.0)]).reshape(26, 26)
    for hole, flagged in ((-25.0, False), (-35.0, True)):
        v = base.copy()
        v[:, 3:-3, 3:-3] = inner
        v[:, 15, 15] = hole
        assert (negative_excess(v) is not None) == flagged, hole
    assert negative_excess(np.zeros((3, 32, 32)) + np.pad(np.ones((3, 26, 26)), ((0, 0), (3, 3), (3, 3)))) is None


def test_halves_follow_the_stated_hash_rule_and_paths_may_hold_colons(tmp_path):
    import hashlib

    ids = [f"g{i}" for i in range(200)]
    want = ["A" if hashlib.sha256(f"lensaudit-half:{i}".encode()).digest()[0] % 2 == 0 else "B" for i in ids]
    assert library_half(ids).tolist() == want
    assert split_spec("a:b/lib.fits:B") == ("a:b/lib.fits", "B") and split_spec("a:b/lib.fits") == ("a:b/lib.fits", None)
    imgs, meta = _lib()
    write_stamp_library(tmp_path / "lib.fits", imgs, 0.05, meta)
    full = StampLibrary.read(tmp_path / "lib.fits")
    assert full.half("B").source == f"{full.source}:B"


def test_a_library_built_in_memory_names_itself_refuses_no_stamps_and_holds_float64():
    imgs, meta = _lib()
    lib = StampLibrary(imgs.astype(np.float32), 0.05, meta)
    assert lib.source == "stamp library" and lib.images.dtype == np.float64
    with pytest.raises(StampLibraryError, match=r"^stamp library: expected a \(N, 3, S, S\)"):
        StampLibrary(np.zeros((0, 3, 16, 16)), 0.05, meta.iloc[:0])


def test_library_validation_at_its_edges_and_the_file_it_writes(tmp_path):
    """Shape checks one by one; pixel scales at the ends of the stated range are accepted; a stamp whose r band has
    no positive flux is refused (whatever its z band); the first stamp with a wrong half is named; sizes are
    measured in r; unit images are float32 (memory); the file lands in new folders, float32, with its unit."""
    from astropy.io import fits

    from lensaudit.sources.library import PIXSCALE_RANGE

    imgs, meta = _lib(n=6)
    for bad in (imgs[:, :2], imgs[:, :, :, :31], imgs[0], imgs[:, :, :, 0]):
        with pytest.raises(StampLibraryError, match=r"expected a \(N, 3, S, S\)"):
            StampLibrary(bad, 0.05, meta)
    for ps in PIXSCALE_RANGE:
        assert StampLibrary(imgs, ps, meta).pixscale == ps
    dark = imgs.copy()
    dark[2, 1] = 0.0
    with pytest.raises(StampLibraryError, match=r"stamp 's002' has no positive r-band flux"):
        StampLibrary(dark, 0.05, meta)
    halves = library_half(meta["ID"])
    wrong = meta.assign(HALF=halves)
    wrong.loc[[1, 3], "HALF"] = np.where(halves[[1, 3]] == "A", "B", "A")
    with pytest.raises(StampLibraryError, match=r"stamp 's001' is marked half"):
        StampLibrary(imgs, 0.05, wrong)
    # r compact, z extended: the sizes are the r band's
    sized = imgs.copy()
    sized[:, 2] = imgs[:, 2].mean(axis=(1, 2), keepdims=True)
    lib = StampLibrary(sized, 0.05, meta.assign(MAG_Z=MAG_ZEROPOINT - 2.5 * np.log10(sized[:, 2].sum(axis=(1, 2)))))
    from lensaudit.sources.library import curve_of_growth
    np.testing.assert_array_equal(lib.r_half, curve_of_growth(imgs[:, 1], 0.05)[0])
    assert lib.unit_images.dtype == np.float32 and lib.source == "stamp library"
    path = write_stamp_library(tmp_path / "new" / "deeper" / "lib.fits", imgs, 0.05, meta)
    with fits.open(path) as h:
        assert h["STAMPS"].data.dtype == np.dtype(">f4") and h["STAMPS"].header["BUNIT"] == "flux at ZEROPT"


def test_curve_of_growth_centroid_of_positive_light_empty_images_and_file_round_trip(tmp_path):
    """The centroid uses the positive pixels only (a deep negative pixel far out does not move it); an image
    without light gets NaN and does not stop the images after it; a written library reads back with float
    metadata, its own name in its messages and the caller's header cards."""
    from astropy.io import fits

    from lensaudit.sources.library import curve_of_growth

    imgs, meta = _lib(n=4)
    r = imgs[:, 1]
    with_hole = r.copy()
    with_hole[:, 0, 0] = -0.3 * r.sum(axis=(1, 2))
    zero = np.zeros_like(r[:1])
    rh, conc = curve_of_growth(np.concatenate([zero, r, zero]), 0.05)
    assert np.isnan(rh[0]) and np.isnan(conc[0]) and np.isnan(rh[-1]) and np.isfinite(rh[1:-1]).all()
    base = curve_of_growth(r, 0.05)[0]
    np.testing.assert_allclose(rh[1:-1], base)
    # by hand: circular apertures about the centroid of the positive pixels; the hole's light stays in the sums
    yy, xx = np.mgrid[0:32, 0:32]
    for im, got in zip(with_hole, curve_of_growth(with_hole, 0.05)[0], strict=True):
        pos = np.clip(im, 0, None)
        cx, cy = (pos * xx).sum() / pos.sum(), (pos * yy).sum() / pos.sum()
        rad = np.hypot(xx - cx, yy - cy).ravel()
        o = np.argsort(rad)
        cum = np.maximum.accumulate(np.cumsum(im.ravel()[o]) / im.sum())
        assert got == pytest.approx(np.interp(0.5, cum, rad[o] * 0.05), rel=1e-12)
    path = write_stamp_library(tmp_path / "l.fits", imgs, 0.05, meta, header={"ORIGIN": "a test"})
    lib = StampLibrary.read(path)
    assert lib.source == f"stamp library {path}"
    assert lib.meta["Z"].dtype == np.float64 and lib.meta["MAG_R"].dtype == np.float64
    with fits.open(path) as h:
        assert h["STAMPS"].header["ORIGIN"] == "a test"
    with fits.open(path) as h:
        h["STAMPS"].data[1, 1] = 0.0
        h.writeto(tmp_path / "dark.fits")
    with pytest.raises(StampLibraryError, match=rf"^stamp library {tmp_path / 'dark.fits'}: stamp 's001' has no positive"):
        StampLibrary.read(tmp_path / "dark.fits")


def test_negative_excess_near_its_thresholds_at_stamp_flux_levels():
    """Stamps at a library's flux level (0.1 nanomaggies in all): noise 2e-5 in the border, a clean plateau, a hole
    of 16 pixels at -10.5 sigma. The negative light is 7 percent of the positive (flagged) or 4.85 percent (not
    flagged: a fraction of the positive light, not of the net light); a hole at -9.5 sigma is not flagged."""
    from lensaudit.sources.library import negative_excess

    def stamp(plateau, hole_sigma):
        v = np.random.default_rng(0).normal(0, 2e-5, (3, 32, 32))
        v[:, 3:-3, 3:-3] = plateau + np.random.default_rng(1).normal(0, 5e-7, (3, 26, 26))
        w = v[1]
        border = np.concatenate([w[:3].ravel(), w[-3:].ravel(), w[:, :3].ravel(), w[:, -3:].ravel()])
        sig = 1.4826 * np.median(np.abs(border - np.median(border)))
        w[10:14, 10:14] = hole_sigma * sig
        return v, -np.clip(w, None, 0).sum() / np.clip(w, 0, None).sum()

    v, frac = stamp(1.3092e-7 * 1000, -10.5)
    assert frac == pytest.approx(0.07, abs=2e-4) and v.sum(axis=(1, 2))[1] < 1.0
    assert negative_excess(v).startswith("has a r-band pixel of")
    v, frac = stamp(1.9083e-7 * 1000, -10.5)
    assert frac == pytest.approx(0.0485, abs=2e-4) and negative_excess(v) is None
    assert negative_excess(stamp(1.3092e-7 * 1000, -9.5)[0]) is None


# ------------------------------------------------------------------ the XDF library's steps, one at a time
# (each against a hand computation or a field of known answer; the whole build is checked above)
def test_destretch_undoes_a_power_stretch_about_each_channels_own_sky():
    display = np.array([[[12, 30, 5], [20, 30, 9]], [[10, 14, 40], [16, 22, 2]]], np.uint8)
    sky = np.array([10.0, 20.0, 5.0])
    got = X.destretch(display, sky, 2.5)
    d = display.astype(float) - sky
    want = np.array([[[np.sign(v) * abs(v) ** 2.5 for v in px] for px in row] for row in d])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[1, 0, 1] < 0 and got.dtype == np.float64            # below the sky: negative light kept negative


def test_sky_levels_are_each_channels_clipped_median_and_noise_in_channel_order():
    rng = np.random.default_rng(3)
    img = np.stack([rng.normal(m, s, (200, 200)) for m, s in ((10.0, 2.0), (30.0, 3.0), (60.0, 4.0))], axis=-1)
    img[50:60, 50:60] += 150.0                                      # a bright source the clipping must ignore
    level, sd = X.sky_levels(img)
    np.testing.assert_allclose(level, [10.0, 30.0, 60.0], atol=0.1)
    np.testing.assert_allclose(sd, [2.0, 3.0, 4.0], rtol=0.03)
    for c in range(3):                                              # the stated estimator: 3 sigma, 10 iterations
        _, med, s = sigma_clipped_stats(img[..., c], sigma=3.0, maxiters=10)
        assert (level[c], sd[c]) == (med, s)
    # an exponential tail clips a little at every pass: the tenth pass's values, not the fifth's or the last's
    tail = rng.exponential(5.0, (200, 200, 3))
    level, sd = X.sky_levels(tail)
    for c in range(3):
        assert level[c] == sigma_clipped_stats(tail[..., c], sigma=3.0, maxiters=10)[1]
        assert level[c] != sigma_clipped_stats(tail[..., c], sigma=3.0, maxiters=11)[1]


def test_segment_fluxes_sum_the_linearised_pixels_of_each_present_label_in_label_order():
    d = np.array([[1.0, -2.0, 3.0, 7.0], [4.0, 0.5, 2.0, 1.0]])
    seg = np.array([[1, 1, 4, 0], [2, 4, 4, 0]])                    # label 3 absent, 2 one pixel, 0 the sky
    got = X.segment_fluxes(d, seg, 2.0)
    np.testing.assert_allclose(got, [1.0 - 4.0, 16.0, 9.0 + 0.25 + 4.0])


def test_counts_slope_is_the_maximum_likelihood_power_law_of_the_brightest_third():
    f = np.array([100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.0, -3.0])  # 7 positive: a third is 2, at least 5 kept
    top = np.array([100.0, 50.0, 20.0, 10.0, 5.0])
    assert X.counts_slope(f) == pytest.approx(0.4 * 5 / np.log(top / 5.0).sum(), rel=1e-12)
    many = np.random.default_rng(0).permutation(np.linspace(1, 600, 600))
    top = np.sort(many)[::-1][:200]
    assert X.counts_slope(many) == pytest.approx(0.4 * 200 / np.log(top / top[-1]).sum(), rel=1e-12)
    assert X.counts_slope(many, complete_fraction=0.5) != X.counts_slope(many)
    few = np.array([8.0, 4.0, 2.0, 1.0, 0.0, -1.0])                 # four positive: all kept, the zero never
    assert X.counts_slope(few) == pytest.approx(0.4 * 4 / np.log(few[:4] / 1.0).sum(), rel=1e-12)
    a = 0.7                                                          # N(>F) ~ F^-a exactly: slope 0.4 a
    pareto = (1 - (np.arange(30000) + 0.5) / 30000) ** (-1 / a)
    assert X.counts_slope(pareto) == pytest.approx(0.4 * a, rel=0.03)


def test_measure_gamma_finds_the_stretch_whose_counts_have_the_target_slope_and_clamps_to_its_range():
    base = (1 - (np.arange(3000) + 0.5) / 3000) ** (-1 / 1.35)      # counts slope about 0.54 at gamma 1
    s0 = X.counts_slope(base)

    def fluxes_of(g):                                               # the slope of F^g is exactly s0 / g
        return base ** g

    got = X.measure_gamma(fluxes_of, target=0.27)
    assert got == pytest.approx(s0 / 0.27, abs=1e-3) and abs(got - 2.0) < 0.1
    assert X.measure_gamma(fluxes_of, target=0.27, tol=1e-6) == pytest.approx(s0 / 0.27, abs=1e-6)
    assert X.measure_gamma(fluxes_of, target=s0 * 2) == 1.0        # would need gamma 0.5: the lower end
    assert X.measure_gamma(fluxes_of, target=s0 / 10) == 6.0       # would need gamma 10: the upper end
    assert X.measure_gamma(fluxes_of, target=s0 / 3, lo=2.0, hi=2.5) == 2.5
    assert X.measure_gamma(fluxes_of, target=s0 / 3, lo=3.5, hi=5.0) == 3.5
    # a target met exactly at an end is that end
    assert X.measure_gamma(fluxes_of, target=X.counts_slope(fluxes_of(1.0))) == 1.0
    assert X.measure_gamma(fluxes_of, target=X.counts_slope(fluxes_of(6.0))) == 6.0
    # bisection stops once the bracket is tol wide and answers its middle: an odd multiple of tol / 2 from lo
    k = (X.measure_gamma(fluxes_of, target=0.27, tol=5 / 2**12) - 1.0) / (5 / 2**13)
    assert k == round(k) and round(k) % 2 == 1
    # a slope equal to the target inside the bracket moves its upper end: the lowest gamma that reaches it
    steps = lambda g: base ** float(np.floor(g))                      # noqa: E731
    assert X.measure_gamma(steps, target=X.counts_slope(base**2.0)) == pytest.approx(2.0, abs=2e-3)


def test_calibrated_gamma_reads_the_true_stretch_off_the_calibration_linearly_and_clamps():
    truth, est = np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 4.0])
    assert X.calibrated_gamma(3.0, truth, est) == pytest.approx(2.5)
    assert X.calibrated_gamma(1.75, truth, est) == pytest.approx(1.5)
    assert X.calibrated_gamma(0.0, truth, est) == 1.0 and X.calibrated_gamma(9.0, truth, est) == 3.0


def _psf_field(gamma: float, extended: bool = True):
    """Display-minus-sky image of point sources of one Gaussian PSF (sigma 1.5 px) and 2 to 2000 flux units,
    shown as L^(1 / gamma); and its segmentation (a disc of 3 sigma per source). With ``extended``, a broad
    source (sigma 4 px) is added under the next label."""
    fluxes = np.geomspace(2.0, 2000.0, 16)
    lin = np.zeros((40, 40 * len(fluxes) + 40))
    seg = np.zeros(lin.shape, int)
    yy, xx = np.mgrid[0:40, 0:40]
    for k, f in enumerate([*fluxes, 500.0] if extended else fluxes):
        s = 4.0 if k == len(fluxes) else 1.5
        lin[:, 40 * k : 40 * k + 40] += f / (2 * np.pi * s * s) * np.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / (2 * s * s))
        seg[:, 40 * k : 40 * k + 40][(xx - 20) ** 2 + (yy - 20) ** 2 <= (3 * s) ** 2] = k + 1
    return lin ** (1 / gamma), seg, np.arange(1, len(fluxes) + 1)


def _ratio_field(slope: float):
    """Display-minus-sky of 12 sources (3 x 3 pixel squares, labels 1-12) of totals 10-1000 whose peak / total
    goes as total^slope, a 13th (label 13) of the opposite trend, and label 20 a negative-total patch."""
    tot = np.geomspace(10.0, 1000.0, 12)
    d, seg = np.zeros((5, 5 * 14)), np.zeros((5, 5 * 14), int)
    for k, (t, s) in enumerate([*((t, slope) for t in tot), (5000.0, -slope)]):
        peak = t * 0.5 * (t / 10.0) ** s
        d[1:4, 5 * k + 1 : 5 * k + 4] = (t - peak) / 8
        d[2, 5 * k + 2] = peak
        seg[1:4, 5 * k + 1 : 5 * k + 4] = k + 1
    d[1:4, 66:69], seg[1:4, 66:69] = -1.0, 20
    return d, seg


def test_stretch_slope_fits_log_peak_over_total_against_log_total_of_the_listed_sources():
    d, seg = _ratio_field(-0.1)
    labels = np.arange(1, 13)
    assert X.stretch_slope(d, seg, labels, 1.0) == pytest.approx(-0.1, abs=1e-9)
    assert X.stretch_slope(d, seg, np.append(labels, 13), 1.0) > -0.09      # the 13th source counts when listed
    assert X.stretch_slope(d, seg, np.append(labels, 20), 1.0) == pytest.approx(-0.1, abs=1e-9)  # no light: skipped
    lin = np.sign(d) * np.abs(d) ** 2.0                                      # another stretch, by hand
    tot = np.array([lin[seg == k].sum() for k in labels])
    pk = np.array([lin[seg == k].max() for k in labels])
    want = np.polyfit(np.log10(tot), np.log10(pk / tot), 1)[0]
    assert X.stretch_slope(d, seg, labels, 2.0) == pytest.approx(want, rel=1e-9) and abs(want + 0.1) > 0.05
    assert X.stretch_slope(d, seg, labels[3:], 1.0) == pytest.approx(-0.1, abs=1e-9)   # a list not from 1
    # a listed label without pixels (the last one, 30) is skipped; a faint source (total 0.55) counts
    assert X.stretch_slope(d, seg, np.append(labels, [20, 30]), 1.0) == pytest.approx(-0.1, abs=1e-9)
    d[1:4, 61:64] = [[0.05, 0.05, 0.05], [0.05, 0.2, 0.05], [0.05, 0.05, 0.0]]   # label 13 made faint
    faint = np.append(labels, 13)
    tot = np.array([d[seg == k].sum() for k in faint])
    pk = np.array([d[seg == k].max() for k in faint])
    assert tot[-1] == pytest.approx(0.55)
    want = np.polyfit(np.log10(tot), np.log10(pk / tot), 1)[0]
    assert X.stretch_slope(d, seg, faint, 1.0) == pytest.approx(want, rel=1e-9) and abs(want + 0.1) > 0.01


def test_cut_is_a_box_centred_on_the_nearest_pixel_with_zeros_outside_the_image():
    a = np.arange(30, dtype=float).reshape(5, 6) + 1
    np.testing.assert_array_equal(X._cut(a, 2.2, 2.6, 3), a[1:4, 2:5])
    np.testing.assert_array_equal(X._cut(a, 2.0, 3.0, 4), a[0:4, 1:5])      # even size: one more row above
    edge = X._cut(a, 0.0, 5.0, 3)
    np.testing.assert_array_equal(edge, [[0, 0, 0], [a[0, 4], a[0, 5], 0], [a[1, 4], a[1, 5], 0]])
    assert not X._cut(a, 20.0, 20.0, 3).any() and X._cut(a, 20.0, 20.0, 3).shape == (3, 3)
    assert not X._cut(a, 20.0, 2.0, 3).any() and not X._cut(a, 2.0, 20.0, 3).any()   # outside along one axis
    assert not X._cut(a, 8.0, 2.0, 5).any() and not X._cut(a, 2.0, 9.0, 5).any()       # just beyond the last row
    np.testing.assert_array_equal(X._cut(a, -1.0, -1.0, 3)[2:, 2:], a[:1, :1])
    np.testing.assert_array_equal(X._cut(a, 4.0, 0.0, 5)[:3, 2:], a[2:, :3])


def test_compact_sources_are_the_bright_ones_of_the_smallest_sizes():
    from photutils.segmentation import SegmentationImage

    d, seg, _ = _psf_field(1.0)
    rng = np.random.default_rng(0)
    d = d + rng.normal(0, 0.01, d.shape)
    d = np.concatenate([d, d], axis=1)                               # 34 sources: 32 point-like, 2 broad
    seg = np.concatenate([seg, np.where(seg > 0, seg + 17, 0)], axis=1)
    labels = X._compact_sources(d, SegmentationImage(seg), snr_min=20.0, fraction=0.3)
    assert 8 <= len(labels) <= 12 and not {17, 34} & set(labels.tolist())
    with pytest.raises(X.XdfError, match="too few bright sources"):
        X._compact_sources(d, SegmentationImage(seg), snr_min=1e9)


# ------------------------------------------------------------------ the library folder: provenance and the cache
def _fake_folder(folder, sha_report: str, sha_header: str):
    """An XDF library folder without the build: a small stamp library and a report naming an image SHA-256."""
    rng = np.random.default_rng(0)
    ids = [f"xdf_{k:04d}" for k in range(12)]
    yy, xx = np.mgrid[0:16, 0:16]
    blob = np.exp(-((xx - 8) ** 2 + (yy - 8) ** 2) / 8.0)
    imgs = np.stack([np.stack([blob * (1 + 0.1 * rng.random())] * 3) for _ in ids])
    meta = pd.DataFrame({"ID": ids, "Z": np.nan, **{f"MAG_{b}": 22.5 - 2.5 * np.log10(imgs[:, j].sum(axis=(1, 2)))
                                                   for j, b in enumerate("GRZ")}})
    folder.mkdir(parents=True, exist_ok=True)
    write_stamp_library(folder / "xdf_stamps.fits", imgs, 0.138, meta, header={"XDFSHA": sha_header})
    (folder / "xdf_report.json").write_text(json.dumps({"provenance": {"sha256": sha_report}, "n_stamps": 12}))
    return ids


def test_check_provenance_compares_the_report_and_the_library_header_with_this_machines_image(tmp_path):
    _, prov = X.load_xdf()
    assert len(prov["sha256"]) == 64 and prov["shape"][2] == 3 and prov["image"] == "skimage.data.hubble_deep_field()"
    _fake_folder(tmp_path / "ok", prov["sha256"], prov["sha256"])
    assert X.check_provenance(tmp_path / "ok")["n_stamps"] == 12
    _fake_folder(tmp_path / "report", "0" * 64, prov["sha256"])
    with pytest.raises(X.XdfError, match="built from an XDF image with SHA-256 0000000000000000"):
        X.check_provenance(tmp_path / "report")
    _fake_folder(tmp_path / "header", prov["sha256"], "f" * 64)
    with pytest.raises(X.XdfError, match="xdf_stamps.fits: its header names another XDF image"):
        X.check_provenance(tmp_path / "header")
    (tmp_path / "ok" / "xdf_report.json").unlink()
    with pytest.raises(X.XdfError, match="not an XDF library folder"):
        X.check_provenance(tmp_path / "ok")


def test_the_default_library_is_built_once_in_the_cache_and_opened_by_name_or_half(tmp_path, monkeypatch):
    _, prov = X.load_xdf()
    built = []

    def fake_build(root):
        built.append(root)
        _fake_folder(root, prov["sha256"], prov["sha256"])

    monkeypatch.setattr(X, "build_xdf_library", fake_build)
    monkeypatch.setenv(X.CACHE_ENV, str(tmp_path / "cache"))
    path = X.default_library()
    assert path == tmp_path / "cache" / "xdf" / "xdf_stamps.fits" and built == [tmp_path / "cache" / "xdf"]
    assert X.default_library() == path and len(built) == 1             # the second use opens, builds nothing
    full = X.open_library("xdf")
    halves = library_half(full.meta["ID"])
    a, b = X.open_library("xdf:A"), X.open_library("xdf:B")
    assert len(full) == 12 and a.meta["ID"].tolist() == full.meta["ID"][halves == "A"].tolist()
    assert b.meta["ID"].tolist() == full.meta["ID"][halves == "B"].tolist()
    assert X.open_library(f"{path}:B").meta["ID"].tolist() == b.meta["ID"].tolist()
    monkeypatch.delenv(X.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert X.default_library() == tmp_path / "home" / ".cache" / "lensaudit" / "xdf" / "xdf_stamps.fits"
    (tmp_path / "cache" / "xdf" / "xdf_report.json").unlink()          # a half-written cache is rebuilt
    monkeypatch.setenv(X.CACHE_ENV, str(tmp_path / "cache"))
    X.default_library()
    assert len(built) == 3


# ------------------------------------------------------------------ the cuts and the stamps
def test_cut_flow_counts_each_cut_on_what_the_earlier_ones_kept():
    keep, reasons = X.cut_flow([("a", np.array([True, False, True, False])),
                                ("b", np.array([True, True, False, False]))])
    assert keep.tolist() == [False, False, False, True] and reasons == {"a": 2, "b": 1}
    before = np.array([True, True, True, False])
    keep, reasons = X.cut_flow([("c", np.array([False, True, False, True]))], before)
    assert keep.tolist() == [True, False, True, False] and reasons == {"c": 1}
    assert before.tolist() == [True, True, True, False]              # the caller's mask is not changed
    keep, _ = X.cut_flow([("c", np.array([False, True, False, True]))], [1, 1, 1, 0])   # 0/1 read as a mask
    assert keep.dtype == bool and keep.tolist() == [True, False, True, False]


def test_detection_cuts_at_their_boundaries():
    s = X.XdfSettings()                    # min area 20 px, edge margin 2, S/N 30, star 1.3x locus, span 64 - 6
    H, W = 300, 400
    ok = dict(area=40, bbox=(100, 120, 100, 120), sat=False, snr=50.0, size=3.0)
    rows = [ok, {**ok, "area": 19}, {**ok, "area": 20},
            {**ok, "bbox": (1, 20, 100, 120)}, {**ok, "bbox": (2, 20, 100, 120)},
            {**ok, "bbox": (100, 120, 1, 20)}, {**ok, "bbox": (H - 20, H - 3, 100, 120)},
            {**ok, "bbox": (H - 20, H - 2, 100, 120)}, {**ok, "bbox": (100, 120, W - 20, W - 2)},
            {**ok, "bbox": (100, 120, W - 20, W - 3)}, {**ok, "sat": True}, {**ok, "snr": 29.9}, {**ok, "snr": 30.0},
            {**ok, "size": 1.3 * 2.0 - 1e-9}, {**ok, "size": 1.3 * 2.0},
            {**ok, "bbox": (100, 159, 100, 120)}, {**ok, "bbox": (100, 158, 100, 120)},
            {**ok, "bbox": (100, 120, 100, 159)}, {**ok, "bbox": (100, 120, 2, 20)},
            {**ok, "bbox": (100, 120, 100, 158)}]
    cuts = X.detection_cuts(np.array([r["area"] for r in rows]), np.array([r["bbox"] for r in rows]),
                            np.array([int(r["sat"]) for r in rows]), np.array([r["snr"] for r in rows]),  # 0/1: a mask
                            np.array([r["size"] for r in rows]), 2.0, (H, W), s)
    assert [name for name, _ in cuts] == ["smaller than the minimum area", "touching the image edge",
                                          "saturated (display value 255)", "S/N below the minimum",
                                          "star-like (size within 1.3x the compact locus)", "larger than the stamp"]
    got = {name: np.flatnonzero(bad).tolist() for name, bad in cuts}
    assert got == {"smaller than the minimum area": [1], "touching the image edge": [3, 5, 7, 8],
                   "saturated (display value 255)": [10], "S/N below the minimum": [11],
                   "star-like (size within 1.3x the compact locus)": [13], "larger than the stamp": [15, 17]}
    keep, reasons = X.cut_flow(cuts)
    assert np.flatnonzero(~keep).tolist() == [1, 3, 5, 7, 8, 10, 11, 13, 15, 17] and sum(reasons.values()) == 10


def test_a_galaxy_is_blended_when_the_segments_touching_it_in_its_stamp_outshine_it():
    seg = np.zeros((12, 30), int)
    seg[2:5, 2:5], seg[5:7, 2:5] = 1, 2            # 2 touches 1 from below
    seg[2:5, 8:11], seg[2:5, 12:14] = 3, 4         # 4 is one sky column away from 3
    seg[2:4, 16:18], seg[4:6, 18:20] = 5, 6        # 6 touches 5 at a corner only
    seg[6:9, 22:25], seg[5, 22:25], seg[9, 22:25] = 7, 8, 9    # 8 above, 9 below
    seg[2:5, 26:29], seg[10:12, 26:29] = 10, 11    # 11 touches nothing
    labels = np.arange(1, 12)
    flux = np.array([10.0, 11.0, 10.0, 50.0, 10.0, 50.0, 10.0, 6.0, 6.0, 10.0, 90.0])
    cy = np.array([3.0, 5.5, 3.0, 3.0, 2.5, 4.5, 7.0, 5.0, 9.0, 3.0, 10.5])
    cx = np.array([3.0, 3.0, 9.0, 12.5, 16.5, 18.5, 23.0, 23.0, 23.0, 27.0, 27.0])
    keep = np.ones(11, bool)
    got = X.blended(seg, labels, flux, cy, cx, keep, 9)
    # 1 (by 2), 7 (by 8 and 9 together), 8 and 9 (by 7); 2 outshines 1; 3, 5, 10 and 11 touch nothing brighter
    assert np.flatnonzero(got).tolist() == [0, 6, 7, 8]
    keep[[0, 7]] = False
    assert np.flatnonzero(X.blended(seg, labels, flux, cy, cx, keep, 9)).tolist() == [6, 8]   # only kept examined
    seg2 = seg.copy()
    seg2[7:12, 2:5] = 2                                    # 2 grows beyond 1's 3-pixel stamp: still touching
    flux2 = flux.copy()
    flux2[1] = 9.0
    assert not X.blended(seg2, labels, flux2, cy, cx, np.ones(11, bool), 3)[0]
    # label 1 outshining its neighbour; a touching segment not among the detections holds no flux
    pair = np.zeros((6, 6), int)
    pair[1:3, 1:4], pair[3:5, 1:4] = 1, 2
    c_y, c_x = np.array([1.5, 3.5]), np.array([2.0, 2.0])
    assert X.blended(pair, np.array([1, 2]), np.array([20.0, 5.0]), c_y, c_x, np.ones(2, bool), 5).tolist() == [
        False, True]
    assert X.blended(pair, np.array([2]), np.array([0.5]), c_y[1:], c_x[1:], np.ones(1, bool), 5).tolist() == [False]
    tie = X.blended(pair, np.array([1, 2]), np.array([5.0, 5.0]), c_y, c_x, np.ones(2, bool), 5)
    assert tie.tolist() == [False, False]                        # as bright as the galaxy: not beyond repair


def test_a_stamp_is_the_galaxys_grown_segment_in_g_r_z_from_blue_mean_and_green():
    from scipy.ndimage import binary_dilation

    s = X.XdfSettings(stamp_pix=7, grow_pix=2)
    H, W = 12, 12
    rng = np.random.default_rng(2)
    lin = rng.random((H, W, 3)) + np.array([10.0, 20.0, 40.0])     # R, G, B
    seg = np.zeros((H, W), int)
    seg[5:7, 5:7] = 1
    seg[5:7, 7:9] = 2                                               # a neighbour on the right
    st = X.cut_stamps(lin, seg, np.array([1]), np.array([5.6]), np.array([5.4]), s)
    assert st.shape == (1, 3, 7, 7)
    y0, x0 = 6 - 3, 5 - 3                                           # centred on the nearest pixel (6, 5)
    own = np.zeros((H, W), bool)
    own[5:7, 5:7] = True
    grown = binary_dilation(own, iterations=2) & (seg != 2)          # two steps of 4-connected growth, never
    m = grown[y0 : y0 + 7, x0 : x0 + 7]                              # into the neighbour
    blue, green = lin[y0 : y0 + 7, x0 : x0 + 7, 2], lin[y0 : y0 + 7, x0 : x0 + 7, 1]
    np.testing.assert_allclose(st[0, 0], blue * m)
    np.testing.assert_allclose(st[0, 1], 0.5 * (blue + green) * m)
    np.testing.assert_allclose(st[0, 2], green * m)
    assert m.sum() > 4 + 8 and (st[0][:, ~m] == 0).all()


def test_colour_scales_move_the_median_colours_to_the_prior_and_r_is_normalised_per_stamp():
    sums = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.5], [0.5, 1.0, 4.0], [3.0, 2.0, 1.0], [1.2, 1.5, 1.5]])
    kg, kz = X.colour_scales(sums, 0.45, 0.35)
    gr = -2.5 * np.log10(sums[:, 0] * kg / sums[:, 1])
    rz = -2.5 * np.log10(sums[:, 1] / (sums[:, 2] * kz))
    assert np.median(gr) == pytest.approx(0.45, abs=1e-12) and np.median(rz) == pytest.approx(0.35, abs=1e-12)
    assert kg < 1 < kz                   # the sums' median g - r (0.24) bluer than 0.45, r - z (-0.24) redder
    stamps = np.random.default_rng(0).random((4, 3, 5, 5))
    out = X.normalised_to_r(stamps, 24.0)
    np.testing.assert_allclose(out[:, 1].sum(axis=(1, 2)), 10 ** (-0.4 * (24.0 - 22.5)), rtol=1e-12)
    np.testing.assert_allclose(out / stamps, (out / stamps)[:, :1, :1, :1] * np.ones_like(stamps), rtol=1e-12)


# ------------------------------------------------------------------ the build, on a part of the image (seconds)
CAL = (np.array([1.0, 6.0]), np.array([1.5, 7.0]))      # a stand-in calibration: true gamma = (raw - 1.5) / 1.1 + 1


@pytest.fixture(scope="module")
def crop_build(tmp_path_factory):
    """The build on a 360 x 360 part of the XDF with a stated calibration (the real one takes six synthetic fields
    and the whole image, about 15 s: test_sources.py builds that)."""
    mp = pytest.MonkeyPatch()
    img, prov = X.load_xdf()
    crop = np.ascontiguousarray(img[220:580, 320:680])
    mp.setattr(X, "load_xdf", lambda: (crop, dict(prov)))
    mp.setattr(X, "gamma_calibration", lambda s: CAL if s == X.XdfSettings() else None)
    out = tmp_path_factory.mktemp("xdf_crop")
    rep = X.build_xdf_library(out)
    mp.setattr(X, "gamma_calibration", lambda s: CAL if s.mask_grow_pix == 1 else None)
    low = X.build_xdf_library(out / "other" / "nested", X.XdfSettings(mag_r=24.0, colour_prior_g_r=0.6, min_snr=60.0,
                                                                      mask_grow_pix=1))
    mp.undo()
    return crop, prov, out, rep, low


def test_the_build_measures_the_stretch_from_the_counts_and_reads_it_off_the_calibration(crop_build):
    crop, prov, out, rep, _ = crop_build
    s = X.XdfSettings()
    sky, sky_sd = X.sky_levels(crop)
    assert rep["sky_display"] == sky.tolist() and rep["sky_sd_display"] == sky_sd.tolist()
    raw, (d0, seg0) = X.raw_gamma((crop.astype(float) - sky).sum(axis=2), s)
    assert rep["gamma_raw"] == raw and 1.5 < raw < 7.0
    assert rep["gamma"] == pytest.approx(1.0 + (raw - 1.5) * 5.0 / 5.5, rel=1e-12)
    assert rep["gamma_calibration"] == {"true": CAL[0].tolist(), "raw": CAL[1].tolist()}
    lo, hi = rep["gamma_for_literature_range"]           # steeper literature counts need a gentler stretch
    assert lo < rep["gamma"] < hi and rep["counts_slope_literature"] == [0.27, 0.05]
    fl = lambda g: X.segment_fluxes(d0, seg0.data, g)    # noqa: E731
    assert lo == pytest.approx(X.calibrated_gamma(X.measure_gamma(fl, 0.32), *CAL), rel=1e-12)
    assert hi == pytest.approx(X.calibrated_gamma(X.measure_gamma(fl, 0.22), *CAL), rel=1e-12)
    # the linear channels: pixels below the 0.5th percentile of each channel's sky raised to it, and counted
    lin = X.destretch(crop, sky, rep["gamma"])
    floor = [np.percentile(lin[..., c][seg0.data == 0], 0.5) for c in range(3)]
    assert rep["pixels_raised_to_the_sky_floor"] == sum(int((lin[..., c] < floor[c]).sum()) for c in range(3)) > 0
    compact = np.sort(X._compact_sources(d0, seg0))
    assert rep["n_compact_sources"] == len(compact) > 0
    assert rep["check_compact_peak_to_total_slope"] == X.stretch_slope(d0, seg0.data, compact, rep["gamma"])
    assert rep["effective_fwhm_arcsec"] == pytest.approx(rep["compact_fwhm_pix"] * 0.138, rel=1e-12)
    assert 0.5 < rep["compact_fwhm_pix"] < 6.0 and 0.1 < rep["counts_slope_dlogN_dm"] < 1.0


def test_the_build_counts_every_cut_and_writes_stamps_at_the_stated_magnitude_and_colours(crop_build):
    from astropy.io import fits

    from lensaudit.sources import StampLibrary

    crop, prov, out, rep, low = crop_build
    assert list(rep["rejected"]) == ["smaller than the minimum area", "touching the image edge",
                                     "saturated (display value 255)", "S/N below the minimum",
                                     "star-like (size within 1.3x the compact locus)", "larger than the stamp",
                                     "blended beyond repair (touching neighbours brighter than the galaxy)",
                                     "no positive light in a band", "negative light beyond noise (background)"]
    assert rep["n_detected"] == rep["n_stamps"] + sum(rep["rejected"].values()) and rep["n_stamps"] >= 50
    for k in ("smaller than the minimum area", "touching the image edge", "saturated (display value 255)",
              "star-like (size within 1.3x the compact locus)", "blended beyond repair (touching neighbours "
              "brighter than the galaxy)"):
        assert rep["rejected"][k] > 0, k                        # each cut has work to do on this part of the sky
    assert rep["settings"] == {**X.XdfSettings().__dict__} and rep["pixscale_arcsec"] == X.PIXSCALE_ARCSEC
    assert rep["pixscale_rel_uncertainty"] == 0.1
    # the colour zero points: a redder g - r prior (0.6 against 0.45) dims g by 10^(-0.4 x 0.15) on a similar sample
    cz, cz_low = rep["colour_zero_points"], low["colour_zero_points"]
    assert set(cz) == {"g_scale", "z_scale"} and cz["z_scale"] == pytest.approx(cz_low["z_scale"], rel=0.05)
    assert cz_low["g_scale"] / cz["g_scale"] == pytest.approx(10 ** (-0.4 * 0.15), rel=0.05)
    lib = StampLibrary.read(out / "xdf_stamps.fits")
    assert len(lib) == rep["n_stamps"] and rep["library"] == str(out / "xdf_stamps.fits")
    assert rep["halves"] == {h: int((lib.meta["HALF"] == h).sum()) for h in "AB"} and min(rep["halves"].values())
    np.testing.assert_allclose(lib.meta["MAG_R"], 25.0, atol=1e-4)
    assert np.median(lib.meta["MAG_G"] - lib.meta["MAG_R"]) == pytest.approx(0.45, abs=1e-4)
    assert np.median(lib.meta["MAG_R"] - lib.meta["MAG_Z"]) == pytest.approx(0.35, abs=1e-4)
    assert (lib.meta["SNR"] >= 30.0).all() and (lib.meta["AREA_PIX"] >= 20).all() and lib.meta["Z"].isna().all()
    x, y = lib.meta["X_PIX"].to_numpy(), lib.meta["Y_PIX"].to_numpy()
    assert ((x > 0) & (x < 360) & (y > 0) & (y < 360)).all()
    for i in range(0, len(lib), 17):
        head, xs, ys, lab = lib.meta["ID"].iat[i].split("_")
        assert head == "xdf" and (int(xs), int(ys)) == (round(x[i]), round(y[i])) and int(lab) > 0
        st = lib.images[i]
        assert (st.sum(axis=(1, 2)) > 0).all() and (st[:, 0, :] == 0).all() and (st[:, :, 0] == 0).all()
    with fits.open(out / "xdf_stamps.fits") as h:
        hd = h["STAMPS"].header
        assert (hd["ORIGIN"], hd["XDFSHA"], hd["GAMMA"], hd["EFFFWHM"], hd["PSUNC"]) == (
            "lensaudit sources build-xdf", prov["sha256"], round(rep["gamma"], 6),
            round(rep["effective_fwhm_arcsec"], 6), 0.1)
        assert hd["SKIMAGE"] == prov["scikit_image"] and hd["PHOTUTIL"] == rep["provenance"]["photutils"]
    import photutils

    assert rep["provenance"]["photutils"] == photutils.__version__
    assert json.loads((out / "xdf_report.json").read_text())["n_stamps"] == rep["n_stamps"]
    # other settings: another magnitude, colour prior and S/N floor, each honoured
    other = StampLibrary.read(out / "other" / "nested" / "xdf_stamps.fits")
    np.testing.assert_allclose(other.meta["MAG_R"], 24.0, atol=1e-4)
    assert np.median(other.meta["MAG_G"] - other.meta["MAG_R"]) == pytest.approx(0.6, abs=1e-4)
    assert (other.meta["SNR"] >= 60.0).all() and len(other) < len(lib)
    assert low["rejected"]["S/N below the minimum"] > rep["rejected"]["S/N below the minimum"]
    # the first pass's sources grown by 1 pixel, not 3, before they are masked: another background, other detections
    assert low["n_detected"] != rep["n_detected"] and low["settings"]["mask_grow_pix"] == 1


def test_linear_channels_raise_the_dark_artefacts_to_the_sky_floor_and_subtract_a_masked_background():
    from photutils.background import Background2D, MedianBackground
    from scipy.ndimage import binary_dilation

    s = X.XdfSettings(box_pix=8, mask_grow_pix=2)
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:64, 0:64]
    blob = 120 * np.exp(-((xx - 30) ** 2 + (yy - 34) ** 2) / 128.0)
    display = np.clip(rng.normal(20, 3, (64, 64, 3)) + blob[..., None] * [1.0, 0.8, 0.6] + 0.1 * xx[..., None],
                      0, 255).astype(np.uint8)
    display[5, 5] = 0                                              # a dark ringing artefact
    first = ((xx - 30) ** 2 + (yy - 34) ** 2 <= 196).astype(int)  # label 1, and label 2 a faint one
    first[((xx - 50) ** 2 + (yy - 12) ** 2 <= 4)] = 2
    sky = np.array([20.0, 20.0, 20.0])
    lin, n_floor, mask = X.linear_channels(display, sky, 2.0, first, s)
    raw = X.destretch(display, sky, 2.0)
    floor = [np.percentile(raw[..., c][first == 0], 0.5) for c in range(3)]
    assert n_floor == sum(int((raw[..., c] < floor[c]).sum()) for c in range(3)) and n_floor >= 3
    np.testing.assert_array_equal(mask, binary_dilation(first > 0, iterations=2))
    assert mask.sum() > (first > 0).sum()
    for c in range(3):
        clipped = np.maximum(raw[..., c], floor[c])
        bkg = Background2D(clipped, (8, 8), filter_size=(3, 3), bkg_estimator=MedianBackground(), mask=mask,
                           exclude_percentile=80.0).background
        np.testing.assert_allclose(lin[..., c], clipped - bkg, rtol=1e-12, atol=1e-9)
        unmasked = Background2D(clipped, (8, 8), filter_size=(3, 3), bkg_estimator=MedianBackground(),
                                exclude_percentile=80.0).background
        assert np.abs(unmasked - bkg).max() > 1.0                  # the mask matters here
    assert lin[..., 0][first > 0].mean() > lin[..., 2][first > 0].mean() > 10 * abs(lin[..., 0][mask == 0].mean())


def test_the_build_detects_on_the_linear_channels_and_measures_the_compact_locus(crop_build):
    from photutils.segmentation import SourceCatalog

    crop, prov, out, rep, _ = crop_build
    s = X.XdfSettings()
    sky = np.asarray(rep["sky_display"])
    _, (d0, seg0) = X.raw_gamma((crop.astype(float) - sky).sum(axis=2), s)
    lin, n_floor, mask = X.linear_channels(crop, sky, rep["gamma"], seg0.data, s)
    assert n_floor == rep["pixels_raised_to_the_sky_floor"]
    d, _, seg = X._segment(lin.sum(axis=2), s, mask=mask)
    cat = SourceCatalog(d, seg)
    assert rep["n_detected"] == seg.n_labels
    locus = np.isin(seg.labels, X._compact_sources(d, seg, fraction=0.1))
    assert rep["compact_fwhm_pix"] == float(np.median(cat.fwhm.value[locus]))
    assert rep["counts_slope_dlogN_dm"] == X.counts_slope(cat.segment_flux)
    # detection on the sum of the three channels, the first pass's sources out of its background
    d1, _, seg1 = X._segment(lin[..., 1] * 3, s, mask=mask)
    d2, _, seg2 = X._segment(lin.sum(axis=2), s)
    assert seg1.n_labels != rep["n_detected"] and seg2.n_labels != rep["n_detected"]


def test_a_segment_is_saturated_when_any_of_its_pixels_reaches_255_in_any_channel():
    display = np.full((4, 6, 3), 100, np.uint8)
    seg = np.array([[1, 1, 0, 2, 2, 0], [1, 1, 0, 2, 2, 0], [0, 0, 0, 0, 0, 0], [4, 4, 0, 5, 5, 5]])
    display[0, 0, 2] = 255                                          # one pixel of 1, in blue only
    display[2, 2] = 255                                             # the sky: no segment
    display[3, 3:5, 1] = 255                                        # two pixels of 5
    display[1, 4, 0] = 254                                          # 2 stays below
    assert X.saturated_segments(display, seg, np.array([1, 2, 4, 5])).tolist() == [True, False, False, True]
    assert X.saturated_segments(display, seg, np.array([5, 1])).tolist() == [True, True]


def test_synthetic_sources_follow_the_stated_counts_positions_and_sizes():
    flux, x, y, sig = X.synthetic_sources(np.random.default_rng(1), 0.27, 20000, 300)
    assert 30.0 <= flux.min() < 30.05 and flux.max() == 3e4 and (flux == 3e4).mean() < 0.02
    # N(>F) / N = (F / 30)^-(0.27 / 0.4): a tenfold flux holds 10^-0.675 = 0.211 of the sources (sd 0.003)
    assert (flux > 300).mean() == pytest.approx(10 ** -0.675, abs=0.012)
    assert (flux > 3000).mean() == pytest.approx(10 ** -1.35, abs=0.006)
    for v in (x, y):
        assert 5.0 <= v.min() < 5.1 and 294.9 < v.max() <= 295.0 and v.mean() == pytest.approx(150.0, abs=2.0)
    assert sig.min() >= 1.0 and sig.max() <= 2.5 and sig.mean() == pytest.approx(1.75, abs=0.01)
    assert not np.array_equal(x, y)


def test_a_synthetic_field_shows_its_sources_and_noise_through_the_stated_stretch():
    # pure noise: sky + 8 sign(N) |N|^(1 / gamma), rounded and clipped to 8 bits
    flat = X.synthetic_field(1.0, n=0, size=300, sky=100.0).astype(float)
    assert flat.mean() == pytest.approx(100.0, abs=0.1) and flat.std() == pytest.approx(8.0, abs=0.1)
    sq = X.synthetic_field(2.0, n=0, size=300, sky=100.0).astype(float)
    assert np.abs(sq - 100).mean() == pytest.approx(8 * 2**0.25 * 1.2254167 / np.sqrt(np.pi), abs=0.1)
    assert X.synthetic_field(1.0, n=0, size=50, sky=250.0).max() == 255
    assert X.synthetic_field(1.0, n=0, size=50, sky=2.0).min() == 0
    assert X.synthetic_field(1.0, n=0, size=50, seed=1).dtype == np.uint8
    # sources: each isolated bright one's light, destretched, is its drawn flux at its drawn place
    img = X.synthetic_field(3.0, n=200, size=700, seed=5).astype(float)
    flux, x, y, sig = X.synthetic_sources(np.random.default_rng(5), 0.27, 200, 700)
    lin = np.sign(img - 12.0) * np.abs((img - 12.0) / 8.0) ** 3
    checked = 0
    for k in range(200):
        others = np.hypot(x - x[k], y - y[k])
        if flux[k] < 500 or np.sort(others)[1] < 30 or min(x[k], y[k]) < 13 or max(x[k], y[k]) > 687:
            continue
        cy, cx = int(y[k]), int(x[k])
        box = lin[cy - 12 : cy + 13, cx - 12 : cx + 13]
        assert box.sum() == pytest.approx(flux[k], rel=0.08, abs=60.0)
        py, px = np.unravel_index(np.argmax(box), box.shape)
        assert abs(cy - 12 + py - y[k]) <= 1.0 and abs(cx - 12 + px - x[k]) <= 1.0
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("image", [np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32),
                                   np.zeros((8, 8), np.uint8)], ids=["four channels", "floats", "grey"])
def test_an_xdf_image_other_than_8_bit_rgb_is_refused(monkeypatch, image):
    from skimage import data

    monkeypatch.setattr(data, "hubble_deep_field", lambda: image)
    with pytest.raises(X.XdfError, match="expected an 8-bit RGB image"):
        X.load_xdf()


def test_the_raw_stretch_solves_for_the_counts_slope_it_is_given():
    img = X.synthetic_field(2.0, n=600, size=400, seed=3).astype(float)
    s = X.XdfSettings()
    g, _ = X.raw_gamma(img - np.median(img), s)
    steeper, _ = X.raw_gamma(img - np.median(img), s, target=0.32)
    assert g == X.raw_gamma(img - np.median(img), s, target=0.27)[0] and steeper < g      # steeper counts: gentler


def test_segment_is_photutils_detection_and_deblending_with_the_stated_settings():
    from astropy.convolution import convolve
    from photutils.background import Background2D, MedianBackground
    from photutils.segmentation import deblend_sources, detect_sources, make_2dgaussian_kernel

    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[0:128, 0:128]
    img = 0.02 * xx + rng.normal(0, 1.0, (128, 128))                  # a gradient under unit noise
    for cy, cx, f, sg in ((20, 20, 400, 2), (60, 30, 900, 3), (64, 37, 500, 2), (100, 100, 300, 1.5),
                          (30, 90, 2000, 4), (90, 40, 150, 1.5), (110, 20, 700, 2.5)):
        img += f / (2 * np.pi * sg * sg) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sg * sg))
    s = X.XdfSettings(box_pix=32)
    mask = np.zeros(img.shape, bool)
    mask[50:75, 20:50] = True
    d, rms, seg = X._segment(img, s, mask=mask)
    bkg = Background2D(img, (32, 32), filter_size=(3, 3), bkg_estimator=MedianBackground(), mask=mask,
                       exclude_percentile=80.0)
    np.testing.assert_allclose(d, img - bkg.background, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rms, bkg.background_rms, rtol=0, atol=1e-12)
    conv = convolve(d, make_2dgaussian_kernel(2.0, size=5))
    want = deblend_sources(conv, detect_sources(conv, 2.5 * bkg.background_rms, n_pixels=10), n_pixels=10,
                           n_levels=32, contrast=0.005, progress_bar=False)
    np.testing.assert_array_equal(seg.data, want.data)
    assert seg.n_labels >= 7                                           # the blended pair at (60, 30), (64, 37) split
    for levels, contrast in ((1, 0.005), (32, 0.5)):                  # the deblending settings honoured
        want2 = deblend_sources(conv, detect_sources(conv, 2.5 * bkg.background_rms, n_pixels=10), n_pixels=10,
                                n_levels=levels, contrast=contrast, progress_bar=False)
        got2 = X._segment(img, X.XdfSettings(box_pix=32, deblend_levels=levels, deblend_contrast=contrast),
                          mask=mask)[2]
        np.testing.assert_array_equal(got2.data, want2.data)
        assert got2.n_labels < seg.n_labels, (levels, contrast)
    with pytest.raises(X.XdfError, match="no source detected"):
        X._segment(rng.normal(0, 1.0, (64, 64)), X.XdfSettings(box_pix=32, detect_sigma=50.0))


def test_the_build_drops_stamps_without_positive_light_in_a_band_and_keeps_faint_positive_ones(crop_build, tmp_path,
                                                                                             monkeypatch):
    """A stamp whose g band sums to zero is dropped and counted; one whose g band sums to 0.5 (linear units) is
    kept; the others are untouched."""
    crop, prov, out, rep, _ = crop_build
    real = X.cut_stamps
    hit = {}

    def doctored(lin, seg_data, labels, cy, cx, s):
        st = real(lin, seg_data, labels, cy, cx, s)
        g = st[:, 0].sum(axis=(1, 2))
        clean = np.array([X.negative_excess(t) is None for t in st])
        i, j = np.flatnonzero((g > 2.0) & clean)[:2]
        st[i, 0] = 0.0                                              # no light in g
        st[j, 0] = np.clip(st[j, 0], 0, None) * 0.5 / np.clip(st[j, 0], 0, None).sum()   # faint light in g
        hit.update(zero=f"{int(round(cx[i])):04d}_{int(round(cy[i])):04d}_{int(labels[i])}",
                   faint=f"{int(round(cx[j])):04d}_{int(round(cy[j])):04d}_{int(labels[j])}")
        return st

    monkeypatch.setattr(X, "load_xdf", lambda: (crop, dict(prov)))
    monkeypatch.setattr(X, "gamma_calibration", lambda s: CAL)
    monkeypatch.setattr(X, "cut_stamps", doctored)
    got = X.build_xdf_library(tmp_path / "lib")
    key = "no positive light in a band"
    assert got["rejected"][key] == rep["rejected"][key] + 1
    assert got["n_stamps"] == rep["n_stamps"] - 1
    ids = set(StampLibrary.read(tmp_path / "lib" / "xdf_stamps.fits").meta["ID"])
    before = set(StampLibrary.read(out / "xdf_stamps.fits").meta["ID"])
    assert before - ids == {f"xdf_{hit['zero']}"} and f"xdf_{hit['faint']}" in ids


def _square_sources(specs, bg_shape=(150, 150)):
    """A field of flat rectangular sources on a +-1 background (1.4826 x median |background| = 1.4826):
    ``specs`` (height, width, S/N), each source at S/N = flux / (1.4826 sqrt(area)) exactly as stated."""
    d = np.ones(bg_shape)
    d[::2, ::2] = d[1::2, 1::2] = -1.0
    seg = np.zeros(bg_shape, int)
    for k, (h, w, snr) in enumerate(specs):
        y, x = 6 + 26 * (k // 5), 6 + 26 * (k % 5)
        d[y : y + h, x : x + w] = snr * 1.4826 * np.sqrt(h * w) / (h * w)
        seg[y : y + h, x : x + w] = k + 1
    return d, seg


def test_compact_sources_thresholds_by_hand():
    """Twenty sources above S/N 20 (19 at S/N 40 of growing size, one just above 20 at S/N 20.5), one at S/N
    exactly 20 (not above: left out), one at S/N 10 over four pixels: the bright ones and their size cut."""
    from photutils.segmentation import SegmentationImage, SourceCatalog

    specs = [(1, 1, 20.0), (2, 2, 10.0)] + [(1, k, 40.0) for k in range(2, 21)] + [(1, 21, 20.5)]
    d, seg = _square_sources(specs)
    s = SegmentationImage(seg)
    snr = SourceCatalog(d, s).segment_flux / (1.4826 * np.median(np.abs(d[seg == 0])) * np.sqrt(SourceCatalog(d, s)
                                                                                               .area.value))
    assert snr[0] == 20.0 and snr[-1] > 20.0                    # the stated S/N, to the last bit
    size = SourceCatalog(d, s).semimajor_axis.value
    order = np.argsort(size[2:]) + 3                            # the 20 bright labels, smallest first
    assert list(order) == list(range(3, 23))
    np.testing.assert_array_equal(X._compact_sources(d, s), order[:6])                   # 30th percentile: 5.7 of 19
    np.testing.assert_array_equal(X._compact_sources(d, s, fraction=0.0), [3])           # the smallest, included
    np.testing.assert_array_equal(X._compact_sources(d, s, fraction=0.525), order[:10])  # 9.975 of 19: not the 11th
    np.testing.assert_array_equal(X._compact_sources(d, s, fraction=1.0), order)
    with pytest.raises(X.XdfError, match=r"too few bright sources \(19\)"):              # S/N 20.5 no longer bright
        X._compact_sources(d, s, snr_min=20.6)


def test_a_background_box_more_than_80_percent_masked_is_left_out():
    """photutils' exclude_percentile: a 32-pixel box with 80.5 percent of its pixels masked takes its background
    from its neighbours (not from its own 200 unmasked pixels); the detection image is subtracted the same way."""
    from photutils.background import Background2D, MedianBackground

    img = np.random.default_rng(3).normal(0, 0.1, (128, 128))
    img[100:106, 110:116] += 50.0                               # a source to detect
    box = np.zeros((32, 32), bool)
    box.ravel()[:824] = True                                    # 824 of 1024 pixels: 80.5 percent
    mask = np.zeros((128, 128), bool)
    mask[:, :96] = np.tile(box, (4, 3))                         # three of four columns of boxes
    img[:, :96][~mask[:, :96]] += 10.0                          # their unmasked pixels are bright
    s = X.XdfSettings(box_pix=32)
    bkg = X._background(img, s, mask)
    assert np.abs(bkg).max() < 1.0                              # from the fourth column
    looser = Background2D(img, (32, 32), filter_size=(3, 3), bkg_estimator=MedianBackground(), mask=mask,
                          exclude_percentile=81.0).background
    assert looser[:, :32].min() > 5.0                           # the test can tell the difference
    d, _, _ = X._segment(img, s, mask=mask)
    np.testing.assert_allclose(d, img - bkg)


def test_a_synthetic_field_draws_each_source_over_25_pixels_and_adds_overlaps(monkeypatch):
    """Each source is drawn over the 25 x 25 pixels about its pixel (12 before, 12 after), clipped at the edges,
    and overlapping sources add; the defaults are 1,500 sources on 700 x 700 pixels."""
    def one(*srcs):
        arr = np.array(srcs, float).T
        monkeypatch.setattr(X, "synthetic_sources", lambda rng, slope, n, size: tuple(arr))
        return X.synthetic_field(4.0, display_scale=0.5, seed=1).astype(float)

    img = one((1e12, 350.4, 350.6, 2.5), (1e12, 5.0, 5.0, 2.5))
    lit = img > 16                                               # noise alone: 12 +- 0.5 |N|^(1/4), under 14
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    np.testing.assert_array_equal(rows, np.r_[0:18, 338:363])    # rows 0-17 (edge source), 338-362
    np.testing.assert_array_equal(cols, np.r_[0:18, 338:363])
    assert img.shape == (700, 700)
    two = one((5e11, 350.4, 350.6, 2.5), (5e11, 350.4, 350.6, 2.5))
    np.testing.assert_array_equal(two, one((1e12, 350.4, 350.6, 2.5)))
    monkeypatch.undo()
    np.testing.assert_array_equal(X.synthetic_field(2.0, seed=3), X.synthetic_field(2.0, n=1500, size=700, seed=3))


def test_gaussian_random_field_equals_its_definition_with_the_frequency_grid_cached():
    """|k|^2 computed once per grid size (read-only) gives the field of the plain definition, bit for bit."""
    from lensaudit.sources.procedural import _k_squared, gaussian_random_field

    def definition(n, rng, slope=3.0, k0=3.0):
        k = np.fft.fftfreq(n) * n
        kk = np.hypot(*np.meshgrid(k, k))
        amp = (kk**2 + k0**2) ** (-slope / 4)
        amp[0, 0] = 0.0
        f = np.fft.ifft2(amp * (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n)))).real
        return (f - f.mean()) / (f.std() + 1e-30)

    for n, slope, k0 in ((96, 3.0, 7.5), (96, 2.5, 4.0), (33, 3.0, 3.0), (96, 3.0, 0.8)):
        got = gaussian_random_field(n, np.random.default_rng(n + int(10 * k0)), slope=slope, k0=k0)
        assert np.array_equal(got, definition(n, np.random.default_rng(n + int(10 * k0)), slope, k0))
    assert not _k_squared(96).flags.writeable and _k_squared(96) is _k_squared(96)

"""Mock DR10 survey: schema of its sweeps, the service, consistency, truth, rates, determinism,
and the real-data check against the real DR10 sample cutouts."""

from __future__ import annotations

import hashlib
import os
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from lensaudit.mock.check import real_data_check
from lensaudit.mock.config import MockConfig
from lensaudit.mock.layout import MockSurvey, SurveyError, tan_deproject, tan_project
from lensaudit.mock.render import load_renderer
from lensaudit.mock.server import CutoutRequest, serve_in_thread
from lensaudit.mock.survey import build_survey
from lensaudit.survey.columns import SWEEP_SCHEMA, check_sweep_columns
from lensaudit.survey.cutout_fits import read_cutout_fits


@pytest.fixture(scope="module")
def survey_dir(mock_survey_dir):
    return mock_survey_dir


@pytest.fixture(scope="module")
def renderer(survey_dir):
    return load_renderer(survey_dir)


def _req(ra, dec, size=101):
    return CutoutRequest(ra, dec, size, size, 0.262, "grz", "ls-dr10", False)


def test_sweeps_pass_independent_schema_check(survey_dir):
    files = sorted((survey_dir / "sweeps").glob("sweep-*.fits"))
    assert files
    for f in files:
        with fits.open(f) as h:
            assert h[1].header["EXTNAME"] == "SWEEP"
            assert {"RAMIN", "RAMAX", "DECMIN", "DECMAX"} <= set(h[0].header)
            cols = h[1].columns
            assert all(c.name == c.name.upper() for c in cols)
            assert h[1].data.dtype["RA"].byteorder == ">"  # FITS big-endian on disk
            fmt = {c.name: c.format for c in cols}
            assert fmt["TYPE"] == "3A" and fmt["BRICKNAME"] == "8A" and fmt["DCHISQ"] == "5E"
            assert fmt["NOBS_Z"] == "I" and fmt["MASKBITS"] == "J" and fmt["FLUX_R"] == "E"
            units = {c.name: c.unit for c in cols}
            assert units["FLUX_R"] == "nanomaggy" and units["PSFDEPTH_R"] == "1/nanomaggy^2"
            assert units["SHAPE_R"] == "arcsec" and units["RA"] == "deg"
            ramin, ramax, dmin, dmax = (h[0].header[k] for k in ("RAMIN", "RAMAX", "DECMIN", "DECMAX"))
            d = h[1].data
            assert (d["RA"] >= ramin).all() and (d["RA"] < ramax).all() and (d["DEC"] >= dmin).all()
        t = Table.read(f, hdu="SWEEP")
        check_sweep_columns({c: t[c].dtype for c in t.colnames}, required=tuple(SWEEP_SCHEMA), source=f.name)
        types = set(np.char.strip(t["TYPE"].astype(str)))
        assert types <= {"PSF", "REX", "EXP", "DEV", "SER"} and {"PSF", "REX", "DEV"} <= types
        assert np.mean(t["PSFDEPTH_G"]) > np.mean(t["PSFDEPTH_Z"])  # g deeper than z (by ~1.4 mag)


def test_conditions_follow_real_band_relations(reference):
    from lensaudit.mock.conditions import draw_brick_conditions

    c = draw_brick_conditions(3000, reference, np.random.default_rng(0))
    assert (c.psfsize_g / c.psfsize_r).mean() > 1.05  # g broader than r
    assert (c.psfsize_z / c.psfsize_r).mean() < 1.0  # z sharper
    assert (c.psfdepth_mag_g - c.psfdepth_mag_r).mean() == pytest.approx(0.40, abs=0.05)  # g deeper
    assert (c.psfdepth_mag_z - c.psfdepth_mag_r).mean() == pytest.approx(-1.02, abs=0.05)  # z shallower
    real = pd.read_csv(reference.path("dr10_region_conditions.csv"))
    real = real[(real.median_psf_r_arcsec > 0) & real.dec_center_deg.between(-18, 32)]
    assert c.psfsize_r.median() == pytest.approx(real.median_psf_r_arcsec.median(), rel=0.05)


def test_candidates_real_format_and_truth_positions(survey_dir, reference):
    cand = pd.read_csv(survey_dir / "candidates.csv", dtype={"zlens": str})
    real = pd.read_csv(reference.path("desi_lens_candidates.csv"), nrows=5)
    assert list(cand.columns) == list(real.columns)
    assert set(cand.grading) == {"confident", "probable"}
    assert cand.name.str.match(r"^DESI-\d{3}\.\d{4}[+-]\d{2}\.\d{4}$").all()
    truth = MockSurvey.load(survey_dir).truth()
    listed = truth[truth.in_candidates]
    assert len(listed) == len(cand)
    # every candidate is within 1 arcsec of a truth-table object, and truth says what it is
    d = np.hypot((cand.ra.to_numpy()[:, None] - listed.ra.to_numpy()[None]) * np.cos(np.deg2rad(cand.dec.to_numpy()))[:, None],
                 cand.dec.to_numpy()[:, None] - listed.dec.to_numpy()[None]) * 3600
    assert (d.min(axis=1) < 1.0).all()
    tier_a = listed[listed.grading == "confident"]
    assert (tier_a.kind == "lens").all() and len(tier_a) > 0
    tier_b = listed[listed.grading == "probable"]
    false_frac = (tier_b.kind != "lens").mean()
    expected = MockConfig().grading.tier_b_false_fraction
    assert abs(false_frac - expected) <= 1.0 / len(tier_b) + 1e-9  # the grader adds exactly this share
    lenses = truth[truth.kind == "lens"]
    assert lenses.theta_e.between(0.5, 3.0).all() and lenses.gamma.between(1.6, 2.4).all()
    assert lenses.lens_q.between(0.3, 0.99).all() and lenses.z_source.between(1.0, 3.0).all()
    # catalogued lenses are the detectable ones: the grader sees S/N
    assert tier_a.arc_snr.median() > lenses[~lenses.in_candidates].arc_snr.median()


def test_same_sky_pixel_same_value_in_overlapping_cutouts(renderer):
    ra0, dec0 = renderer.ra0 + 0.01, renderer.dec0 + 0.01
    gx, gy = tan_project(ra0, dec0, renderer.ra0, renderer.dec0)
    gx, gy = np.round(gx) + 0.2, np.round(gy) - 0.3  # a sub-pixel offset like any real request
    ra_a, dec_a = tan_deproject(gx, gy, renderer.ra0, renderer.dec0)
    ra_b, dec_b = tan_deproject(gx + 17, gy - 9, renderer.ra0, renderer.dec0)  # 17 px west, 9 px south
    a, _ = renderer(_req(float(ra_a), float(dec_a)))
    b, _ = renderer(_req(float(ra_b), float(dec_b)))
    # pixel (x, y) of a is pixel (x - 17, y + 9) of b (array index [band, y, x]; 6-pixel edges skipped), to within
    # a thousandth of a pixel: each cutout is resampled onto its own TAN grid (tangent point at its centre),
    # as the real service does, and two such grids 17 pixels apart differ at that level across a stamp
    np.testing.assert_allclose(a[:, 6 : 101 - 9 - 6, 17 + 6 : 101 - 6], b[:, 9 + 6 : 101 - 6, 6 : 101 - 17 - 6],
                               rtol=0, atol=2e-5)
    assert np.abs(a).max() > 100 * 2e-5
    assert not np.allclose(a, b)


def test_service_answers_real_url_with_real_fits(renderer, survey_dir):
    lens = renderer.src[renderer.src.kind == "lens"].iloc[0]
    with serve_in_thread(renderer) as srv:
        r = httpx.get(srv.url, params={"ra": lens.ra, "dec": lens.dec, "size": 101, "layer": "ls-dr10",
                                       "pixscale": 0.262, "bands": "grz"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/fits"
        with fits.open(__import__("io").BytesIO(r.content)) as h:
            assert h[0].data.shape == (3, 101, 101) and h[0].data.dtype.kind == "f" and h[0].data.dtype.itemsize == 4
            assert [h[0].header[f"BAND{i}"] for i in range(3)] == ["g", "r", "z"]
            w = WCS(h[0].header, naxis=2)
            assert w.pixel_to_world_values(50, 50) == pytest.approx((lens.ra, lens.dec))
        cube, _ = read_cutout_fits(r.content, 101)
        # the lens host is at the centre: the central pixels are far above the sky
        assert cube[1, 48:53, 48:53].mean() > 20 * np.median(np.abs(cube[1]))
        # outside the footprint: the real service's NoOverlapError -> HTTP 500
        r = httpx.get(srv.url, params={"ra": lens.ra + 5, "dec": lens.dec, "size": 101, "layer": "ls-dr10"})
        assert r.status_code == 500
        # partly outside: zeros beyond the edge, data inside
        fp = renderer.fp
        r = httpx.get(srv.url, params={"ra": fp["ra_min"], "dec": (fp["dec_min"] + fp["dec_max"]) / 2, "size": 101,
                                       "layer": "ls-dr10", "bands": "grz"})
        cube, _ = read_cutout_fits(r.content, 101)
        assert (cube[:, :, -20:] == 0).all() and (cube[:, :, :20] != 0).all()  # east (left) of ra_min is empty


def test_determinism(tmp_path, reference):
    cfg = MockConfig(area_deg2=0.25, seed=11)
    build_survey(cfg, tmp_path / "a", reference)
    build_survey(cfg, tmp_path / "b", reference)
    for rel in ("candidates.csv", "truth/truth.parquet", "internal/sources.parquet"):
        ha = hashlib.sha256((tmp_path / "a" / rel).read_bytes()).hexdigest()
        hb = hashlib.sha256((tmp_path / "b" / rel).read_bytes()).hexdigest()
        assert ha == hb, rel
    ta = Table.read(next((tmp_path / "a" / "sweeps").glob("*.fits")), hdu=1)
    tb = Table.read(next((tmp_path / "b" / "sweeps").glob("*.fits")), hdu=1)
    assert np.array_equal(ta["FLUX_R"], tb["FLUX_R"])
    ra, rb = load_renderer(tmp_path / "a"), load_renderer(tmp_path / "b")
    s = ra.src.iloc[10]
    np.testing.assert_array_equal(ra(_req(s.ra, s.dec))[0], rb(_req(s.ra, s.dec))[0])
    other = build_survey(MockConfig(area_deg2=0.25, seed=12), tmp_path / "c", reference)
    assert other["n_sources"] != len(ra.src)


def test_bad_input(tmp_path, reference):
    from lensaudit.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match="area_deg2"):
        validate_config({"area_deg2": 100}, MockConfig)
    with pytest.raises(ConfigError, match="seed"):
        validate_config({"seed": -1}, MockConfig)
    with pytest.raises(ConfigError, match="rate_per_eligible_red"):
        validate_config({"lenses": {"rate_per_eligible_red": -0.01}}, MockConfig)
    with pytest.raises(ConfigError, match="rate_per_eligible_red"):
        validate_config({"lenses": {"rate_per_eligible_red": 0.2}}, MockConfig)  # above 1 in 25
    with pytest.raises(ConfigError, match="slope"):
        validate_config({"lenses": {"slope": {"mean": 2.0, "sd": 0.1, "lo": 0.8, "hi": 2.4}}}, MockConfig)
    with pytest.raises(ConfigError, match=r"q range"):
        validate_config({"lenses": {"axis_ratio": {"mean": 0.7, "sd": 0.1, "lo": 0.3, "hi": 1.2}}}, MockConfig)
    with pytest.raises(ConfigError, match="merger_per_deg2"):
        validate_config({"confusers": {"merger_per_deg2": -1}}, MockConfig)
    with pytest.raises(ConfigError, match="spiral and bar"):
        validate_config({"confusers": {"spiral_fraction_of_discs": 0.8, "bar_fraction_of_discs": 0.4}}, MockConfig)
    # an area too small for any lens: one clear error, nothing written
    tiny = MockConfig(area_deg2=0.0625, seed=1, lenses={"rate_per_eligible_red": 0.001})
    with pytest.raises(SurveyError, match="gives no lens"):
        build_survey(tiny, tmp_path / "tiny", reference)
    assert not (tmp_path / "tiny").exists()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "survey.json").write_text("{}")
    with pytest.raises(SurveyError, match="incomplete: missing"):
        MockSurvey.load(tmp_path / "half")


def test_real_data_check_passes(renderer, sample_npz):
    res = real_data_check(renderer, renderer.src, sample_npz, n_mock=25)
    ratios = np.array(res["ratio_mad"])
    assert ((ratios > 1 / 1.5) & (ratios < 1.5)).all(), res
    assert res["passed"]
    assert 0.7 < res["ratio_fwhm_r"] < 1.4


def test_projection_matches_astropy_wcs():
    from lensaudit.survey.geometry import cutout_wcs

    w = cutout_wcs(150.0, 2.0, 1)  # CRPIX 1 (1-based) -> pixel 0 at the tangent point
    ra = np.array([150.0, 150.1, 149.8])
    dec = np.array([2.0, 2.2, 1.7])
    x, y = tan_project(ra, dec, 150.0, 2.0)
    px, py = w.world_to_pixel_values(ra, dec)
    np.testing.assert_allclose(x, px, atol=1e-6)
    np.testing.assert_allclose(y, py, atol=1e-6)
    r2, d2 = tan_deproject(x, y, 150.0, 2.0)
    np.testing.assert_allclose(r2, ra, atol=1e-10)
    np.testing.assert_allclose(d2, dec, atol=1e-10)


def test_real_data_check_matches_depth_and_can_fail(renderer, sample_npz):
    res = real_data_check(renderer, renderer.src, sample_npz, n_mock=12)
    from lensaudit.mock.check import nobs_tolerance

    cell_nobs = np.unique(renderer.survey.exposure[:, 2])
    for real_nobs, mock_nobs in res["nobs_z_real_vs_mock"]:
        # partners come from the exposure-map cells near in z exposure count
        assert abs(mock_nobs - real_nobs) <= max(np.abs(cell_nobs - real_nobs).min(), nobs_tolerance(real_nobs))

    def noisy(req):  # a mock three times noisier than it should be must fail the check
        cube, ivar = renderer(req)
        rng = np.random.default_rng(0)
        return cube + 2.8 * np.array(res["mock_mad"])[:, None, None] * 1.4826 * rng.standard_normal(cube.shape), ivar

    noisy.survey = renderer.survey
    bad = real_data_check(noisy, renderer.src, sample_npz, n_mock=12)
    assert not bad["passed"] and min(bad["ratio_mad"]) > 1.5


def test_sweep_cells_agree_with_the_renderer(renderer, survey_dir):
    """NOBS in the sweeps is the exposure count of the renderer's cell at each object's position."""
    from lensaudit.survey.sweepio import read_sweep

    sw = pd.concat([read_sweep(f) for f in sorted((survey_dir / "sweeps").glob("*.fits"))], ignore_index=True)
    b, cx, cy = renderer.brick_cell_of(sw["RA"].to_numpy(), sw["DEC"].to_numpy())
    assert (b >= 0).all()
    for k, band in enumerate("GRZ"):
        np.testing.assert_array_equal(sw[f"NOBS_{band}"].to_numpy(), renderer.survey.exposure[b, k, cy, cx])
    # exposure counts vary inside a brick
    per_brick = sw.assign(b=b).groupby("b")["NOBS_Z"].nunique()
    assert (per_brick > 1).mean() > 0.8


def test_mock_writes_a_stamp_library_of_its_own_sources_never_its_lenses(survey_dir):
    from lensaudit.inject import StampLibrary

    lib = StampLibrary.read(survey_dir / "stamp_library" / "stamps.fits")
    assert len(lib) >= 100 and lib.pixscale == pytest.approx(0.03)
    lenses = pd.read_parquet(survey_dir / "internal" / "lenses.parquet")
    # drawn under their own seed stream: no stamp repeats a true lens's source size or redshift
    assert not np.isin(np.round(lib.meta["RE_INTRINSIC"], 9), np.round(lenses["src_re"], 9)).any()
    assert not np.isin(np.round(lib.meta["Z"], 9), np.round(lenses["z_source"], 9)).any()
    # resolved, bright in the deep imaging: half-light radii track the generator's radii
    ratio = lib.r_half / lib.meta["RE_INTRINSIC"].to_numpy()
    assert 0.7 < np.median(ratio) < 2.0
    assert lib.meta["MAG_R"].between(19.5, 23.5).all()


def test_compiled_pixel_kernels_equal_the_numpy_definitions(renderer):
    """The renderer's fast paths (numba noise and brick/cell map, PSF spectrum on the layer's FFT grid) give the
    numbers of the reference functions they replace."""
    from scipy.signal import fftconvolve

    from lensaudit.mock.kernels import deposit, deposit_reference, normal_grid, pixel_map_grid
    from lensaudit.mock.layout import CELLS, brick_cell
    from lensaudit.mock.render import PSF_HALF, hashed_normal3
    from lensaudit.survey.constants import BRICK_SIZE_DEG, PIXEL_SCALE_ARCSEC

    x0, y0, h, w = -1730, 2405, 57, 83                 # negative pixel indices too (hash of int64 -> uint64)
    yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w]
    np.testing.assert_allclose(normal_grid(x0, y0, h, w, 12345), hashed_normal3(xx, yy, 12345), rtol=1e-13,
                               atol=1e-13)
    assert not np.allclose(normal_grid(x0, y0, h, w, 12346), hashed_normal3(xx, yy, 12345))
    r = renderer
    for gx0, gy0 in ((x0, y0), (int(r._gx[0]) - 60, int(r._gy[0]) - 30), (-10**5, 10**5)):   # in, at and off the edge
        yy, xx = np.mgrid[gy0 : gy0 + h, gx0 : gx0 + w]
        ref = brick_cell(*tan_deproject(xx.ravel(), yy.ravel(), r.ra0, r.dec0), r.fp, r._nside, CELLS)
        got = pixel_map_grid(gx0, gy0, h, w, r.ra0, r.dec0, r.fp, r._nside, CELLS, PIXEL_SCALE_ARCSEC, BRICK_SIZE_DEG)
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_array_equal(a, b.reshape(h, w))
    assert (got[0] == -1).all()
    rng = np.random.default_rng(4)
    x, y, f = rng.uniform(-2, 32, 500), rng.uniform(-2, 22, 500), rng.exponential(1.0, (3, 500))
    a, b = np.zeros((3, 20, 30)), np.zeros((3, 20, 30))
    deposit(a, x, y, f)
    deposit_reference(b, x, y, f)
    assert np.array_equal(a, b) and a.sum() > 0.5 * f.sum()       # the same sums in the same order
    deposit(a, np.array([3.25]), np.array([4.5]), np.ones((3, 1)))
    assert not np.array_equal(a, b)
    e = PSF_HALF
    layer = np.random.default_rng(2).exponential(1.0, (3, 2 * e + 71, 2 * e + 64))
    for brick in (0, 3):
        ref = fftconvolve(layer, r.psf3(brick), mode="same", axes=(1, 2))[:, e:-e, e:-e]
        np.testing.assert_allclose(r.convolve_psf(layer, brick), ref, rtol=1e-12, atol=1e-12 * ref.max())
    assert not np.allclose(r.convolve_psf(layer, 0), fftconvolve(layer[:, ::-1], r.psf3(0), mode="same",
                                                                  axes=(1, 2))[:, e:-e, e:-e])


def test_pixel_map_runs_equal_the_per_pixel_definition_across_bricks_cells_and_the_meridian(renderer):
    """The brick/cell map finds runs of one cell per row by bisection; it must equal the per-pixel numpy definition
    on regions that straddle brick corners, cell edges, the projection's central meridian (x = 0, where Dec turns)
    and the footprint's edge, with no pixel different."""
    from lensaudit.mock.kernels import pixel_map_grid
    from lensaudit.mock.layout import CELLS, brick_cell
    from lensaudit.survey.constants import BRICK_SIZE_DEG, PIXEL_SCALE_ARCSEC

    r = renderer
    b = r.survey.bricks
    px, py = tan_project(b.ra1.to_numpy(), b.dec1.to_numpy(), r.ra0, r.dec0)
    cx, cy = tan_project(b.ra1.to_numpy() + BRICK_SIZE_DEG / CELLS, b.dec1.to_numpy() + BRICK_SIZE_DEG / CELLS,
                         r.ra0, r.dec0)
    starts = [(int(x) - 60, int(y) - 45) for x, y in zip(np.r_[px, cx], np.r_[py, cy], strict=True)]
    starts += [(-70, int(py[0]) - 30), (-3, -3), (-151, 0)]          # across x = 0 (and a region ending at it)
    n_runs = 0
    for gx0, gy0 in starts:
        h, w = 131, 151
        yy, xx = np.mgrid[gy0 : gy0 + h, gx0 : gx0 + w]
        ref = brick_cell(*tan_deproject(xx.ravel(), yy.ravel(), r.ra0, r.dec0), r.fp, r._nside, CELLS)
        got = pixel_map_grid(gx0, gy0, h, w, r.ra0, r.dec0, r.fp, r._nside, CELLS, PIXEL_SCALE_ARCSEC, BRICK_SIZE_DEG)
        for a, c in zip(got, ref, strict=True):
            np.testing.assert_array_equal(a, c.reshape(h, w))
        n_runs += int((np.diff(got[1], axis=1) != 0).sum() + (np.diff(got[2], axis=1) != 0).sum())
    assert n_runs > 2 * len(b)             # the regions do cross cell edges along their rows


def test_compiled_exposure_noise_and_source_sampling_equal_their_definitions(renderer):
    """One-pass kernels against the numpy/scipy operations they replace, bit for bit: the exposure and sigma maps,
    the pixel noise, and the source plane's bilinear sampling (scipy's map_coordinates, edges and non-finite
    positions included)."""
    from scipy.ndimage import map_coordinates

    from lensaudit.mock.kernels import add_pixel_noise, normal_grid
    from lensaudit.sources.kernels import bilinear_planes

    r = renderer
    x0, y0 = int(tan_project(r.survey.bricks.ra1.iloc[5], r.survey.bricks.dec1.iloc[5], r.ra0, r.dec0)[0]) - 50, 40
    bidx, cx, cy = r.pixel_map_region(x0, y0, 97, 113)
    bidx[:3, :7] = -1                                               # some pixels off the footprint
    nobs, sig = r.exposure_maps(bidx, cx, cy)
    assert np.array_equal(nobs, r.nobs_map(bidx, cx, cy)) and np.array_equal(sig, r.sigma_map(bidx, cx, cy))
    assert len(np.unique(sig[0][bidx >= 0])) > 1                   # several cells, several sigmas
    img = np.random.default_rng(3).normal(0.0, 0.05, (3, 97, 113)) + 0.02
    sky = r._sky[:, None, None]
    ref = np.where(bidx[None] >= 0, img + np.sqrt(sig**2 * (1.0 + np.clip(img, 0, None) / sky))
                   * normal_grid(x0, y0, 97, 113, r.noise_key), 0.0)
    assert np.array_equal(add_pixel_noise(img, sig, bidx, x0, y0, r.noise_key, r._sky), ref)
    assert not np.array_equal(add_pixel_noise(img, sig, bidx, x0, y0, r.noise_key + 1, r._sky), ref)

    rng = np.random.default_rng(0)
    image = rng.exponential(1.0, (3, 40, 40))
    row, col = rng.uniform(-2, 41, 20000), rng.uniform(-2, 41, 20000)
    row[:30], col[30:60], row[60:70], col[70] = np.round(row[:30]), 39.0, 0.0, np.nan
    ref = np.stack([map_coordinates(p, np.stack([row, col]), order=1, mode="constant", cval=0.0) for p in image])
    got = bilinear_planes(image, row, col)
    assert np.array_equal(got, ref) and (got[:, 70] == 0).all() and (got != 0).mean() > 0.8
    with pytest.raises(ValueError, match="row and col differ"):
        bilinear_planes(image, row, col[:5])
    with pytest.raises(ValueError, match="planes, rows, columns"):
        bilinear_planes(image[0], row, col)


def test_faint_background_and_artefacts_equal_the_per_cell_loops(renderer):
    """The faint background (per-cell draws, then one pass over all cells' galaxies) and the cosmic rays and bleed
    trails (keys of shallow cells, bleeders near the stamp) give the layers and images of the plain per-cell and
    per-star loops they replace, bit for bit, on regions with shallow cells and bleeding stars."""
    from lensaudit.mock.kernels import deposit
    from lensaudit.mock.layout import CELLS
    from lensaudit.mock.render import FAINT_CELL, FAINT_NORM, FAINT_SLOPE
    from lensaudit.sources.procedural import colour_weights
    from lensaudit.survey.constants import BRICK_SIZE_DEG, MAG_ZEROPOINT, PIXEL_SCALE_ARCSEC
    from lensaudit.utils.seeds import rng as seed_stream

    r = renderer

    def faint_reference(layers, x0, y0, h, w, e):
        lo, hi = r.catalog_limit, r.faint_limit
        per = FAINT_NORM / (FAINT_SLOPE * np.log(10)) * (10 ** (FAINT_SLOPE * (hi - 24)) - 10 ** (FAINT_SLOPE * (lo - 24)))
        lam = per * (FAINT_CELL * PIXEL_SCALE_ARCSEC / 3600) ** 2
        for cy in range(int(np.floor((y0 - e) / FAINT_CELL)), int(np.floor((y0 + h + e) / FAINT_CELL)) + 1):
            for cx in range(int(np.floor((x0 - e) / FAINT_CELL)), int(np.floor((x0 + w + e) / FAINT_CELL)) + 1):
                g = seed_stream(r.seed, "mock.faint", cx + 2**20, cy + 2**20)
                n = g.poisson(lam)
                fx, fy = cx * FAINT_CELL + g.random(n) * FAINT_CELL, cy * FAINT_CELL + g.random(n) * FAINT_CELL
                a, b = 10 ** (FAINT_SLOPE * lo), 10 ** (FAINT_SLOPE * hi)
                mag = np.log10(a + g.random(n) * (b - a)) / FAINT_SLOPE
                flux = 10 ** (-0.4 * (mag - MAG_ZEROPOINT)) * colour_weights(g.normal(0.45, 0.3, n), g.normal(0.35, 0.3, n))
                keep = (fx > x0 - e) & (fx < x0 + w + e) & (fy > y0 - e) & (fy < y0 + h + e)
                br = r.brick_of(*tan_deproject(fx[keep], fy[keep], r.ra0, r.dec0))
                for brick in np.unique(br[br >= 0]):
                    sel = br == brick
                    layer = layers.setdefault(int(brick), np.zeros((3, h + 2 * e, w + 2 * e)))
                    deposit(layer, fx[keep][sel] - (x0 - e), fy[keep][sel] - (y0 - e), flux[:, keep][:, sel])

    def after_psf_reference(img, x0, y0, bidx, cx, cy, sig):
        h, w = img.shape[1:]
        nobs = r.nobs_map(bidx, cx, cy)
        keys = set(zip(bidx[nobs.min(0) <= 2].ravel().tolist(), cx[nobs.min(0) <= 2].ravel().tolist(),
                       cy[nobs.min(0) <= 2].ravel().tolist(), strict=True))
        for brick, ccx, ccy in keys:
            for band in range(3):
                if brick < 0 or r._cells[brick, band, ccy, ccx] > 2:
                    continue
                g = seed_stream(r.seed, "mock.cosmic_rays", int(brick), band, int(ccy * CELLS + ccx))
                n = g.poisson(r.cr_per_deg2 * (BRICK_SIZE_DEG / CELLS) ** 2)
                if not n:
                    continue
                b = r.survey.bricks.iloc[int(brick)]
                ra = b.ra1 + (ccx + g.random(n)) * BRICK_SIZE_DEG / CELLS
                dec = b.dec1 + (ccy + g.random(n)) * BRICK_SIZE_DEG / CELLS
                px, py = tan_project(ra, dec, r.ra0, r.dec0)
                for x, y, a in zip(np.round(px).astype(int) - x0, np.round(py).astype(int) - y0, g.uniform(10, 40, n),
                                   strict=True):
                    if 0 <= y < h and 0 <= x < w:
                        img[band, y, x] += a * max(sig[band, y, x], 1e-6)
        for k in r._bleeders:
            gx, gy = r._gx[k] - x0, r._gy[k] - y0
            length = 8.0 * 10 ** (0.4 * (r.bleed_mag - r._cols["rmag"][k]))
            if -2 <= gx < w + 2 and -length <= gy < h + length and 0 <= int(round(gx)) < w:
                rows = np.arange(max(0, int(gy - length)), min(h, int(gy + length) + 1))
                img[:, rows, int(round(gx))] += r._flux[k][:, None] * 2e-3 / (1 + np.abs(rows - gy) / length)[None]

    assert r.cr_per_deg2 > 0 and len(r._bleeders) > 0 and r.faint_limit > r.catalog_limit
    shallow = np.argwhere(r._cells.min(1) <= 2)[:6]
    b = r.survey.bricks
    centres = [tan_project(b.ra1.iloc[i] + (c + 0.5) * BRICK_SIZE_DEG / CELLS, b.dec1.iloc[i] + (rr + 0.5) * BRICK_SIZE_DEG
                           / CELLS, r.ra0, r.dec0) for i, rr, c in shallow]
    centres += [(r._gx[k], r._gy[k] + 20) for k in r._bleeders[:6]]
    hits = 0
    for gx, gy in centres:
        x0, y0, h, w, e = int(gx) - 55, int(gy) - 55, 111, 111, 20
        fast, slow = {}, {}
        r._paint_faint(fast, x0, y0, h, w, e)
        faint_reference(slow, x0, y0, h, w, e)
        assert fast.keys() == slow.keys() and all(np.array_equal(fast[k], slow[k]) for k in fast)
        bidx, cx, cy = r.pixel_map_region(x0, y0, h, w)
        nobs, sig = r.exposure_maps(bidx, cx, cy)
        img = np.random.default_rng(1).normal(0, 0.01, (3, h, w))
        a, c = img.copy(), img.copy()
        r._paint_after_psf(a, x0, y0, bidx, cx, cy, nobs, sig)
        after_psf_reference(c, x0, y0, bidx, cx, cy, sig)
        assert np.array_equal(a, c)
        hits += int(not np.array_equal(a, img))
    assert hits >= 6                      # cosmic rays or bleed trails were painted in most of these regions


def test_pixel_map_finds_a_cell_edge_a_row_crosses_twice(renderer):
    """Dec along a row of the TAN grid peaks on the central meridian (x = 0): a cell edge placed between a row's
    Dec at x = 0 and at its ends is crossed twice (in, then out). The bisection must split rows at the meridian
    and compare cell rows too, or it fills the row with its ends' cell."""
    from lensaudit.mock.kernels import pixel_map_grid
    from lensaudit.mock.layout import CELLS, brick_cell
    from lensaudit.survey.constants import BRICK_SIZE_DEG, PIXEL_SCALE_ARCSEC

    r = renderer
    y = 9000.0                                             # far from the tangent point: a curved row of sky
    a_mid, d_mid = tan_deproject(np.array([0.0]), np.array([y]), r.ra0, r.dec0)
    _, d_end = tan_deproject(np.array([80.0]), np.array([y]), r.ra0, r.dec0)
    assert d_mid[0] > d_end[0]
    edge = 0.5 * (d_mid[0] + d_end[0])
    cell = BRICK_SIZE_DEG / CELLS
    # a cell-row edge inside a brick at `edge`; the row in the middle of one cell column, so its ends share a cell
    fp = dict(r.fp, dec_min=edge - (CELLS + 1) * cell, ra_min=a_mid[0] - (CELLS + 1.5) * cell)
    gx0, gy0, h, w = -80, int(y) - 1, 3, 161
    yy, xx = np.mgrid[gy0 : gy0 + h, gx0 : gx0 + w]
    ref = brick_cell(*tan_deproject(xx.ravel(), yy.ravel(), r.ra0, r.dec0), fp, r._nside, CELLS)
    mid = [c.reshape(h, w)[1] for c in ref]
    assert len(np.unique(mid[2])) == 2 and len(np.unique(mid[1])) == 1 and len(np.unique(mid[0])) == 1
    assert mid[2][0] == mid[2][-1] != mid[2][w // 2]         # in the next cell row in the middle, not at the ends
    got = pixel_map_grid(gx0, gy0, h, w, r.ra0, r.dec0, fp, r._nside, CELLS, PIXEL_SCALE_ARCSEC, BRICK_SIZE_DEG)
    for a, c in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a, c.reshape(h, w))


def test_source_box_equals_its_mgrid_definition():
    """The painting box's offsets (filled from two aranges) are those of np.mgrid minus the source position, with
    the same image and box slices, at and beyond the image's edges."""
    from lensaudit.mock.render import _box

    for gx, gy, rad, w, h in ((37.3, 41.8, 12, 111, 111), (-3.6, 5.2, 6, 50, 40), (108.9, 0.49, 40, 111, 111)):
        box, inner, xx, yy = _box(np.float64(gx), np.float64(gy), rad, w, h)
        ix, iy = int(round(gx)), int(round(gy))
        my, mx = np.mgrid[iy - rad : iy + rad + 1, ix - rad : ix + rad + 1]
        assert np.array_equal(xx, mx - np.float64(gx)) and np.array_equal(yy, my - np.float64(gy))
        assert xx.dtype == np.float64 and xx.flags.writeable
        img = np.zeros((h, w))
        img[box] = 1.0 + np.zeros_like(xx)[inner]
        expect = np.zeros((h, w))
        expect[max(iy - rad, 0) : min(iy + rad + 1, h), max(ix - rad, 0) : min(ix + rad + 1, w)] = 1.0
        assert np.array_equal(img, expect)
    assert _box(np.float64(-60.0), np.float64(5.0), 6, 50, 40)[0] is None


def _die_in_worker(req):
    os._exit(3)


def _fail_to_load(root):
    raise RuntimeError(f"cannot load {root}")


def test_mock_fetch_fails_at_once_and_clearly_when_the_render_pool_cannot_serve(survey_dir, renderer, tmp_path,
                                                                                monkeypatch):
    """A survey that cannot be rendered, workers that cannot start, or a worker lost during the fetch are errors
    naming the survey within seconds (an incomplete survey used to leave every request retried for 30 s against a
    broken pool: a fetch of 800 cutouts hung for more than ten minutes)."""
    from lensaudit.cutouts import mockfetch
    from lensaudit.cutouts.store import CutoutStore

    gal = renderer.src[renderer.src.kind != "lens"].iloc[:3]
    m = pd.DataFrame({"id": [f"g{i}" for i in range(3)], "ra": gal.ra.to_numpy(), "dec": gal.dec.to_numpy()})
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "survey.json").write_bytes((survey_dir / "survey.json").read_bytes())
    t0 = time.monotonic()
    with pytest.raises(SurveyError, match=r"mock survey .*incomplete is incomplete: missing \['bricks.parquet'"):
        mockfetch.fetch_from_mock(m, CutoutStore(tmp_path / "s0", create=True), incomplete, workers=2)
    with monkeypatch.context() as mp:
        mp.setattr(mockfetch, "_init_worker", _fail_to_load)
        with pytest.raises(mockfetch.RenderPoolError, match=r"render processes for mock survey .* failed to start"):
            mockfetch.PooledRenderer(survey_dir, 2)
    store = CutoutStore(tmp_path / "s1", create=True)
    with monkeypatch.context() as mp:
        mp.setattr(mockfetch, "_render_fits", _die_in_worker)
        with pytest.raises(mockfetch.RenderPoolError, match=r"was lost .*\(0 of 3 fetched\)"):
            mockfetch.fetch_from_mock(m, store, survey_dir, workers=2)
    assert time.monotonic() - t0 < 60
    assert len(store.ids()) == 0
    rep = mockfetch.fetch_from_mock(m, store, survey_dir, workers=2)   # the same store, a working pool: all three
    assert rep.n_stored == 3 and sorted(store.ids().astype(str)) == ["g0", "g1", "g2"]


def test_pooled_renderer_serves_the_bytes_the_serving_process_would_encode(renderer, survey_dir):
    """With a pool of render processes the workers encode the FITS bytes; the service's answers (with and without
    inverse variance, and off the footprint) are byte for byte those of the renderer in the serving process. The
    workers share the renderer the pool loaded before forking them (measured on the demo's 33 deg^2 survey: 0.27
    GB private per worker instead of 1.4-1.9 GB, the pool ready in 6.6 s instead of 8.0)."""
    from lensaudit.cutouts.mockfetch import PooledRenderer

    lens = renderer.src[renderer.src.kind == "lens"].iloc[0]
    gal = renderer.src.iloc[len(renderer.src) // 2]
    queries = [{"ra": lens.ra, "dec": lens.dec, "size": 101, "layer": "ls-dr10", "bands": "grz"},
               {"ra": gal.ra, "dec": gal.dec, "size": 64, "layer": "ls-dr10", "bands": "gz", "invvar": "1"},
               {"ra": lens.ra + 5, "dec": lens.dec, "size": 101, "layer": "ls-dr10"}]
    answers = []
    pool = PooledRenderer(survey_dir, 2)
    assert pool.shared   # the workers render with the renderer loaded once before they were forked
    try:
        for render in (renderer, pool):
            with serve_in_thread(render) as srv:
                answers.append([(r.status_code, r.content) for r in (httpx.get(srv.url, params=q) for q in queries)])
    finally:
        pool.close()
    assert answers[0] == answers[1]
    assert [s for s, _ in answers[0]] == [200, 200, 500] and answers[0][0][1] != answers[0][1][1]


def test_sweep_rows_filled_block_by_block_equal_column_by_column(monkeypatch):
    """``_fill_rows`` (blocks of rows, for the cache) gives the records that whole-column assignment gives: arrays,
    sub-arrays, strings and one value for every row, with a last block shorter than the others."""
    import lensaudit.mock.survey as ms
    from lensaudit.survey.columns import sweep_numpy_dtype

    rng = np.random.default_rng(5)
    n = 103
    cols = {"RA": rng.uniform(0, 360, n), "FLUX_R": rng.normal(size=n), "NOBS_G": rng.integers(0, 9, n),
            "TYPE": rng.choice(np.array([b"PSF", b"REX", b"DEV"]), n), "DCHISQ": rng.normal(size=(n, 5)),
            "RELEASE": 10000, "FRACIN_G": 0.98}
    whole = np.zeros(n, sweep_numpy_dtype())
    for c, v in cols.items():
        whole[c] = v
    monkeypatch.setattr(ms, "FILL_BLOCK_ROWS", 10)
    blocks = ms._fill_rows(np.zeros(n, sweep_numpy_dtype()), cols)
    assert blocks.tobytes() == whole.tobytes() and blocks["DCHISQ"][-1, 4] == np.float32(cols["DCHISQ"][-1, 4])


def test_renderer_rows_of_ids_match_its_source_table(renderer):
    """``rows_of`` / ``source_rows`` (what the truth measurement uses instead of the whole reordered table) give
    ``src``'s rows and values; an id the survey lacks is a KeyError naming it."""
    src = renderer.src
    pick = np.array([len(src) - 1, 0, len(src) // 3, 7])
    rows = renderer.rows_of(src["id"].to_numpy()[pick])
    np.testing.assert_array_equal(rows, pick)
    pd.testing.assert_frame_equal(renderer.source_rows(rows), src.iloc[pick].reset_index(drop=True), check_exact=True)
    with pytest.raises(KeyError, match="no source .*'nope'"):
        renderer.rows_of([src["id"].iat[0], "nope"])

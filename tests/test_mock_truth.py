"""The mock survey's truth is what its pixels hold: the full lens model against lenstronomy,
magnifications measured on rendered cutouts, depth and exposure counts against the pixel noise,
the PSF the catalog does not describe exactly, colours that do not separate confusers from arcs,
a grader that sees detectability, and the configured rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.Util.param_util import phi_q2_ellipticity

from lensaudit.mock.config import Grading, MockConfig
from lensaudit.mock.layout import MockSurvey
from lensaudit.mock.render import SKY_NMGY_PER_PIX, load_renderer
from lensaudit.mock.request import CutoutRequest
from lensaudit.mock.survey import build_survey
from lensaudit.survey.sweepio import read_sweep


@pytest.fixture(scope="module")
def renderer(mock_survey_dir):
    return load_renderer(mock_survey_dir)


@pytest.fixture(scope="module")
def truth(mock_survey_dir):
    return MockSurvey.load(mock_survey_dir).truth()


@pytest.fixture(scope="module")
def sweep(mock_survey_dir):
    sw = pd.concat([read_sweep(f) for f in sorted((mock_survey_dir / "sweeps").glob("*.fits"))], ignore_index=True)
    sw["id"] = sw["BRICKNAME"].str.strip() + "_" + sw["OBJID"].astype(str)
    return sw


def _req(ra, dec, size=101):
    return CutoutRequest(float(ra), float(dec), size, size, 0.262, "grz", "ls-dr10", False)


# ----------------------------------------------------------------------------- lens model
def test_full_mock_lens_deflection_matches_lenstronomy(renderer):
    """Every term of every mock lens (EPL, shear, m = 3 and 4 multipoles, satellite, group convergence)
    against the same sum in lenstronomy, to 1e-4 of the deflection."""
    from lensaudit.mock.lensmodel import deflection

    lenses = renderer.survey.lenses
    assert (lenses.sat_theta_e > 0).any() and (lenses.kappa_ext > 0).any() and (lenses.gamma != 2.0).all()
    x, y = np.meshgrid(np.linspace(-3.1, 3.3, 23), np.linspace(-2.9, 3.2, 21))
    for lp in lenses.head(25).to_dict("records"):
        e1, e2 = phi_q2_ellipticity(lp["lens_phi"], lp["lens_q"])
        models = ["EPL", "SHEAR", "MULTIPOLE", "MULTIPOLE"]
        kw = [{"theta_E": lp["theta_e"], "gamma": lp["gamma"], "e1": e1, "e2": e2, "center_x": 0, "center_y": 0},
              {"gamma1": lp["shear_g1"], "gamma2": lp["shear_g2"]},
              {"m": 3, "a_m": lp["a3"], "phi_m": lp["phi3"], "center_x": 0, "center_y": 0},
              {"m": 4, "a_m": lp["a4"], "phi_m": lp["phi4"], "center_x": 0, "center_y": 0}]
        if lp["sat_theta_e"] > 0:
            models.append("SIS")
            kw.append({"theta_E": lp["sat_theta_e"], "center_x": lp["sat_x"], "center_y": lp["sat_y"]})
        if lp["kappa_ext"] > 0:
            models.append("CONVERGENCE")
            kw.append({"kappa": lp["kappa_ext"], "ra_0": 0.0, "dec_0": 0.0})
        ax, ay = LensModel(models).alpha(x, y, kw)
        bx, by = deflection(lp, x, y)
        scale = np.hypot(ax, ay).max()
        assert np.abs(bx - ax).max() < 1e-4 * scale and np.abs(by - ay).max() < 1e-4 * scale, lp["id"]


def test_point_source_magnification_of_a_singular_isothermal_sphere():
    """The ray tracer against the analytic total magnification 2 theta_E / beta of an SIS (beta << theta_E)."""
    from lensaudit.mock.lensmodel import arc_image
    from lensaudit.sources.procedural import SourceImage

    n, pix = 64, 0.004
    g = (np.arange(n) - (n - 1) / 2) * pix
    xx, yy = np.meshgrid(g, g)
    blob = np.exp(-0.5 * (xx**2 + yy**2) / 0.03**2)
    src = SourceImage(np.stack([blob, blob, blob]) / blob.sum(), pix, 0.25, 0.0)
    lp = {"theta_e": 1.5, "lens_q": 1.0, "lens_phi": 0.0, "gamma": 2.0, "shear_g1": 0.0, "shear_g2": 0.0}
    dy, dx = np.mgrid[-12:13, -12:13].astype(float)
    img = arc_image(lp, src, dx, dy, supersample=12)
    mu = img[1].sum() / src.flux[1]
    assert mu == pytest.approx(2 * 1.5 / 0.25, rel=0.02)


def _assert_same_sources(root, renderer, n=6):
    from lensaudit.mock.render import mock_source_images

    ids, srcs, real = mock_source_images(root, n)
    assert ids == list(renderer.lenses)[:n] and len(ids) == n and real == (renderer.library is not None)
    for i, src in zip(ids, srcs, strict=True):
        want = renderer.source_image(i)
        np.testing.assert_array_equal(src.image, want.image)
        assert (src.pixscale, src.x0, src.y0) == (want.pixscale, want.x0, want.y0)


def test_the_mock_source_images_without_a_renderer_are_the_renderers(mock_survey_dir, renderer):
    """The report's figure of the mock's sources reads the lens table alone: the same images the renderer lenses."""
    _assert_same_sources(mock_survey_dir, renderer)


# ----------------------------------------------------------------------------- truth vs pixels
def test_rendered_magnification_equals_the_truth_table(renderer, truth):
    """Lensed flux in the served cutout (with and without the lensed source) / source flux = mu in truth."""
    from lensaudit.mock.render import Renderer
    from lensaudit.sources.procedural import SourceImage

    dark = Renderer(renderer.survey)
    lenses = truth[truth.kind == "lens"].sort_values("id").head(8)
    for _, t in lenses.iterrows():
        img = renderer.source_image(t["id"])
        dark._sources[t["id"]] = SourceImage(np.zeros_like(img.image), img.pixscale, img.x0, img.y0)
        with_arc, _ = renderer(_req(t.ra, t.dec, 151), noise=False)
        without, _ = dark(_req(t.ra, t.dec, 151), noise=False)
        lensed = (with_arc.astype(np.float64) - without).sum(axis=(1, 2))
        for k, b in enumerate("grz"):
            assert lensed[k] / img.flux[k] == pytest.approx(t[f"mu_{b}"], rel=0.03), (t["id"], b)
        assert 22.5 - 2.5 * np.log10(lensed[1]) == pytest.approx(t["arc_mag_r"], abs=0.03)
        assert t["mu_r"] > 1.0


def _isolated_stars(renderer, sweep, n=12):
    src = renderer.src
    stars = src[(src.kind == "normal") & src.is_star & src.rmag.between(17.0, 19.0)]
    keep = []
    gx, gy = src.gx.to_numpy(), src.gy.to_numpy()
    for _, s in stars.iterrows():
        d = np.hypot(gx - s.gx, gy - s.gy)
        if np.sort(d)[1] > 25 and np.ptp(renderer.brick_cell_of(np.array([s.ra]), np.array([s.dec]))[0]) == 0:
            keep.append(s)
        if len(keep) >= n:
            break
    assert len(keep) >= 6
    return pd.DataFrame(keep).merge(sweep, on="id")


def _on_pixel(renderer, ra, dec):
    """The (ra, dec) of the global pixel centre nearest to a position: a cutout centred there is the coadd's
    own pixels (no sub-pixel resampling, which would smooth the noise as in any resampled cutout)."""
    from lensaudit.mock.layout import tan_deproject, tan_project

    x, y = tan_project(ra, dec, renderer.ra0, renderer.dec0)
    return tan_deproject(np.round(x), np.round(y), renderer.ra0, renderer.dec0)


def _noise_and_psf(renderer, s):
    """Pixel noise (noisy - noiseless) of the r band around star s and the star's own normalised image,
    on the coadd's pixel grid."""
    ra, dec = _on_pixel(renderer, s.ra, s.dec)
    noisy, _ = renderer(_req(ra, dec))
    clean, _ = renderer(_req(ra, dec), noise=False)
    noise = noisy[1].astype(np.float64) - clean[1]
    star = clean[1].astype(np.float64)[50 - 15 : 50 + 16, 50 - 15 : 50 + 16]
    p = star / star.sum()
    quiet = clean[1] < 0.2 * SKY_NMGY_PER_PIX["r"]       # away from source light (no shot noise)
    return noise, quiet, p


def test_point_source_at_the_stated_depth_has_snr_5(renderer, sweep):
    """A point source of flux 5 / sqrt(PSFDEPTH) (the sweep's own depth at the object) has S/N 5 within 5
    percent for the PSF-weighted (matched-filter) flux under the pixels' true, correlated noise: the
    filter is the star's own rendered image, its scatter measured over noise-only pixels."""
    from scipy.signal import correlate

    snr = []
    for _, s in _isolated_stars(renderer, sweep).iterrows():
        noise, quiet, p = _noise_and_psf(renderer, s)
        mf = correlate(np.where(quiet, noise, 0.0), p, mode="same") / (p * p).sum()
        inner = np.zeros_like(quiet)
        inner[20:-20, 20:-20] = True
        # matched-filter values whose whole footprint is quiet sky
        ok = inner & (correlate((~quiet).astype(float), np.ones_like(p), mode="same") < 0.5)
        assert ok.sum() > 500
        snr.append(5.0 / np.sqrt(s["PSFDEPTH_R"]) / mf[ok].std())
    assert np.median(snr) == pytest.approx(5.0, rel=0.05), snr


def test_nobs_in_the_sweeps_agrees_with_the_pixel_noise(renderer, sweep):
    """Across exposure-map cells, sigma_pix^2 x NOBS is constant within a brick (the noise follows NOBS)."""
    from lensaudit.mock.layout import CELLS

    src = renderer.src
    cells = renderer.survey.exposure
    brick = int(np.argmax(np.ptp(cells[:, 1].reshape(len(cells), -1), axis=1)))  # the brick whose r counts vary most
    rows = []
    b = renderer.survey.bricks.iloc[brick]
    for (cx, cy), grp in src[(src.brick_idx == brick) & (src.rmag > 23)].groupby(["cell_x", "cell_y"]):
        # the faint object nearest its cell's centre, so that the stamp lies inside the cell
        ra_c = b.ra1 + (cx + 0.5) * (b.ra2 - b.ra1) / CELLS
        dec_c = b.dec1 + (cy + 0.5) * (b.dec2 - b.dec1) / CELLS
        s = grp.iloc[int(np.argmin(np.hypot(grp.ra - ra_c, grp.dec - dec_c)))]
        ra, dec = _on_pixel(renderer, s.ra, s.dec)
        noisy, _ = renderer(_req(ra, dec, 41))
        clean, _ = renderer(_req(ra, dec, 41), noise=False)
        quiet = clean[1] < 0.2 * SKY_NMGY_PER_PIX["r"]
        sigma = (noisy[1].astype(np.float64) - clean[1])[quiet].std()
        nobs = int(sweep.loc[sweep.id == s.id, "NOBS_R"].iloc[0])
        rows.append((nobs, sigma, cells[brick, 1, cy, cx]))
    assert len(rows) == CELLS * CELLS
    nobs, sigma, cell = map(np.array, zip(*rows, strict=True))
    np.testing.assert_array_equal(nobs, cell)
    assert nobs.max() > nobs.min()
    k = sigma**2 * nobs
    assert k.std() / k.mean() < 0.08, rows


def test_a_star_sits_at_the_centre_of_its_cutout(renderer, sweep):
    """A cutout requested at a star's position has the star at its centre pixel (50, 50), whatever the
    sub-pixel offset of the star on the survey's grid: the service resamples through the cutout's WCS
    (an earlier shift-only resampling put stars up to 1.5 pixels off)."""
    from lensaudit.mock.layout import tan_project

    offs = []
    for _, s in _isolated_stars(renderer, sweep, n=8).iterrows():
        clean, _ = renderer(_req(float(s.ra), float(s.dec)), noise=False)
        c = clean[1].astype(np.float64)[44:57, 44:57]
        yy, xx = np.mgrid[44:57, 44:57]
        offs.append(((c * xx).sum() / c.sum() - 50, (c * yy).sum() / c.sum() - 50))
        gx, _ = tan_project(s.ra, s.dec, renderer.ra0, renderer.dec0)
        offs[-1] += (float(gx - np.floor(gx + 0.5)),)
    offs = np.array(offs)
    assert np.abs(offs[:, :2]).max() < 0.05, offs            # centroid within 1/20 pixel of the centre
    assert np.ptp(offs[:, 2]) > 0.3                           # and the stars had various sub-pixel offsets


def test_psf_is_not_what_the_catalog_says(renderer, sweep):
    """Catalog PSFSIZE scatters about the true FWHM by about 5 percent; the stars in the pixels have the true FWHM."""
    b = renderer.survey.bricks
    ratio = b[[f"psfsize_cat_{x}" for x in "grz"]].to_numpy() / b[[f"psfsize_true_{x}" for x in "grz"]].to_numpy()
    assert 0.02 < ratio.std() < 0.09 and abs(ratio.mean() - 1) < 0.03
    betas = b[[f"psf_beta_{x}" for x in "grz"]].to_numpy()
    assert betas.min() >= 2.5 and betas.max() <= 4.5 and betas.std() > 0.3
    from scipy.ndimage import zoom

    meas, true, cat = [], [], []
    for _, s in _isolated_stars(renderer, sweep, n=8).iterrows():
        clean, _ = renderer(_req(*_on_pixel(renderer, s.ra, s.dec)), noise=False)
        z = zoom(clean[1].astype(np.float64)[35:66, 35:66], 4, order=3)
        meas.append(2 * np.sqrt((z >= z.max() / 2).sum() / 16 / np.pi) * 0.262)   # area above half maximum
        true.append(b["psfsize_true_r"].iat[int(s.brick_idx)])
        cat.append(s["PSFSIZE_R"])
    ratio = np.array(meas) / np.array(true)
    # stars sit off pixel centres, which broadens the half-maximum area by up to a few percent
    assert np.median(ratio) == pytest.approx(1.0, abs=0.03) and np.all(np.abs(ratio - 1) < 0.07), ratio
    assert not np.allclose(cat, true, rtol=0.005)


# ----------------------------------------------------------------------------- confusers, grader, rates
def test_colour_alone_does_not_separate_confusers_from_arcs_on_red_hosts(truth):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    from lensaudit.utils.stats import roc_auc

    arcs = truth[truth.kind == "lens"]
    conf = truth[truth.kind.isin(["ring", "shell", "companion"])]
    assert len(arcs) > 30 and len(conf) > 60
    x_arc = np.c_[arcs.arc_mag_g - arcs.arc_mag_r, arcs.arc_mag_r - arcs.arc_mag_z]
    x_conf = np.c_[conf.conf_gr, conf.conf_rz]

    def cv_auc(xc):
        x = np.r_[x_arc, xc]
        y = np.r_[np.ones(len(x_arc)), np.zeros(len(xc))]
        clf = make_pipeline(PolynomialFeatures(2), StandardScaler(), LogisticRegression(max_iter=2000))
        return roc_auc(y, cross_val_predict(clf, x, y, cv=5, method="predict_proba")[:, 1])

    assert cv_auc(x_conf) < 0.8
    assert cv_auc(x_conf + np.array([0.9, 0.6])) > 0.9     # the same classifier does separate red features


def test_grader_follows_detectability():
    from lensaudit.mock.truth import grade

    n = 20000
    rng = np.random.default_rng(0)
    g = Grading()
    snr = 10 ** rng.uniform(-1, 2.5, n)
    res = rng.uniform(0.2, 2.0, n)
    tiers = grade(pd.DataFrame({"arc_snr": snr, "theta_e_over_fwhm": res}), g, np.random.default_rng(1))
    cat = tiers != ""
    resolved = res > 1.0
    # bins in dex about the S/N at which half are catalogued
    edges = g.snr_catalogued * 10 ** np.array([-1.0, -0.5, -0.15, 0.15, 0.5, 1.5])
    frac = [cat[resolved & (snr >= lo) & (snr < hi)].mean() for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    assert np.all(np.diff(frac) > 0) and frac[0] < 0.05 and frac[-1] > 0.95
    bright = snr > 100
    assert cat[bright & (res < 0.3)].mean() < 0.3 < 0.95 < cat[bright & (res > 1.0)].mean()
    a_frac = [(tiers == "A")[cat & resolved & (snr >= lo) & (snr < hi)].mean() for lo, hi in ((10, 20), (20, 40), (40, 400))]
    assert np.all(np.diff(a_frac) > 0)


def test_lens_rate_and_confuser_fractions_follow_the_config(mock_survey_dir, renderer):
    from lensaudit.mock.population import eligible_red

    cfg = MockConfig.model_validate(renderer.survey.meta["config"])
    src = renderer.src
    # hosts were drawn from the full catalog before the footprint trim: allow the few lost at the edge
    eligible = eligible_red(src, cfg.lenses.host_max_mag_z) | (src.kind == "lens")
    n_lens = int((src.kind == "lens").sum())
    assert n_lens / eligible.sum() <= cfg.lenses.rate_per_eligible_red + 1e-12
    assert n_lens >= 0.9 * np.floor(cfg.lenses.rate_per_eligible_red * eligible.sum())
    early = (~src.is_star) & (src.rmag < 20.5) & src.red & src.type.isin(["DEV", "SER"]) & (src.kind != "lens")
    for kind, frac in (("ring", cfg.confusers.ring_fraction_of_early), ("shell", cfg.confusers.shell_fraction_of_early),
                       ("companion", cfg.confusers.companion_fraction_of_early)):
        got = (src.kind[early] == kind).mean()
        sd = np.sqrt(frac * (1 - frac) / early.sum())
        assert abs(got - frac) < 4 * sd + 0.005, (kind, got, frac)
    area = renderer.survey.meta["summary"]["area_deg2"]
    for kind, rate in (("merger", cfg.confusers.merger_per_deg2), ("edge_on", cfg.confusers.edge_on_per_deg2)):
        got = (src.kind == kind).sum()
        assert abs(got - rate * area) < 4 * np.sqrt(rate * area) + 2, (kind, got)
    # blue features on red hosts exist (star-forming rings, companions), and red lensed arcs too
    conf = src[src.kind.isin(["ring", "companion"])]
    assert (conf.conf_gr < 0.8).mean() > 0.5 and conf.red.all()
    lenses = renderer.survey.lenses
    assert 0.05 < lenses.src_red.mean() < 0.3


def test_simple_family_stays_available(tmp_path, reference):
    d = tmp_path / "simple"
    build_survey(MockConfig(area_deg2=0.25, seed=4, lenses={"family": "simple"}), d, reference)
    r = load_renderer(d)
    lenses = r.survey.lenses
    assert (lenses.family == "simple").all() and (lenses.gamma == 2.0).all() and (lenses.a3 == 0).all()
    t = MockSurvey.load(d).truth()
    assert (t.loc[t.kind == "lens", "mu_r"] > 1).all()


def test_artefacts_are_in_the_pixels_and_in_maskbits(renderer, sweep):
    """Bleed trails of saturated stars run along pixel columns (SATUR bits on the objects they cross);
    residual satellite trails brighten one band along a line (ALLMASK bit of that band nearby)."""
    from lensaudit.mock.layout import tan_deproject
    from lensaudit.survey.maskbits import MASKBITS

    src = renderer.src
    k = int(renderer._bleeders[0])
    gx, gy = renderer._gx[k], renderer._gy[k]
    ra, dec = tan_deproject(np.round(gx), np.round(gy) + 30, renderer.ra0, renderer.dec0)   # 30 px north
    clean, _ = renderer(_req(ra, dec, 41), noise=False)
    col = 20 + int(round(gx)) - int(np.round(gx))
    strip = clean[1, :, col - 4 : col + 5].astype(np.float64)
    assert (strip[:, 4] > strip[:, 0] + 1e-3).mean() > 0.8                 # the bleed column stands out
    on_trail = (np.abs(src.gx - gx) < 3) & (np.abs(src.gy - gy) < 8.0 * 10 ** (0.4 * (12.5 - src.rmag.iat[k])))
    satur = int(MASKBITS.SATUR_G | MASKBITS.SATUR_R | MASKBITS.SATUR_Z)
    ids = set(src.loc[on_trail, "id"])
    assert ids and (sweep.loc[sweep.id.isin(ids), "MASKBITS"].to_numpy() & satur == satur).all()



def test_satellite_trails_brighten_one_band_and_set_allmask(tmp_path, reference):
    from lensaudit.mock.layout import tan_deproject
    from lensaudit.survey.maskbits import MASKBITS

    d = tmp_path / "trails"
    build_survey(MockConfig(area_deg2=0.25, seed=2, artefacts={"satellite_trails_per_deg2": 40.0}), d, reference)
    renderer = load_renderer(d)
    src = renderer.src
    sweep = pd.concat([read_sweep(f) for f in sorted((d / "sweeps").glob("*.fits"))], ignore_index=True)
    sweep["id"] = sweep["BRICKNAME"].str.strip() + "_" + sweep["OBJID"].astype(str)
    trails = renderer.survey.artefacts
    assert len(trails) >= 3
    t = trails.iloc[0]
    x0, y0 = t.gx + 25 * np.cos(t.angle), t.gy + 25 * np.sin(t.angle)     # a point on the trail
    b_here = renderer.brick_of(*map(np.atleast_1d, tan_deproject(x0, y0, renderer.ra0, renderer.dec0)))[0]
    if b_here == t.brick_idx:
        ra, dec = tan_deproject(np.round(x0), np.round(y0), renderer.ra0, renderer.dec0)
        with_trail, _ = renderer(_req(ra, dec, 21), noise=False)
        saved = renderer._trails
        try:
            renderer._trails = []
            without, _ = renderer(_req(ra, dec, 21), noise=False)
        finally:
            renderer._trails = saved
        diff = (with_trail.astype(np.float64) - without).sum(axis=(1, 2))
        assert diff[int(t.band)] > 0 and np.allclose(np.delete(diff, int(t.band)), 0.0)
    else:
        pytest.fail("the point 25 px along the first trail left its brick; pick another")
    bit = {0: MASKBITS.ALLMASK_G, 1: MASKBITS.ALLMASK_R, 2: MASKBITS.ALLMASK_Z}[int(t.band)]
    d = np.abs(-(src.gx - t.gx) * np.sin(t.angle) + (src.gy - t.gy) * np.cos(t.angle))
    near = set(src.loc[(d < 4) & (src.brick_idx == t.brick_idx), "id"])
    assert (sweep.loc[sweep.id.isin(near), "MASKBITS"].to_numpy() & int(bit)).all()


def test_einstein_radii_are_drawn_inside_their_range_not_clipped():
    from scipy.stats import kstest, truncnorm

    from lensaudit.mock.config import LensPopulation
    from lensaudit.mock.population import draw_theta_e

    lp = LensPopulation()
    lo, hi = lp.theta_e_arcsec
    # bright hosts whose median theta_E lies above the range: no pile-up at its edges
    th = draw_theta_e(np.full(5000, 15.5), lp, np.random.default_rng(3))
    assert lo <= th.min() and th.max() <= hi and np.mean(th > 0.999 * hi) < 0.02 and len(np.unique(th)) == len(th)
    # the log-normal truncated to the range (independent oracle: scipy's truncnorm CDF)
    mu = np.log10(lp.theta_e_at_r19) - lp.theta_e_mag_scaling * (19.8 - 19.0)
    th = draw_theta_e(np.full(5000, 19.8), lp, np.random.default_rng(4))
    a, b = (np.log10(lo) - mu) / 0.2, (np.log10(hi) - mu) / 0.2
    assert kstest(np.log10(th), truncnorm(a, b, loc=mu, scale=0.2).cdf).pvalue > 0.01
    # brighter hosts, larger Einstein radii
    assert np.median(draw_theta_e(np.full(2000, 18.0), lp, np.random.default_rng(5))) > np.median(th)

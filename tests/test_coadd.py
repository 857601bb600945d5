"""The coadd reader: DR10 per-brick coadd files in the real layout, stamps cut across brick edges.

Oracle: every brick image samples one smooth sky function f(ra, dec) on its own TAN grid (positions from
astropy's WCS); a correct reader returns f at the stamp's pixel positions (from astropy's WCS of the
service's cutout header) to interpolation accuracy, on whichever bricks the stamp falls. A stamp shifted
by a fifth of a pixel, or a brick read with the wrong WCS, misses by far more than that accuracy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from lensaudit.cutouts.coadd import CoaddReader, lanczos3_at
from lensaudit.survey.coadd import (
    IMAGE_QUANT_STEP_NMGY,
    CoaddFileError,
    brick_wcs_header,
    coadd_path,
    read_coadd_image,
    write_coadd_image,
)
from lensaudit.survey.geometry import cutout_header

PIX = 0.262 / 3600
PERIOD = 24.0                       # pixels: a smooth, band-limited sky
RA0, DEC0, STEP, IMG = 150.0, 1.0, 0.02, 320   # 2 x 2 bricks of 0.02 deg; 320-px images overlap by ~25 px


def sky(ra, dec, band: int = 0):
    u = (np.asarray(ra) - (RA0 + STEP)) * np.cos(np.deg2rad(DEC0 + STEP)) / PIX
    v = (np.asarray(dec) - (DEC0 + STEP)) / PIX
    f = 1.0 + 0.5 * np.sin(2 * np.pi * u / PERIOD + 0.3) * np.cos(2 * np.pi * v / PERIOD * 0.8)
    return f * (1.0, 2.0, 0.5)[band] + (0.0, 0.0, 0.3)[band]


@pytest.fixture(scope="module")
def coadds(tmp_path_factory):
    root = tmp_path_factory.mktemp("coadds")
    rows = []
    for j in range(2):
        for i in range(2):
            ra1, dec1 = RA0 + i * STEP, DEC0 + j * STEP
            name = f"t{i}{j}brick"
            rows.append({"BRICKNAME": name, "RA1": ra1, "RA2": ra1 + STEP, "DEC1": dec1, "DEC2": dec1 + STEP})
            hdr = brick_wcs_header(ra1 + STEP / 2, dec1 + STEP / 2, size_pix=IMG)
            w = WCS(hdr, naxis=2)
            yy, xx = np.mgrid[0:IMG, 0:IMG]
            ra, dec = w.wcs_pix2world(xx.ravel(), yy.ravel(), 0)
            for k, band in enumerate("grz"):
                if name == "t11brick" and band == "z":
                    continue                                   # one brick has no z coverage
                write_coadd_image(coadd_path(root, name, band), sky(ra, dec, k).reshape(IMG, IMG), hdr, band)
    return root, pd.DataFrame(rows)


def _truth(ra, dec, size=101, band=0):
    w = WCS(cutout_header(ra, dec, size_pix=size), naxis=2)   # the service's cutout WCS, through astropy
    yy, xx = np.mgrid[0:size, 0:size]
    pra, pdec = w.wcs_pix2world(xx.ravel(), yy.ravel(), 0)
    return sky(pra, pdec, band).reshape(size, size), pra.reshape(size, size), pdec.reshape(size, size)


def test_coadd_files_follow_the_dr10_layout(coadds, tmp_path):
    root, _ = coadds
    p = coadd_path(root, "t00brick", "r")
    assert p.relative_to(root).as_posix() == "coadd/t00/t00brick/legacysurvey-t00brick-image-r.fits.fz"
    with fits.open(p) as h:
        assert h[0].data is None and isinstance(h[1], fits.CompImageHDU)
        hdr = h[1].header
        assert (hdr["IMTYPE"], hdr["BUNIT"], hdr["MAGZERO"], hdr["FILTERX"]) == ("image", "nanomaggy", 22.5, "r")
        assert hdr["CRPIX1"] == hdr["CRPIX2"] == (IMG + 1) / 2
        assert hdr["CD1_1"] == pytest.approx(-PIX, rel=1e-12) and hdr["CD2_2"] == pytest.approx(PIX, rel=1e-12)
    with fits.open(p, disable_image_compression=True) as h:
        assert h[1].header["XTENSION"] == "BINTABLE" and h[1].header["ZIMAGE"] and h[1].header["ZCMPTYPE"] == "RICE_1"
    assert brick_wcs_header(10.0, 5.0)["CRPIX1"] == 1800.5                   # the real brick geometry
    # lossy at the stated step only
    img = np.random.default_rng(0).normal(0, 0.05, (200, 150)).astype(np.float32)
    q = write_coadd_image(tmp_path / "q.fits.fz", img, brick_wcs_header(10.0, 5.0, 200), "g")
    back, _ = read_coadd_image(q)
    assert np.abs(back - img).max() <= IMAGE_QUANT_STEP_NMGY and not np.array_equal(back, img)
    (tmp_path / "bad.fits.fz").write_bytes(b"SIMPLE  = nonsense")
    with pytest.raises(CoaddFileError, match="bad.fits.fz"):
        read_coadd_image(tmp_path / "bad.fits.fz")
    with pytest.raises(CoaddFileError, match="no such file"):
        read_coadd_image(tmp_path / "nope.fits.fz")


def test_lanczos3_kernels_equal_numpys_sinc_and_the_table_is_within_its_bound():
    from lensaudit.survey.resample import OFFSETS, lanczos3_kernel_1d, lanczos3_kernel_table

    f = np.r_[0.0, 1e-300, 1e-12, 3e-7, np.random.default_rng(2).random(20000), 0.5, 1 - 3e-7, 1 - 1e-12,
              np.nextafter(1.0, 0.0)]
    t = OFFSETS[None, :] - f[:, None]
    exact = np.sinc(t) * np.sinc(t / 3)                         # the oracle: numpy's sinc, twelve calls
    np.testing.assert_allclose(lanczos3_kernel_1d(f), exact, rtol=0, atol=1e-14)
    np.testing.assert_allclose(lanczos3_kernel_table(f), exact, rtol=0, atol=5e-7)
    assert lanczos3_kernel_table(np.array([0.0])).tolist() == [[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]]


def test_lanczos3_on_stacked_planes_equals_plane_by_plane():
    from lensaudit.survey.resample import lanczos3_apply, lanczos3_weights

    rng = np.random.default_rng(4)
    cube = rng.normal(size=(3, 40, 50))
    x, y = rng.uniform(-3, 52, 700), rng.uniform(-3, 42, 700)
    taps = lanczos3_weights(x, y, (40, 50))
    both = lanczos3_apply(np.moveaxis(cube, 0, -1), taps)
    for b in range(3):
        np.testing.assert_allclose(both[:, b], lanczos3_at(cube[b], x, y), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="taps for an image of shape"):
        lanczos3_apply(cube[0, :30], taps)


def test_tan_to_tan_equals_deprojecting_and_projecting():
    from lensaudit.mock.layout import tan_deproject, tan_project
    from lensaudit.mock.render import tan_to_tan

    rng = np.random.default_rng(5)
    x, y = rng.uniform(-80, 80, 5000), rng.uniform(-80, 80, 5000)
    for rc, dc, r0, d0 in ((150.3, 1.2, 150.125, 1.125), (152.9, -1.8, 150.125, 1.125), (10.0, 29.0, 12.0, 27.0)):
        gx, gy = tan_to_tan(x, y, rc, dc, r0, d0)
        ra, dec = tan_deproject(x, y, rc, dc)
        wx, wy = tan_project(ra, dec, r0, d0)
        np.testing.assert_allclose(gx, wx, rtol=0, atol=1e-8)
        np.testing.assert_allclose(gy, wy, rtol=0, atol=1e-8)


def test_lanczos3_reproduces_samples_and_constants():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(30, 40))
    yy, xx = np.mgrid[3:27, 3:37]
    np.testing.assert_allclose(lanczos3_at(img, xx.ravel(), yy.ravel()), img[3:27, 3:37].ravel(), atol=1e-12)
    x, y = rng.uniform(0, 39, 500), rng.uniform(0, 29, 500)
    np.testing.assert_allclose(lanczos3_at(np.full((30, 40), 2.5), x, y), 2.5, rtol=1e-12)   # also at the edges
    assert lanczos3_at(img, np.array([-10.0]), np.array([5.0]))[0] == 0.0


def test_stamp_across_four_bricks_is_the_sky(coadds):
    root, bricks = coadds
    reader = CoaddReader(root, bricks)
    ra, dec = RA0 + STEP + 0.0003, DEC0 + STEP - 0.0002              # near the corner all four bricks share
    cube, used = reader.cutout(ra, dec, return_bricks=True)
    assert cube.shape == (3, 101, 101) and cube.dtype == np.float32 and sorted(used) == sorted(bricks["BRICKNAME"])
    for k in range(2):
        want, pra, pdec = _truth(ra, dec, band=k)
        err = np.abs(cube[k] - want).max()
        assert err < 3e-3 * (1, 2)[k], f"band {k}: {err}"
        # power: the same sky a fifth of a pixel to the east is far off
        shifted = sky(pra + 0.2 * PIX / np.cos(np.deg2rad(pdec)), pdec, k)
        assert np.abs(cube[k] - shifted).max() > 10 * err
    # z: three bricks have it, one has no file: its pixels are 0, the others are the sky
    want_z, pra, pdec = _truth(ra, dec, band=2)
    missing = (pra >= RA0 + STEP) & (pdec >= DEC0 + STEP)
    assert missing.any() and (cube[2][missing] == 0).all()
    assert np.abs(cube[2][~missing] - want_z[~missing]).max() < 3e-3


def test_stamp_off_the_footprint_is_zero_there(coadds):
    root, bricks = coadds
    ra, dec = RA0 + 0.001, DEC0 + 0.01                                 # west edge of the covered area
    cube = CoaddReader(root, bricks).cutout(ra, dec, bands="gr")
    want, pra, _ = _truth(ra, dec, band=0)
    outside = pra < RA0
    assert outside.any() and (~outside).any()
    assert (cube[:, outside] == 0).all()
    assert np.abs(cube[0][~outside] - want[~outside]).max() < 3e-3
    with pytest.raises(ValueError, match="lacks columns"):
        CoaddReader(root, bricks.drop(columns="RA2"))


def test_cutouts_coadd_command_fills_a_store_with_qa_and_provenance(coadds, tmp_path, capsys):
    import json

    from lensaudit.cli import main
    from lensaudit.cutouts import CutoutStore

    root, bricks = coadds
    bricks.to_parquet(tmp_path / "bricks.parquet", index=False)
    m = pd.DataFrame({"id": ["in1", "in2", "far"], "ra": [RA0 + 0.01, RA0 + 0.03, RA0 + 1.0],
                      "dec": [DEC0 + 0.01, DEC0 + 0.015, DEC0 + 1.0], "tier": ["A", "B", "A"]})
    m.to_parquet(tmp_path / "m.parquet", index=False)
    args = ["cutouts", "coadd", "--manifest", str(tmp_path / "m.parquet"), "--store", str(tmp_path / "s"),
            "--coadds", str(root), "--bricks", str(tmp_path / "bricks.parquet")]
    assert main(args) == 3                                  # partial: the far position has no coverage
    rep = json.loads(capsys.readouterr().out)
    assert rep["n_stored"] == 2 and rep["n_failed"] == 1 and "missing_band" in rep["failure_reasons"]
    store = CutoutStore(tmp_path / "s")
    row = store.index.set_index("id").loc["in2"]
    assert row["source"] == "coadd" and row["tier"] == "B" and row["url"] == str(root)
    np.testing.assert_array_equal(store.get(["in2"])[0], CoaddReader(root, bricks).cutout(RA0 + 0.03, DEC0 + 0.015))
    assert main(args + ["--allow-failures"]) == 0           # re-run: nothing new to cut
    assert json.loads(capsys.readouterr().out)["n_already_stored"] == 2


def test_the_coadd_reader_cuts_the_mock_services_cutouts_pixel_for_pixel(mock_survey_dir, tmp_path):
    """The mock's pixels written as DR10-format coadd files (lossy at DR10's 1e-4 nanomaggy step) and read back
    by the coadd reader give the loopback service's cutouts, to that quantisation: at a brick corner (four
    bricks), and at an ordinary position."""
    from lensaudit.cli import main
    from lensaudit.mock.render import load_renderer
    from lensaudit.mock.request import CutoutRequest

    r = load_renderer(mock_survey_dir)
    b = r.survey.bricks
    corner = (float(b["ra2"].iat[5]), float(b["dec2"].iat[5]))       # an interior corner of the 4 x 4 bricks
    inner = (float(b["ra"].iat[10]) + 0.003, float(b["dec"].iat[10]) - 0.002)
    reader_bricks = b[["brickname", "ra1", "ra2", "dec1", "dec2"]]
    for k, (ra, dec) in enumerate((corner, inner)):
        out = tmp_path / f"c{k}"
        assert main(["mock", "coadds", "--survey", str(mock_survey_dir), "--out", str(out),
                     "--around", str(ra), str(dec), "--half-size", "70"]) == 0
        served, _ = r(CutoutRequest(ra, dec, 101, 101, 0.262, "grz", "ls-dr10", False))
        cut, used = CoaddReader(out, reader_bricks).cutout(ra, dec, return_bricks=True)
        assert len(used) == (4 if k == 0 else 1)
        diff = np.abs(cut.astype(np.float64) - served)
        assert diff.max() <= 2 * IMAGE_QUANT_STEP_NMGY, diff.max()       # the files' quantisation, nothing more
        assert served.std() > 20 * IMAGE_QUANT_STEP_NMGY                   # and the pixels are far from flat
        assert np.abs(np.roll(served, 1, axis=2) - cut).max() > 50 * diff.max()   # a one-pixel shift is far off


@pytest.mark.parametrize("dtype", [np.float32, np.float64, ">f4"])
def test_compiled_lanczos3_equals_the_numpy_reference(dtype):
    """The fast path (one compiled pass) against the reference taps (numpy): interior, edges, outside, 1 and 3 planes."""
    from lensaudit.survey.resample import lanczos3_apply, lanczos3_at, lanczos3_weights

    rng = np.random.default_rng(5)
    cube = rng.normal(10.0, 3.0, (37, 45, 3)).astype(dtype)
    x = np.concatenate([rng.uniform(-4.0, 49.0, 3000), [0.0, 44.0, -2.99, 47.5, 10.0, np.nan]])
    y = np.concatenate([rng.uniform(-4.0, 41.0, 3000), [0.0, 36.0, 5.0, 2.0, -3.5, 1.0]])
    taps = lanczos3_weights(x[:-1], y[:-1], cube.shape)
    fast = lanczos3_at(cube, x, y)
    np.testing.assert_allclose(fast[:-1], lanczos3_apply(cube, taps), rtol=0, atol=1e-12)
    assert fast[-1].tolist() == [0.0, 0.0, 0.0]          # a non-finite position gives 0
    assert fast[3003].tolist() == [0.0, 0.0, 0.0]        # no tap inside the image: 0
    one = lanczos3_at(cube[:, :, 1], x[:-1], y[:-1])
    np.testing.assert_allclose(one, lanczos3_apply(cube[:, :, 1], taps), rtol=0, atol=1e-12)
    two = lanczos3_at(cube[:, :, :2], x[:-1], y[:-1])          # the general path (any number of planes but 3)
    np.testing.assert_allclose(two, lanczos3_apply(cube[:, :, :2], taps), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(two, fast[:-1, :2])         # the 3-plane path: the same sums in the same order
    with pytest.raises(ValueError, match="x and y differ"):
        lanczos3_at(cube, x, y[:5])
    with pytest.raises(ValueError, match="2-D or 3-D float"):
        lanczos3_at(cube.astype(int), x, y)

"""The DR10 data model against independent sources (astropy units/WCS/FITS, the spec tables)."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs.utils import proj_plane_pixel_scales

from lensaudit.survey import MASKBITS, depth_to_mag5, flux_to_mag, mag5_to_depth, mag_to_flux, mw_transmission
from lensaudit.survey.columns import SWEEP_SCHEMA, SchemaError, check_sweep_columns, decode_type, sweep_numpy_dtype
from lensaudit.survey.geometry import (
    brickname,
    cutout_wcs,
    parse_sweep_filename,
    sweep_box,
    sweep_filename,
)
from lensaudit.survey.maskbits import DEFAULT_EXCLUDED_MASKBITS, has_any_bits, maskbits_mask
from lensaudit.survey.photometry import shape_to_axis_ratio


def test_flux_to_mag_matches_astropy_ab():
    flux = np.array([0.1, 1.0, 3.7, 100.0])
    # 1 nanomaggy = 3.631e-6 Jy on the AB system (zero point 3631 Jy)
    expected = (flux * 3.631e-6 * u.Jy).to(u.ABmag).value
    # astropy's AB zero point is 3630.78 Jy, so the two agree to 1e-4 mag, not exactly
    np.testing.assert_allclose(flux_to_mag(flux), expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(mag_to_flux(flux_to_mag(flux)), flux, rtol=1e-12)
    assert np.isnan(flux_to_mag([-1.0, 0.0])).all()


def test_depth_conversions():
    # 5-sigma flux of ivar 100/nmgy^2 is 5/10 = 0.5 nmgy -> 22.5 - 2.5 log10(0.5)
    assert depth_to_mag5(100.0) == pytest.approx(22.5 - 2.5 * np.log10(0.5))
    # the spec's second form: -2.5 (log10(5/sqrt(d)) - 9)
    d = np.array([3.0, 250.0, 4000.0])
    np.testing.assert_allclose(depth_to_mag5(d), -2.5 * (np.log10(5 / np.sqrt(d)) - 9))
    np.testing.assert_allclose(mag5_to_depth(depth_to_mag5(d)), d, rtol=1e-10)
    assert np.isnan(depth_to_mag5(0.0))


def test_mw_transmission_coefficients():
    assert mw_transmission(0.1, "g") == pytest.approx(10 ** (-0.4 * 3.214 * 0.1))
    assert mw_transmission(0.0, "z") == 1.0
    with pytest.raises(ValueError, match="unknown band 'y'"):
        mw_transmission(0.1, "y")


def test_maskbits_match_spec_table():
    spec = {0: "NPRIMARY", 1: "BRIGHT", 5: "ALLMASK_G", 11: "MEDIUM", 12: "GALAXY", 13: "CLUSTER", 16: "SUB_BLOB"}
    for bit, name in spec.items():
        assert int(MASKBITS[name]) == 1 << bit
    assert maskbits_mask(DEFAULT_EXCLUDED_MASKBITS) == 0x2 | 0x20 | 0x40 | 0x80 | 0x800 | 0x1000 | 0x2000
    assert maskbits_mask(["bright", 12]) == 0x1002
    np.testing.assert_array_equal(has_any_bits([0, 0x2, 0x4, 0x1000], [1, 12]), [False, True, False, True])
    with pytest.raises(ValueError, match="outside 0..16"):
        maskbits_mask([17])


def test_axis_ratio_from_tractor_ellipticity():
    q, phi = shape_to_axis_ratio(0.5, 0.0)
    assert q == pytest.approx(1 / 3)  # (1-0.5)/(1+0.5)
    assert phi == pytest.approx(0.0)
    _, phi = shape_to_axis_ratio(0.0, 0.3)
    assert phi == pytest.approx(np.pi / 4)


def test_sweep_dtype_roundtrips_through_fits_with_spec_tforms(tmp_path):
    dt = sweep_numpy_dtype()
    arr = np.zeros(3, dtype=dt)
    arr["TYPE"] = [b"PSF", b"SER", b"REX"]
    arr["BRICKNAME"] = b"1126p222"
    arr["RA"] = [1.0, 2.0, 3.0]
    hdu = fits.BinTableHDU(arr, name="SWEEP")
    path = tmp_path / "sweep-000p000-005p005.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    with fits.open(path) as h:
        assert h[1].header["EXTNAME"] == "SWEEP"
        cols = {c.name: c.format for c in h[1].columns}
    expected = {"RELEASE": "I", "BRICKID": "J", "BRICKNAME": "8A", "TYPE": "3A", "RA": "D", "DCHISQ": "5E",
                "NOBS_Z": "I", "MASKBITS": "J", "FITBITS": "I", "WISEMASK_W1": "B", "REF_ID": "K"}
    for name, tform in expected.items():
        assert cols[name] == tform, name
        assert SWEEP_SCHEMA[name].tform == tform
    t = Table.read(path, hdu=1)
    check_sweep_columns({c: t[c].dtype for c in t.colnames}, source=str(path))
    assert list(decode_type(t["TYPE"])) == ["PSF", "SER", "REX"]


def test_schema_check_names_problems():
    good = {n: np.dtype(SWEEP_SCHEMA[n].dtype) for n in ("RA", "DEC", "TYPE")}
    with pytest.raises(SchemaError, match="missing required column"):
        check_sweep_columns(good, source="sweep-x.fits")
    bad = dict(good, NOBS_Z=np.dtype("f4"), BOGUS=np.dtype("f4"))
    with pytest.raises(SchemaError) as exc:
        check_sweep_columns(bad, required=("RA",), source="sweep-x.fits")
    msg = str(exc.value)
    assert "sweep-x.fits" in msg and "BOGUS" in msg and "NOBS_Z has dtype float32" in msg


def test_sweep_names_and_boxes():
    assert sweep_filename(0, 5, -10, -5) == "sweep-000m010-005m005.fits"
    assert sweep_filename(355, 360, -5, 0) == "sweep-355m005-360p000.fits"
    assert parse_sweep_filename("/x/sweep-000m005-005p000.fits") == (0.0, 5.0, -5.0, 0.0)
    assert sweep_box(359.9, -0.1) == (355.0, 360.0, -5.0, 0.0)
    with pytest.raises(ValueError, match="not a DR10 sweep file name"):
        parse_sweep_filename("sweep-00m010-005m005.fits")
    assert list(brickname([112.6, 0.1], [22.2, -4.05])) == ["1126p222", "0001m040"]


def test_vectorised_sweep_boxes_equal_sweep_box():
    from lensaudit.survey.geometry import sweep_boxes

    rng = np.random.default_rng(3)
    ra = np.r_[rng.uniform(0, 360, 2000), 0.0, 359.999999, 5.0, 10.0]
    dec = np.r_[rng.uniform(-90, 90, 2000), -90.0, 90.0, 85.0, -5.0]
    np.testing.assert_array_equal(sweep_boxes(ra, dec), np.array([sweep_box(a, d) for a, d in zip(ra, dec, strict=True)]))
    with pytest.raises(ValueError, match="2 coordinates out of range, first ra=360.0"):
        sweep_boxes([1.0, 360.0, 5.0], [0.0, 0.0, 91.0])


def test_cutout_wcs_geometry():
    w = cutout_wcs(150.0, 2.0, 101)
    ra, dec = w.pixel_to_world_values(50, 50)  # 0-based centre of a 101 stamp
    assert ra == pytest.approx(150.0) and dec == pytest.approx(2.0)
    np.testing.assert_allclose(proj_plane_pixel_scales(w) * 3600, [0.262, 0.262])
    ra2, _ = w.pixel_to_world_values(51, 50)
    assert ra2 < ra  # east left


def test_fast_sweep_writer_gives_astropys_bytes(tmp_path, monkeypatch):
    """write_sweep_fits writes the rows itself: the file must be byte for byte what astropy writes,
    blank and partly blank strings, logicals, unsigned bytes and the DCHISQ sub-array included."""
    import lensaudit.survey.sweepio as sw

    arr = sw.synthetic_sweep_rows(1500, (150, 155, 0, 5), seed=1)
    rng = np.random.default_rng(0)
    arr["REF_CAT"] = np.array([b"  ", b"G ", b" G", b"GE", b""])[rng.integers(0, 5, len(arr))]
    arr["TYPE"] = np.array([b"PSF", b"   ", b"R X", b"EX "])[rng.integers(0, 4, len(arr))]
    arr["GAIA_PHOT_VARIABLE_FLAG"] = rng.random(len(arr)) < 0.5
    arr["WISEMASK_W1"] = rng.integers(0, 256, len(arr))
    arr["DCHISQ"] = rng.normal(size=(len(arr), 5))
    sub = arr[["RA", "DEC", "TYPE", "GAIA_PHOT_VARIABLE_FLAG", "DCHISQ"]]  # a strided view: the field-wise path
    odd = np.zeros(3, dtype=[("RA", "<f8"), ("NOBS_G", "<u2")])            # needs TZERO: astropy writes it
    assert sw._bintable_rows(odd) is None
    box = (150, 155, 0, 5)
    before = arr.copy()
    fast = [sw.write_sweep_fits(a, tmp_path / f"fast{i}.fits", box).read_bytes() for i, a in enumerate((arr, sub))]
    assert arr.tobytes() == before.tobytes()                    # not consumed: the caller's rows are untouched
    given = arr.copy()                                          # consumed: converted in place, the same bytes
    assert sw.write_sweep_fits(given, tmp_path / "given.fits", box, consume=True).read_bytes() == fast[0]
    assert given.tobytes() != before.tobytes()
    monkeypatch.setattr(sw, "_bintable_rows", lambda a, in_place=False: None)
    slow = [sw.write_sweep_fits(a, tmp_path / f"slow{i}.fits", box).read_bytes() for i, a in enumerate((arr, sub))]
    assert fast[0] == slow[0] and fast[1] == slow[1]
    back = sw.read_sweep(tmp_path / "fast0.fits", columns=("TYPE", "REF_CAT", "GAIA_PHOT_VARIABLE_FLAG", "DCHISQ"))
    assert back["TYPE"].tolist() == [t.decode().strip() for t in arr["TYPE"]]
    assert back["REF_CAT"].tolist() == [t.decode().strip() for t in arr["REF_CAT"]]
    with fits.open(tmp_path / "fast0.fits") as h:       # what astropy's own decoding gives, stripped
        assert back["TYPE"].tolist() == [t.strip() for t in h[1].data["TYPE"]]
    bad = arr.copy()
    bad["TYPE"][7] = b"\xe9X "
    sw.write_sweep_fits(bad, tmp_path / "bad.fits", box)
    with pytest.raises(SchemaError, match=r"bad.fits: column TYPE holds bytes that are not ASCII"):
        sw.read_sweep(tmp_path / "bad.fits", columns=("RA", "TYPE"))
    np.testing.assert_array_equal(back["GAIA_PHOT_VARIABLE_FLAG"].to_numpy(), arr["GAIA_PHOT_VARIABLE_FLAG"])

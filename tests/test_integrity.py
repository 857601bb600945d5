"""Integrity code stated exactly: the QA rules and statistics, the service FITS layout both ways,
and every problem the store's verification must report."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from lensaudit.cutouts.qa import QA_FIELDS, QAConfig, assess
from lensaudit.cutouts.store import CutoutStore, StoreCorruptError
from lensaudit.survey.cutout_fits import CutoutFormatError, cutout_fits_bytes, cutout_hdulist, read_cutout_fits
from lensaudit.survey.geometry import angular_separation_arcsec, brickname, centre_region, cutout_header, sweep_box

RNG = np.random.default_rng(5)


# ----------------------------------------------------------------------------- QA
def _independent_sky(plane: np.ndarray) -> tuple[float, float]:
    n = plane.shape[0]
    vals = [plane[y, x] for y in range(n) for x in range(n)
            if np.hypot(y - (n - 1) / 2, x - (n - 1) / 2) > n / 4 and np.isfinite(plane[y, x])]
    med = float(np.median(vals))
    return med, float(np.median(np.abs(np.array(vals) - med)))


def test_sky_statistics_match_an_independent_loop_on_an_asymmetric_image():
    yy, xx = np.mgrid[0:41, 0:41]
    cube = np.stack([0.01 * xx + 0.003 * yy ** 1.5, 0.02 * yy + RNG.normal(0, 0.01, (41, 41)),
                     np.exp(-((xx - 12) ** 2 + (yy - 30) ** 2) / 50.0)]).astype(np.float32)
    ok, reason, qa = assess(cube, QAConfig(central_box_pix=10, core_box_pix=4))
    assert ok and reason == "" and set(qa) == set(QA_FIELDS)
    for i, b in enumerate("grz"):
        med, mad = _independent_sky(cube[i])
        assert qa[f"sky_median_{b}"] == pytest.approx(med, rel=1e-6) and qa[f"sky_mad_{b}"] == pytest.approx(mad, rel=1e-6)
        assert qa[f"has_{b}"] is True


@pytest.mark.parametrize("shape", [(101, 101), (2, 101, 101), (3, 101, 100), (4, 101, 101)])
def test_wrong_shapes_are_rejected_before_anything_else(shape):
    ok, reason, qa = assess(np.zeros(shape, np.float32))
    assert (ok, qa) == (False, {}) and reason == f"wrong_shape: {shape}"


def test_missing_bands_are_named_in_order():
    c = RNG.normal(0.01, 0.01, (3, 41, 41)).astype(np.float32)
    c[0] = 0.0
    c[2] = np.nan
    ok, reason, qa = assess(c, QAConfig(central_box_pix=10, core_box_pix=4))
    assert not ok and reason.startswith("missing_band: g,z all zero or NaN")
    assert (qa["has_g"], qa["has_r"], qa["has_z"]) == (False, True, False)
    assert np.isnan(qa["sky_median_z"]) and np.isnan(qa["sky_mad_z"]) and qa["sky_median_g"] == 0.0


def test_one_finite_nonzero_pixel_makes_a_band_present():
    c = RNG.normal(0.01, 0.01, (3, 41, 41)).astype(np.float32)
    c[1] = np.nan
    c[1, 2, 2] = 0.5  # outside the centre
    _, reason, qa = assess(c, QAConfig(central_box_pix=10, core_box_pix=4))
    assert qa["has_r"] is True and not reason.startswith("missing_band")
    assert qa["sky_median_r"] == pytest.approx(0.5) and qa["sky_mad_r"] == 0.0


def test_overall_nan_fraction_limit_is_inclusive():
    cfg = QAConfig(central_box_pix=10, core_box_pix=4, max_nan_frac=0.25)
    c = RNG.normal(0.01, 0.01, (3, 20, 20)).astype(np.float32)
    outer = np.ones((20, 20), bool)
    outer[5:15, 5:15] = False
    idx = np.argwhere(outer)
    flat = [(b, y, x) for b in range(3) for y, x in idx][:300]   # 300 of 1200 = exactly 25 percent
    for b, y, x in flat:
        c[b, y, x] = np.nan
    ok, reason, qa = assess(c, cfg)
    assert ok and qa["nan_frac"] == 0.25
    b, y, x = [(b, y, x) for b in range(3) for y, x in idx][300]
    c[b, y, x] = np.nan
    ok, reason, _ = assess(c, cfg)
    assert not ok and reason.startswith("nan_frac: 25.1% NaN overall (limit 25%)")


# ----------------------------------------------------------------------------- service FITS layout
def test_layout_of_one_band_non_square_cutouts_and_invvar():
    cube = RNG.normal(0, 1, (1, 30, 40))
    ivar = np.abs(RNG.normal(10, 1, (1, 30, 40)))
    with fits.open(io.BytesIO(cutout_fits_bytes(cube, 10.0, -3.0, bands="r", pixscale_arcsec=0.5, invvar=ivar))) as h:
        assert h[0].data.shape == (30, 40) and h[0].data.dtype == np.dtype(">f4")
        assert h[0].header["IMAGEW"] == 40 and h[0].header["IMAGEH"] == 30
        assert h[0].header["CRPIX1"] == 20.5 and h[0].header["CRPIX2"] == 15.5
        assert h[0].header["CD2_2"] == pytest.approx(0.5 / 3600) and h[0].header["CD1_2"] == 0.0
        assert (h[0].header["BANDS"], h[0].header["BAND0"], h[0].header["SURVEY"], h[0].header["VERSION"]) == \
            ("r", "r", "LegacySurvey", "DR10")
        assert len(h) == 2 and h[1].header["IMAGETYP"] == "INVVAR" and h[0].header["IMAGETYP"] == "IMAGE"
        np.testing.assert_allclose(h[1].data, ivar[0].astype(np.float32))
        assert h[1].data.dtype == np.dtype(">f4")
    hd = cutout_hdulist(RNG.normal(0, 1, (3, 5, 5)), 1.0, 1.0, invvar=np.ones((3, 5, 5)))
    assert hd[0].data.shape == (3, 5, 5) and hd[1].data.shape == (3, 5, 5)
    with pytest.raises(ValueError, match="does not match bands"):
        cutout_hdulist(np.zeros((2, 5, 5)), 1.0, 1.0, bands="grz")
    with pytest.raises(ValueError, match="does not match bands"):
        cutout_hdulist(np.zeros((5, 5)), 1.0, 1.0, bands="grz")


def test_reading_back_what_was_written_and_the_error_texts():
    cube = RNG.normal(0, 1, (3, 21, 21)).astype(np.float32)
    got, hdr = read_cutout_fits(cutout_fits_bytes(cube, 5.0, 5.0), expected_size=21)
    np.testing.assert_array_equal(got, cube)
    assert got.dtype == np.float32 and got.dtype.byteorder in "=|" and hdr["CRVAL1"] == 5.0
    one, _ = read_cutout_fits(cutout_fits_bytes(cube[:1], 5.0, 5.0, bands="g"), bands="g")
    assert one.shape == (1, 21, 21)
    with pytest.raises(CutoutFormatError, match=r"response is not FITS \(starts with 'no such layer") as e:
        read_cutout_fits("no such layer é".encode("latin-1") + b"x" * 3000)
    assert e.value.reason == "not_fits" and "\ufffd" in str(e.value) and len(str(e.value).split("'")[1]) == 60
    bad = bytearray(cutout_fits_bytes(cube, 5.0, 5.0))
    bad[80:160] = b"BITPIX  = 'abc'" + b" " * 65                      # a header astropy cannot use
    with pytest.raises(CutoutFormatError, match="cannot parse FITS") as e:
        read_cutout_fits(bytes(bad))
    assert e.value.reason == "corrupt"
    bad[80:160] = b"BITPIX  =                  -99" + b" " * 49       # a header that promises more data
    with pytest.raises(CutoutFormatError) as e:
        read_cutout_fits(bytes(bad))
    assert e.value.reason == "truncated"


# ----------------------------------------------------------------------------- geometry
def test_sweep_box_edges():
    assert sweep_box(0.0, 0.0) == (0.0, 5.0, 0.0, 5.0)
    assert sweep_box(151.0, 1.0) == (150.0, 155.0, 0.0, 5.0)
    assert sweep_box(359.999, -90.0) == (355.0, 360.0, -90.0, -85.0)
    assert sweep_box(10.0, 90.0) == (10.0, 15.0, 85.0, 90.0)     # the pole belongs to the last box
    assert sweep_box(10.0, 87.0) == (10.0, 15.0, 85.0, 90.0)
    for ra, dec in ((360.0, 0.0), (-0.001, 0.0), (10.0, 90.001), (10.0, -90.001)):
        with pytest.raises(ValueError, match="out of range"):
            sweep_box(ra, dec)


def test_brickname_is_computed_in_float64_whatever_the_input():
    # float32(112.6) is 112.59999847...: in float64 x 10 that is 1125.99..., not float32's rounded 1126
    assert brickname(np.float32(112.6), np.float32(22.2))[0] == "1125p222"
    assert brickname(112.6, 22.2)[0] == "1126p222"
    assert brickname(np.array([10], dtype=np.int64), np.array([-4], dtype=np.int64))[0] == "0100m040"
    assert brickname([112.6], [22.2]).dtype == np.dtype("<U8")


def test_cutout_header_values():
    h = cutout_header(10.0, 20.0, width=50, height=30, pixscale_arcsec=0.5)
    assert (h["CTYPE1"], h["CTYPE2"]) == ("RA---TAN", "DEC--TAN")
    assert (h["CRVAL1"], h["CRVAL2"], h["CRPIX1"], h["CRPIX2"]) == (10.0, 20.0, 25.5, 15.5)
    assert (h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"]) == (-0.5 / 3600, 0.0, 0.0, 0.5 / 3600)
    assert (h["IMAGEW"], h["IMAGEH"]) == (50, 30)
    assert centre_region(10, 10) == (slice(0, 10), slice(0, 10))
    with pytest.raises(ValueError, match="larger than stamp"):
        centre_region(10, 11)


def test_angular_separation_is_exact_at_milliarcsec_for_float32_input():
    ra = np.array([150.0], dtype=np.float64)
    got = angular_separation_arcsec(ra, 2.0, ra + 1e-6, 2.0)  # 1e-6 deg of RA at Dec 2
    assert got[0] == pytest.approx(3.6e-3 * np.cos(np.deg2rad(2.0)), rel=1e-6)
    assert angular_separation_arcsec(np.float32(0.0), np.float32(0.0), 0.0, 1.0)[()] == pytest.approx(3600.0)
    assert angular_separation_arcsec(10.0, 89.9, 190.0, 89.9) == pytest.approx(720.0, rel=1e-9)  # across the pole
    assert angular_separation_arcsec(0.0, 0.0, 180.0, 0.0) == pytest.approx(180 * 3600.0)


# ----------------------------------------------------------------------------- store verification
def _store(tmp_path, n_shards=2, per=3):
    s = CutoutStore(tmp_path / "s", create=True)
    cubes = RNG.normal(0, 0.01, (n_shards * per, 3, 101, 101)).astype(np.float32)
    for k in range(n_shards):
        with s.writer() as w:
            for i in range(per):
                w.add(f"c{k}_{i}", cubes[k * per + i], 1.0 + k + i * 0.01, 0.0)
    return CutoutStore(tmp_path / "s"), cubes


def test_verify_report_of_a_healthy_store(tmp_path):
    s, _ = _store(tmp_path)
    rep = s.verify()
    assert rep == {"store": str(tmp_path / "s"), "n_cutouts": 6, "n_shards": 2, "orphans": [], "problems": [],
                   "ok": True}
    (tmp_path / "s" / "shards" / "shard-000099-abcdef01.h5").write_bytes(b"")
    assert CutoutStore(tmp_path / "s").verify()["orphans"] == ["shard-000099-abcdef01.h5"]


def test_verify_reports_every_problem_in_every_shard(tmp_path):
    s, _ = _store(tmp_path, n_shards=3)
    shards = sorted((tmp_path / "s" / "shards").glob("*.h5"))
    shards[0].write_bytes(b"garbage")                               # unreadable
    idx_files = sorted((tmp_path / "s" / "index").glob("*.parquet"))
    t = pq.read_table(idx_files[1]).to_pandas()
    t.loc[2, "offset"] = 3                                          # == number of cutouts: out of range
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), idx_files[1])
    t = pq.read_table(idx_files[2]).to_pandas()
    t.loc[0, "id"], t.loc[1, "id"] = "c2_1", "c2_0"                 # two ids swapped with the shard's
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), idx_files[2])
    with pytest.raises(StoreCorruptError) as e:
        CutoutStore(tmp_path / "s").verify()
    msg = str(e.value)
    assert "3 problem(s)" in msg
    assert f"cannot open shard {shards[0].name}" in msg
    assert f"shard {shards[1].name}: index offsets exceed its 3 cutouts" in msg
    assert f"shard {shards[2].name}: 2 index id(s) disagree with the shard" in msg
    assert msg.index(shards[0].name) < msg.index(shards[1].name) < msg.index(shards[2].name)  # in shard order


def test_verify_offset_boundary(tmp_path):
    s, _ = _store(tmp_path, n_shards=1)
    f = next((tmp_path / "s" / "index").glob("*.parquet"))
    t = pq.read_table(f).to_pandas()
    t["offset"] = [2, 1, 0]   # reversed: every offset valid (the last is 2 = n - 1), ids now disagree
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), f)
    with pytest.raises(StoreCorruptError, match="2 index id"):  # the middle one still matches
        CutoutStore(tmp_path / "s").verify()


def test_failures_are_recorded_and_the_latest_record_wins(tmp_path):
    s = CutoutStore(tmp_path / "s", create=True)
    assert list(s.failures().columns) == ["id", "ra", "dec", "reason", "url", "attempts", "time_utc"] and not len(s.failures())
    with s.writer() as w:
        w.add_failure("a", 1.0, 2.0, "http_500", url="u1", attempts=3)
        w.add_failure("b", 1.5, 2.0, "timeout")
    with s.writer() as w:
        w.add_failure("a", 1.0, 2.0, "not_fits", url="u2", attempts=1)
    f = CutoutStore(tmp_path / "s").failures().set_index("id")
    assert len(f) == 2 and f.loc["a", "reason"] == "not_fits" and f.loc["a", "url"] == "u2"
    assert f.loc["b", "ra"] == 1.5 and isinstance(f.index[0], str)
    assert len(CutoutStore(tmp_path / "s")) == 0  # failures are never data


def test_store_metadata_and_version_checks(tmp_path):
    s = CutoutStore(tmp_path / "s", create=True, size=64, bands="gr", shard_size=10)
    import json

    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    assert meta == {**meta, "format": "lensaudit-cutout-store", "version": 1, "size_pix": 64, "bands": "gr",
                    "dtype": "float32", "units": "nanomaggy", "pixscale_arcsec": 0.262, "shard_size": 10,
                    "layout": "(n, band, y, x)"}
    assert (s.size, s.bands, s.shard_size) == (64, "gr", 10)
    with s.writer() as w:
        w.add("x", np.zeros((2, 64, 64), np.float32), 0.0, 0.0)
        with pytest.raises(ValueError, match=r"shape \(3, 64, 64\)"):
            w.add("y", np.zeros((3, 64, 64), np.float32), 0.0, 0.0)
        with pytest.raises(ValueError, match="not floating point"):
            w.add("z", np.zeros((2, 64, 64), np.int32), 0.0, 0.0)
    meta["version"] = 2
    (tmp_path / "s" / "store.json").write_text(json.dumps(meta))
    from lensaudit.cutouts.store import StoreError

    with pytest.raises(StoreError, match="newer than this lensaudit reads"):
        CutoutStore(tmp_path / "s")


def test_reader_edge_layouts_and_its_default_source_name():
    cube = RNG.normal(0, 1, (3, 9, 9)).astype(np.float32)
    # errors name the object: "cutout" unless the caller says which
    with pytest.raises(CutoutFormatError, match=r"^cutout: empty response body$"):
        read_cutout_fits(b"")
    # a FITS file whose first HDU has no image: "no_data" (not a dtype complaint about an empty array)
    empty = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU()]).writeto(empty)
    with pytest.raises(CutoutFormatError, match=r"^cutout: FITS HDU0 has no image data$") as e:
        read_cutout_fits(empty.getvalue())
    assert e.value.reason == "no_data"
    # one band stored as a (1, N, N) cube reads as it is; as an (N, N) plane it gains the band axis
    for data in (cube[:1], cube[0]):
        b = io.BytesIO()
        fits.PrimaryHDU(data=data).writeto(b)
        got, _ = read_cutout_fits(b.getvalue(), expected_size=9, bands="r")
        np.testing.assert_array_equal(got, cube[:1])
    # headers without BANDS / BANDi cards (older files, other writers) are taken at the caller's word
    b = io.BytesIO()
    fits.PrimaryHDU(data=cube).writeto(b)
    got, hdr = read_cutout_fits(b.getvalue(), bands="grz")
    assert "BANDS" not in hdr and "BAND0" not in hdr
    np.testing.assert_array_equal(got, cube)
    # and a header that names other bands is refused, plane by plane
    hdr = fits.Header({"BANDS": "grz", "BAND0": "g", "BAND1": "i", "BAND2": "z"})
    b = io.BytesIO()
    fits.PrimaryHDU(data=cube, header=hdr).writeto(b)
    with pytest.raises(CutoutFormatError, match=r"header BAND1='i', expected 'r'"):
        read_cutout_fits(b.getvalue(), bands="grz")


def test_axis_ratio_is_float64_whatever_the_input():
    from lensaudit.survey.photometry import shape_to_axis_ratio

    e1, e2 = np.float32([0.3]), np.float32([0.1])
    q, phi = shape_to_axis_ratio(e1, e2)
    e = np.hypot(float(e1[0]), float(e2[0]))                 # the float32 values, in float64 arithmetic
    assert q.dtype == np.float64 and phi.dtype == np.float64
    assert q[0] == pytest.approx((1 - e) / (1 + e), rel=1e-14)
    q, _ = shape_to_axis_ratio([0], [0])        # integers: a round galaxy
    assert q.dtype == np.float64 and q[0] == 1.0


def test_store_membership_ids_copies_and_opening(tmp_path):
    import copy

    from lensaudit.cutouts import StoreError, open_store

    s, cubes = _store(tmp_path)
    assert "c1_2" in s and "c9_9" not in s and "c0_0" in open_store(tmp_path / "s")
    np.testing.assert_array_equal(s.ids(), np.array(["c0_0", "c0_1", "c0_2", "c1_0", "c1_1", "c1_2"], dtype=object))
    with pytest.raises(StoreError, match="store"):
        open_store(tmp_path / "not_a_store")
    # a copy (as a DataLoader worker gets) opens its own shard handles, never the parent's
    s.get(["c0_0", "c1_0"])
    assert s._handles
    c = copy.copy(s)
    assert c._handles == {} and s._handles
    np.testing.assert_array_equal(c.get(["c1_1"])[0], cubes[4])


def test_failure_records_keep_every_column(tmp_path):
    s = CutoutStore(tmp_path / "s", create=True)
    with s.writer() as w:
        w.add_failure(7, 1.25, -2.5, "http_404", attempts=2)
    f = CutoutStore(tmp_path / "s").failures()
    assert list(f.columns) == ["id", "ra", "dec", "reason", "time_utc", "attempts"]
    assert list(f.index) == [0] and f.loc[0, "id"] == "7" and f.loc[0, "dec"] == -2.5
    assert pd.Timestamp(f.loc[0, "time_utc"]).tzinfo is not None
    # records written by another tool with integer ids still come back keyed by string ids
    pq.write_table(pa.table({"id": [7, 8], "ra": [1.0, 2.0], "dec": [0.0, 0.0], "reason": ["a", "b"]}),
                   tmp_path / "s" / "failures" / "part-zzzz.parquet")
    f = CutoutStore(tmp_path / "s").failures()
    assert list(f["id"]) == ["7", "8"] and list(f["reason"]) == ["a", "b"]


def test_verify_names_the_shard_size_and_accepts_one_cutout_shards(tmp_path):
    s, _ = _store(tmp_path, n_shards=1, per=1)           # a shard of one cutout at offset 0 is healthy
    assert s.verify()["n_cutouts"] == 1
    s, _ = _store(tmp_path / "b", n_shards=1)
    f = next((tmp_path / "b" / "s" / "index").glob("*.parquet"))
    t = pq.read_table(f).to_pandas()
    t["offset"] = [0, 1, 3]
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), f)
    with pytest.raises(StoreCorruptError, match=r"index offsets exceed its 3 cutouts"):
        CutoutStore(tmp_path / "b" / "s").verify()


def test_orphans_include_temp_files_in_every_folder(tmp_path):
    s, _ = _store(tmp_path)
    made = [tmp_path / "s" / sub / f".part-{sub}.tmp" for sub in ("shards", "index", "failures")]
    for p in made:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
    (tmp_path / "s" / "index" / ".upper.TMP").write_bytes(b"x")   # not ours: temp files end in .tmp
    assert s.orphans() == sorted(made)
    assert s.repair() == sorted(made) and not any(p.exists() for p in made)


def test_header_bands_card_must_match_the_request():
    cube = RNG.normal(0, 1, (3, 9, 9)).astype(np.float32)
    b = io.BytesIO()
    fits.PrimaryHDU(data=cube, header=fits.Header({"BANDS": "gri"})).writeto(b)
    with pytest.raises(CutoutFormatError, match=r"header BANDS='gri', requested 'grz'") as e:
        read_cutout_fits(b.getvalue(), bands="grz")
    assert e.value.reason == "wrong_bands"


def test_antipodal_separations_stay_finite_and_bricknames_use_float64_dec():
    for dec in (0.0, 10.0, -88.37668834417208):   # sin^2 + cos^2 rounds above 1 at the last: clipped, not NaN
        got = angular_separation_arcsec(17.0, dec, 197.0, -dec)
        assert np.isfinite(got) and got == pytest.approx(180 * 3600.0, rel=1e-7)   # haversine: ~1e-8 near antipodes
    # float32(0.7) is 0.69999999 in float64 (brick row 006); float32 arithmetic would round 10 x it to 7
    assert brickname(150.0, np.float32(0.7))[0] == brickname(150.0, float(np.float32(0.7)))[0] == "1500p006"

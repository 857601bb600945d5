"""Service FITS layout: writer and reader agree with astropy and reject malformed payloads."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from lensaudit.survey.cutout_fits import CutoutFormatError, cutout_fits_bytes, read_cutout_fits


def _cube(shape=(3, 101, 101), seed=0):
    return np.random.default_rng(seed).normal(0, 0.01, shape).astype(np.float32)


def test_layout_matches_spec():
    cube = _cube()
    raw = cutout_fits_bytes(cube, 10.5, -3.25, bands="grz", invvar=np.ones_like(cube))
    with fits.open(io.BytesIO(raw)) as h:
        hdr = h[0].header
        assert h[0].data.shape == (3, 101, 101) and h[0].data.dtype == np.dtype(">f4")
        assert hdr["BANDS"] == "grz" and [hdr[f"BAND{i}"] for i in range(3)] == ["g", "r", "z"]
        assert hdr["CRPIX1"] == 51.0 and hdr["CD1_1"] < 0 and hdr["IMAGETYP"] == "IMAGE"
        assert hdr["SURVEY"] == "LegacySurvey" and hdr["VERSION"] == "DR10"
        assert "EXTNAME" not in hdr and h[1].header["IMAGETYP"] == "INVVAR"
        w = WCS(hdr, naxis=2)
        assert w.pixel_to_world_values(50, 50) == pytest.approx((10.5, -3.25))
    data, _ = read_cutout_fits(raw, 101)
    np.testing.assert_array_equal(data, cube)
    assert data.dtype == np.float32 and data.dtype.byteorder in "=|<"


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda raw: raw[: len(raw) // 2], "truncated"),
        (lambda raw: raw[:5000], "truncated"),
        (lambda raw: b"<html>Internal Server Error</html>", "not_fits"),
        (lambda raw: b"", "empty"),
    ],
)
def test_broken_payloads(mutate, reason):
    raw = cutout_fits_bytes(_cube(), 1.0, 1.0)
    with pytest.raises(CutoutFormatError) as exc:
        read_cutout_fits(mutate(raw), 101, source="cutout X")
    assert exc.value.reason == reason and "cutout X" in str(exc.value)


def test_wrong_shape_and_missing_band():
    with pytest.raises(CutoutFormatError, match="64x64 pixels, expected 101x101") as e1:
        read_cutout_fits(cutout_fits_bytes(_cube((3, 64, 64)), 1, 1), 101)
    assert e1.value.reason == "wrong_shape"
    with pytest.raises(CutoutFormatError, match="2 band plane") as e2:
        read_cutout_fits(cutout_fits_bytes(_cube((2, 101, 101)), 1, 1, bands="gr"), 101)
    assert e2.value.reason == "missing_band"


@pytest.mark.parametrize("bands,shape,with_invvar", [("grz", (3, 101, 101), False), ("grz", (3, 101, 101), True),
                                                     ("r", (1, 64, 64), False), ("gz", (2, 51, 31), True)])
def test_fast_writer_gives_astropys_bytes(bands, shape, with_invvar):
    """cutout_fits_bytes (cached headers, raw pixels) must write exactly what astropy's writer writes."""
    from lensaudit.survey.cutout_fits import cutout_hdulist

    rng = np.random.default_rng(7)
    for ra, dec in ((150.123456789, 2.2), (0.0, -89.99999), (359.99999999, 45.123456789012), (12.0, 0.0)):
        cube = rng.normal(size=shape).astype(np.float32)
        iv = rng.random(shape).astype(np.float32) if with_invvar else None
        buf = io.BytesIO()
        cutout_hdulist(cube, ra, dec, bands=bands, invvar=iv).writeto(buf)
        fast = cutout_fits_bytes(cube, ra, dec, bands=bands, invvar=iv)
        assert fast == buf.getvalue()
        back, hdr = read_cutout_fits(fast, bands=bands)
        assert hdr["CRVAL1"] == ra and hdr["CRVAL2"] == dec
        np.testing.assert_array_equal(back, cube[0] if len(bands) == 1 and back.ndim == 2 else cube)
    with pytest.raises(ValueError, match="does not match bands"):
        cutout_fits_bytes(np.zeros((2, 8, 8), np.float32), 1.0, 1.0, bands="grz")

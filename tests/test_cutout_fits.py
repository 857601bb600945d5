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


def _astropy_read(raw):
    with fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=False) as h:
        return np.array(h[0].data), h[0].header.copy()


def test_single_image_fast_path_reads_what_astropy_reads(monkeypatch):
    """Service bytes of one float32 image are read without fits.open (pixels, NaN and header cards as astropy
    gives them); anything else - an inverse-variance HDU, scaled data, trailing bytes, a missing END - goes
    through fits.open, so a scaled image is still unscaled and a damaged one still named."""
    import lensaudit.survey.cutout_fits as cf

    rng = np.random.default_rng(5)
    cases = [("grz", (3, 101, 101)), ("r", (1, 64, 64)), ("gz", (2, 51, 31))]
    for bands, shape in cases:
        cube = rng.normal(size=shape).astype(np.float32)
        cube[0, 3, 4], cube[-1, -1, -1] = np.nan, np.inf
        raw = cutout_fits_bytes(cube, 150.25, -2.5, bands=bands)
        assert cf._single_float32_image(raw) is not None
        data, hdr = read_cutout_fits(raw, bands=bands)
        ref_data, ref_hdr = _astropy_read(raw)
        ref_data = ref_data[None] if ref_data.ndim == 2 else ref_data
        assert np.array_equal(data, ref_data, equal_nan=True) and data.dtype == np.float32 and data.flags.c_contiguous
        assert hdr.tostring() == ref_hdr.tostring()
    # the fast path is what reads them: with fits.open broken, service bytes still parse
    raw = cutout_fits_bytes(_cube(), 1.0, 1.0)

    def no_open(*a, **k):
        raise AssertionError("fits.open called")

    monkeypatch.setattr(cf.fits, "open", no_open)
    np.testing.assert_array_equal(read_cutout_fits(raw, 101)[0], _cube())
    with pytest.raises(CutoutFormatError, match="fits.open called"):  # two HDUs: astropy reads (and checks) both
        read_cutout_fits(cutout_fits_bytes(_cube(), 1.0, 1.0, invvar=np.ones((3, 101, 101), np.float32)), 101)
    monkeypatch.undo()
    # left to astropy: scaled integers (BSCALE/BZERO applied), bytes after the HDU, no END card
    hdu = fits.PrimaryHDU(data=np.arange(3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8))
    hdu.header["BANDS"] = "grz"
    hdu.scale("int16", bscale=0.5, bzero=10.0)
    buf = io.BytesIO()
    hdu.writeto(buf)
    assert cf._single_float32_image(buf.getvalue()) is None
    np.testing.assert_array_equal(read_cutout_fits(buf.getvalue())[0], np.arange(192, dtype=np.float32).reshape(3, 8, 8))
    assert cf._single_float32_image(raw + b"\0" * 2880) is None
    assert cf._single_float32_image(raw.replace(b"END" + b" " * 77, b"COMMENT" + b" " * 73)) is None
    with pytest.raises(CutoutFormatError) as exc:
        read_cutout_fits(raw.replace(b"END" + b" " * 77, b"COMMENT" + b" " * 73), 101)
    assert exc.value.reason in ("truncated", "corrupt")
    # a header whose data no longer fit the payload is astropy's to judge; one that still fits reads as astropy reads
    four = raw.replace(b"NAXIS3  =                    3", b"NAXIS3  =                    4")
    assert four != raw and cf._single_float32_image(four) is None
    with pytest.raises(CutoutFormatError) as exc:
        read_cutout_fits(four, 101)
    assert exc.value.reason == "truncated"
    narrow = raw.replace(b"NAXIS1  =                  101", b"NAXIS1  =                  100")
    got = cf._single_float32_image(narrow)
    assert got is not None and np.array_equal(got[0], _astropy_read(narrow)[0]) and got[0].shape == (3, 101, 100)


def _card(text: str) -> bytes:
    return text.ljust(80).encode("latin-1")[:80]


def _replace_card(raw: bytes, key: str, card: str) -> bytes:
    """``raw`` with the card of keyword ``key`` replaced by ``card`` (80 columns)."""
    for pos in range(0, 2880, 80):
        if raw[pos : pos + 8].decode().rstrip() == key:
            return raw[:pos] + _card(card) + raw[pos + 80 :]
    raise KeyError(key)


def _outcome(raw, header):
    try:
        cube, hdr = read_cutout_fits(raw, 101, "grz", header=header)
    except CutoutFormatError as exc:
        return ("error", exc.reason, str(exc))
    return ("ok", cube.tobytes(), hdr is None)


@pytest.mark.parametrize("key, card", [
    ("BANDS", "BANDS   = 'gzr'"),                                   # wrong bands
    ("BANDS", "BANDS   =              'grz'   / free-format value"),
    ("BAND1", "BAND1   = 'r''x'"),                                  # a doubled quote inside
    ("BAND2", "BAND2   = 'z       '"),                              # trailing blanks dropped
    ("BAND0", "BAND0   = '  g'"),                                   # leading blanks kept (then stripped by the check)
    ("BITPIX", "BITPIX  =                -32.0"),                    # not an integer: astropy reads it
    ("NAXIS3", "NAXIS3  =                   +3 / signed"),
    ("NAXIS3", "NAXIS3  =                    2"),                    # data no longer fill the payload
    ("BAND1", "band1   = 'x'"),                                     # lower-case keyword: astropy's to judge
    ("BAND1", "BSCALE  =                  1.0"),                    # scaling: fits.open
    ("BANDS", "BANDS   = 'grz"),                                    # unterminated string
    ("SIMPLE", "SIMPLE  =                    F"),
    ("BAND1", "BAND1   = 'r\u00e9'"),                              # not ASCII
])
def test_cards_read_without_astropy_decide_as_astropys_header(key, card):
    """header=False reads the checked cards itself; on the service's layout and on each hostile edit of a card the
    outcome (cube, or error reason and message) is the one astropy's header gives."""
    raw = cutout_fits_bytes(_cube(), 150.25, -2.5, bands="grz")
    assert _outcome(raw, False)[:2] == _outcome(raw, True)[:2] and _outcome(raw, False)[2] is True
    bad = _replace_card(raw, key, card)
    fast, ref = _outcome(bad, False), _outcome(bad, True)
    assert fast[:2] == ref[:2], (fast[:2], ref[:2])
    if fast[0] == "error":
        assert fast[2] == ref[2]


def test_checked_cards_values_and_refusals():
    from lensaudit.survey.cutout_fits import _check_cards

    raw = cutout_fits_bytes(_cube(), 150.25, -2.5, bands="grz")
    end = next(p for p in range(0, 2880, 80) if raw[p : p + 8] == b"END     ")
    cards = _check_cards(raw, end)
    assert cards == {"SIMPLE": True, "BITPIX": -32, "NAXIS": 3, "NAXIS1": 101, "NAXIS2": 101, "NAXIS3": 3,
                     "BANDS": "grz", "BAND0": "g", "BAND1": "r", "BAND2": "z"}
    assert _check_cards(_replace_card(raw, "BAND1", "BAND1   = 'r''x'"), end)["BAND1"] == "r'x"
    assert _check_cards(_replace_card(raw, "BITPIX", "BITPIX  =                -32.0"), end) is None
    assert _check_cards(_replace_card(raw, "BANDS", "BANDS   = 'grz"), end) is None
    assert _check_cards(_replace_card(raw, "BAND1", "bAND1   = 'r'"), end) is None
    assert _check_cards(_replace_card(raw, "BAND1", "BAND1    'r'"), end) is None
    assert _check_cards(_replace_card(raw, "BAND1", "BZERO   =                  0.0"), end)["BZERO"] is True
    free = _replace_card(raw, "BANDS", "BANDS   =              'grz'   / free-format value")
    assert _check_cards(free, end)["BANDS"] == "grz"
    for comment in ("3/signed", "3 / a/b", "+3 / signed"):
        assert _check_cards(_replace_card(raw, "NAXIS3", f"NAXIS3  = {comment:>20s}"), end)["NAXIS3"] == 3
    assert _check_cards(_replace_card(raw, "SIMPLE", "SIMPLE  =                    F"), end)["SIMPLE"] is False
    assert _check_cards(_replace_card(raw, "BAND1", "BAND1   = 'r\u00e9'"), end) is None      # not ASCII
    dup = _replace_card(raw, "BAND2", "BAND1   = 'q'")                    # a repeated keyword: the first counts
    assert _check_cards(dup, end)["BAND1"] == "r" and fits.Header.fromstring(dup[:2880].decode())["BAND1"] == "r"


def test_an_unparsable_band_card_is_a_corrupt_cutout_not_a_crash():
    """astropy parses a card's value when it is read: an unterminated string in BANDS raised astropy's VerifyError
    out of the reader (and the fetch worker); it is a 'corrupt' cutout named by its source, with or without the
    astropy header, and a -32.0 BITPIX is refused by both paths as fits.open refuses it."""
    raw = cutout_fits_bytes(_cube(), 150.25, -2.5, bands="grz")
    for header in (True, False):
        for key, card in (("BANDS", "BANDS   = 'grz"), ("BITPIX", "BITPIX  =                -32.0")):
            with pytest.raises(CutoutFormatError) as exc:
                read_cutout_fits(_replace_card(raw, key, card), 101, source="cutout Y", header=header)
            assert exc.value.reason == "corrupt" and "cutout Y" in str(exc.value)


def test_fast_path_header_forms_and_what_it_leaves_to_astropy(monkeypatch):
    """The fast path gives astropy's Header by default and the checked cards as a dict for the client; it reads
    the END card on card boundaries only; integer pixels are astropy's (named wrong_dtype); and the client's read
    builds no astropy Header at all."""
    import lensaudit.survey.cutout_fits as cf

    raw = cutout_fits_bytes(_cube(), 150.25, -2.5, bands="grz")
    assert isinstance(cf._single_float32_image(raw)[1], fits.Header)
    got = cf._single_float32_image(raw, astropy_header=False)
    assert got is not None and got[1] == {"SIMPLE": True, "BITPIX": -32, "NAXIS": 3, "NAXIS1": 101, "NAXIS2": 101,
                                          "NAXIS3": 3, "BANDS": "grz", "BAND0": "g", "BAND1": "r", "BAND2": "z"}
    # "END" inside a card before the checked ones is not the END card: BANDS after it is still read
    fake = _replace_card(_replace_card(raw, "SURVEY", "COMMENT END     of a comment"), "BANDS", "BANDS   = 'gzr'")
    for header in (True, False):
        with pytest.raises(CutoutFormatError) as exc:
            read_cutout_fits(fake, 101, header=header)
        assert exc.value.reason == "wrong_bands"
    # 32-bit integers have the length of float32 pixels: left to astropy, which reads integers (wrong_dtype)
    hdu = fits.PrimaryHDU(data=np.arange(3 * 8 * 8, dtype=np.int32).reshape(3, 8, 8))
    buf = io.BytesIO()
    hdu.writeto(buf)
    assert cf._single_float32_image(buf.getvalue()) is None
    assert cf._single_float32_image(buf.getvalue(), astropy_header=False) is None
    for header in (True, False):
        with pytest.raises(CutoutFormatError) as exc:
            read_cutout_fits(buf.getvalue(), 8, header=header)
        assert exc.value.reason == "wrong_dtype"

    def no_header(*a, **k):
        raise AssertionError("astropy Header built")

    monkeypatch.setattr(cf.fits.Header, "fromstring", no_header)
    cube, hdr = read_cutout_fits(raw, 101, header=False)
    assert hdr is None and np.array_equal(cube, _cube())


def test_axis_cards_the_fast_path_declines_are_named_by_astropy():
    """A non-integer axis length and a zero-length axis are declined by the fast path and named as fits.open
    names them (the first 'corrupt', the second an empty image of the wrong shape), with or without the astropy
    header."""
    raw = cutout_fits_bytes(_cube(), 150.25, -2.5, bands="grz")
    floaty = _replace_card(raw, "NAXIS1", "NAXIS1  =                101.0")
    empty = _replace_card(raw[:2880], "NAXIS1", "NAXIS1  =                    0")
    for bad, reasons in ((floaty, {"corrupt"}), (empty, {"wrong_shape"})):
        got = set()
        for header in (True, False):
            with pytest.raises(CutoutFormatError) as exc:
                read_cutout_fits(bad, 101, header=header)
            got.add(exc.value.reason)
        assert got == reasons, (got, reasons)

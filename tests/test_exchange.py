"""npz import on the real DR10 sample cutouts, FITS/npz export round trips, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from lensaudit.cutouts import CutoutFileError, CutoutStore, export_cutouts, import_npz, read_npz_cutout


def test_import_real_sample_cutouts(tmp_path, sample_npz):
    store = CutoutStore(tmp_path / "s", create=True)
    rep = import_npz(sample_npz, store)
    assert rep.n_imported == 4 and not rep.failures
    idx = store.index.set_index("id")
    for path in sample_npz:
        with np.load(path, allow_pickle=False) as z:
            cid = str(z["meta_galaxy_id"])
            np.testing.assert_array_equal(store.get([cid])[0], np.moveaxis(z["cutout"], -1, 0))
            assert idx.loc[cid, "ra"] == pytest.approx(float(z["meta_ra"]))
            assert idx.loc[cid, "meta_match_type"] == str(z["meta_match_type"])
            assert idx.loc[cid, "layer"] == "ls-dr10"
    # the importer's own sky MAD agrees with the value the earlier pipeline stored (r band)
    assert idx["sky_mad_r"].between(0.0010, 0.0030).all()
    again = import_npz(sample_npz, store)
    assert again.n_imported == 0 and again.n_already_stored == 4


def test_export_fits_and_npz_roundtrip(tmp_path, sample_npz):
    store = CutoutStore(tmp_path / "s", create=True)
    import_npz(sample_npz, store)
    cid = store.index["id"].iloc[1]
    (fpath,) = export_cutouts(store, [cid], tmp_path / "fits", "fits")
    with fits.open(fpath) as h:
        assert h[0].data.shape == (3, 101, 101) and h[0].header["BANDS"] == "grz"
        np.testing.assert_array_equal(h[0].data.astype(np.float32), store.get([cid])[0])
        assert h[0].header["CRVAL1"] == pytest.approx(store.index.set_index("id").loc[cid, "ra"])
    (npath,) = export_cutouts(store, [cid], tmp_path / "npz", "npz")
    cube, meta = read_npz_cutout(npath)
    np.testing.assert_array_equal(cube, store.get([cid])[0])
    assert meta["galaxy_id"] == cid and "ra" in meta
    other = CutoutStore(tmp_path / "s2", create=True)
    assert import_npz([npath], other).n_imported == 1
    with pytest.raises(ValueError, match="export format 'png'"):
        export_cutouts(store, [cid], tmp_path, "png")


def test_bad_npz_files(tmp_path):
    np.savez(tmp_path / "shape.npz", cutout=np.zeros((64, 64, 3), np.float32))
    np.savez(tmp_path / "nokey.npz", image=np.zeros((101, 101, 3), np.float32))
    np.savez(tmp_path / "pickled.npz", cutout=np.array([{"a": 1}], dtype=object))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CutoutFileError, match="shape \\(64, 64, 3\\)"):
        read_npz_cutout(tmp_path / "shape.npz")
    with pytest.raises(CutoutFileError, match="no 'cutout' array"):
        read_npz_cutout(tmp_path / "nokey.npz")
    with pytest.raises(CutoutFileError, match="pickled.npz"):
        read_npz_cutout(tmp_path / "pickled.npz")  # object arrays need pickle: refused
    store = CutoutStore(tmp_path / "s", create=True)
    rep = import_npz(sorted(tmp_path.glob("*.npz")), store)
    assert rep.n_imported == 0 and len(rep.failures) == 4 and len(store) == 0

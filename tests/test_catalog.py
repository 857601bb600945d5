"""Training-set construction: every cut's count, positives and tiers, exclusion radius, confuser
proxies, HEALPix splits against healpy, stratified sampling, determinism, malformed inputs,
verification, and the local and Spark engines giving byte-identical manifests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import healpy
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.table import Table

from lensaudit.catalog import (
    CatalogConfig,
    CatalogInputError,
    LocalEngine,
    SparkEngine,
    build_catalog,
    ingest_sweep,
    pixel_fraction,
    read_candidates,
    verify_manifest,
)
from lensaudit.catalog.manifest import read_manifest_metadata, write_manifest
from lensaudit.catalog.stages import nobs_bin_labels
from lensaudit.cli import main
from lensaudit.configs import bundled_config
from lensaudit.survey.columns import SchemaError
from lensaudit.survey.sweepio import read_sweep, synthetic_sweep_rows, write_sweep_fits

BOX_A = (150.0, 155.0, 0.0, 5.0)
BOX_B = (150.0, 155.0, 30.0, 35.0)
ARCSEC = 1 / 3600


def _row_block(n: int, ra0: float, dec0: float, start: int, **over) -> np.ndarray:
    """``n`` rows that pass every negative-pool cut (SER, z ~ 19.2, 5 exposures, no bits), then ``over``."""
    a = synthetic_sweep_rows(n, (ra0, ra0 + 0.01, dec0, dec0 + 0.01), seed=start, objid_start=start)
    a["RA"] = ra0 + np.arange(n) * 60 * ARCSEC  # 1 arcmin apart: far from each other
    a["DEC"] = dec0
    a["TYPE"] = b"SER"
    a["SERSIC"] = 1.5
    a["FLUX_G"], a["FLUX_R"], a["FLUX_Z"] = 5.0, 10.0, 20.0  # g-r = 0.75, z = 19.25 AB
    a["SHAPE_R"], a["SHAPE_E1"], a["SHAPE_E2"] = 1.0, 0.1, 0.0
    for b in "GRZ":
        a[f"NOBS_{b}"] = 5
    a["MASKBITS"] = 0
    for k, v in over.items():
        a[k] = v
    return a


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """Two real-format sweep files with crafted rows whose fate is known, and a candidate CSV."""
    d = tmp_path_factory.mktemp("fake")
    (d / "sweeps").mkdir()
    blocks = {
        "pass": _row_block(30, 151.0, 1.0, 0),
        "nobs": _row_block(4, 151.0, 1.1, 100, NOBS_G=2),
        "mag_z_faint": _row_block(5, 151.0, 1.2, 200, FLUX_Z=5.0),       # z = 20.75
        "mag_z_negative": _row_block(2, 151.0, 1.3, 300, FLUX_Z=-1.0),
        "type_psf": _row_block(6, 151.0, 1.4, 400, TYPE=b"PSF"),
        "type_exp": _row_block(2, 151.0, 1.5, 500, TYPE=b"EXP"),
        "mask_bright": _row_block(3, 151.0, 1.6, 600, MASKBITS=1 << 1),
        "mask_galaxy": _row_block(1, 151.0, 1.7, 700, MASKBITS=1 << 12),
        "mask_nprimary_only": _row_block(1, 151.0, 1.8, 800, MASKBITS=1 << 0),  # bit 0 not excluded
        "bad_coords": _row_block(2, 151.0, 1.9, 900, RA=np.nan),
        "ring": _row_block(3, 152.0, 1.0, 1000, TYPE=b"DEV", FLUX_R=6.0, FLUX_G=3.0),
        "edge_on": _row_block(3, 152.0, 1.1, 1100, SHAPE_E1=0.6, SHAPE_R=1.0),
        "blue": _row_block(3, 152.0, 1.2, 1200, FLUX_G=9.0, FLUX_R=10.0),   # g-r = 0.11, r = 20.0
        "large": _row_block(3, 152.0, 1.3, 1300, SHAPE_R=2.5, FLUX_R=4.0, FLUX_G=2.0),
        "host_a": _row_block(4, 153.0, 1.0, 1400, TYPE=b"DEV", FLUX_R=4.0, FLUX_G=1.5),
    }
    near = _row_block(4, 153.0, 1.0, 1500)
    # hosts sit at (153 + k/60, 1.0); put one neighbour 10.9" and one 11.1" north of hosts 0 and 1,
    # (11.1" from C1), one 5" east of host 2, one 30" north of host 3 (kept)
    near["RA"] = [153.0, 153.0 + 1 / 60, 153.0 + 2 / 60 + 5 * ARCSEC, 153.0 + 3 / 60]
    near["DEC"] = [1.0 + 10.9 * ARCSEC, 1.0 + 11.6 * ARCSEC, 1.0, 1.0 + 30 * ARCSEC]  # C1 is 0.5" N of its host
    blocks["near"] = near
    a = np.concatenate(list(blocks.values()))
    write_sweep_fits(a, d / "sweeps" / "sweep-150p000-155p005.fits", BOX_A)
    b_rows = np.concatenate([_row_block(6, 151.0, 31.0, 2000),                   # dec > 32? no: 31 passes
                             _row_block(3, 151.0, 33.0, 2100)])                  # footprint: Dec >= 32
    write_sweep_fits(b_rows, d / "sweeps" / "sweep-150p030-155p035.fits", BOX_B)
    cands = pd.DataFrame({
        "name": ["C0", "C1", "C2", "C3", "CFAR", "CB"],
        "ra": [153.0 + 0.3 * ARCSEC, 153.0 + 1 / 60, 153.0 + 2 / 60, 153.0 + 3 / 60, 10.0, 151.0 + 1 / 60],
        "dec": [1.0, 1.0 + 0.5 * ARCSEC, 1.0, 1.0 - 0.2 * ARCSEC, 10.0, 31.0],
        "zlens": [0.4, 0.5, 0.3, 0.6, 0.5, 0.45], "type": "galaxy",
        "grading": ["confident", "probable", "confident", "probable", "confident", "probable"],
        "ref": "test",
    })
    cands.to_csv(d / "candidates.csv", index=False)
    return d


def _cfg(d, out, **kw) -> CatalogConfig:
    base = {"sweeps": str(d / "sweeps"), "candidates": str(d / "candidates.csv"), "out": str(out),
            "sampling": {"ratio": 2, "n2_fraction": 0.5, "seed": 1}}
    base.update(kw)
    return CatalogConfig.model_validate(base)


@pytest.fixture(scope="module")
def built(fake, tmp_path_factory):
    out = tmp_path_factory.mktemp("built")
    return build_catalog(_cfg(fake, out)), out


def test_each_cut_removes_exactly_the_rows_built_to_fail_it(built):
    summary, out = built
    flow = json.loads((out / "cutflow.json").read_text())
    t = flow["total"]
    assert t["rows_in"] == 30 + 4 + 5 + 2 + 6 + 2 + 3 + 1 + 1 + 2 + 12 + 4 + 4 + 9
    assert t["bad_coordinates"] == 2
    assert t["footprint_dec"] == 3
    assert t["nobs_grz"] == 4
    assert t["mag_z"] == 5 + 2
    assert t["type"] == 6 + 2
    assert t["maskbits"] == 3 + 1
    # hosts of C0..C3 and CB (5, within 1") + neighbours at 10.9" and 5" (2); 11.1" and 30" survive
    assert t["near_candidate"] == 5 + 2
    assert t["rows_eligible"] == t["rows_in"] - sum(t[k] for k in flow["order"][1:-1])
    per = {f["sweep"]: f for f in flow["per_sweep"]}
    assert per["sweep-150p030-155p035"]["footprint_dec"] == 3
    assert per["sweep-150p000-155p005"]["footprint_dec"] == 0


def test_positives_tiers_weights_and_unmatched(built, fake, tmp_path):
    summary, out = built
    pos = pd.read_parquet(out / "positives.parquet").set_index("name")
    assert sorted(pos.index) == ["C0", "C1", "C2", "C3", "CB"]
    assert pos.loc["C0", "tier"] == "A" and pos.loc["C1", "tier"] == "B"
    assert pos.loc["C0", "match_sep_arcsec"] == pytest.approx(0.3, abs=0.01)
    un = pd.read_csv(out / "unmatched_candidates.csv")
    assert un["name"].tolist() == ["CFAR"] and "within 1.0 arcsec" in un["reason"][0]
    assert summary["unmatched_fraction"] == pytest.approx(1 / 6, abs=1e-4)
    m = pd.read_parquet(out / "manifest_70_30.parquet")
    assert set(m.loc[m.label == 1, "sample_weight"]) == {1.0}
    s2 = build_catalog(_cfg(fake, tmp_path / "w", positives={"tier_weights": {"A": 1.0, "B": 0.5}}))
    m2 = pd.read_parquet(s2["manifests"]["70_30"]).set_index("name")
    assert m2.loc["C0", "sample_weight"] == 1.0 and m2.loc["C1", "sample_weight"] == 0.5


def test_exclusion_radius_is_respected(fake, tmp_path):
    # a ratio so high that every eligible negative is drawn
    s = build_catalog(_cfg(fake, tmp_path / "x", sampling={"ratio": 500, "n2_fraction": 0.0, "seed": 1}))
    m = pd.read_parquet(s["manifests"]["70_30"])
    objids = set(m.loc[m.label == 0, "id"].str.split("_").str[1].astype(int))
    assert 1500 not in objids  # 10.9" from C0
    assert 1501 in objids      # 11.1" from C1
    assert 1502 not in objids  # 5" from C2
    assert 1503 in objids      # 30" from C3
    assert not set(range(1400, 1404)) & objids  # the hosts themselves


def test_confuser_proxies_and_pools(fake, tmp_path):
    s = build_catalog(_cfg(fake, tmp_path / "c", sampling={"ratio": 50, "n2_fraction": 0.5, "seed": 1}))
    m = pd.read_parquet(s["manifests"]["70_30"])
    oid = m["id"].str.split("_").str[1].astype(int)
    cat = dict(zip(oid, m["confuser_category"], strict=True))
    tier = dict(zip(oid, m["tier"], strict=True))
    for start, want in ((1000, "ring"), (1100, "edge_on"), (1200, "blue_clumpy"), (1300, "large_galaxy")):
        got = [cat[i] for i in range(start, start + 3) if i in cat]
        assert got and set(got) == {want}, (start, got)
        assert {tier[i] for i in range(start, start + 3) if i in tier} == {"N2"}
    assert {tier[i] for i in range(0, 30) if i in tier} <= {"N1"}


def test_healpix_and_split_agree_with_independent_computation(built):
    _, out = built
    for scheme in ("70_30", "70_15_15"):
        path = out / f"manifest_{scheme}.parquet"
        m = pd.read_parquet(path)
        meta = read_manifest_metadata(path)
        pix = healpy.ang2pix(128, m["ra"].to_numpy(), m["dec"].to_numpy(), nest=True, lonlat=True)
        np.testing.assert_array_equal(pix, m["healpix_128"].to_numpy())
        edges = np.cumsum([meta["fractions"][s] for s in meta["split_order"]])
        for p, split in zip(m["healpix_128"], m["split"], strict=True):
            u = int.from_bytes(hashlib.sha256(f"{p}_{meta['split_seed']}".encode()).digest()[:4], "big") / 2**32
            assert split == meta["split_order"][int(np.searchsorted(edges, u, side="right"))]


def test_split_rule_fraction_is_first_four_sha256_bytes():
    got = pixel_fraction(np.array([123, 123, 77]), 42)
    want = int(hashlib.sha256(b"123_42").hexdigest()[:8], 16) / 2**32
    assert got[0] == got[1] == want
    assert got[2] == int(hashlib.sha256(b"77_42").hexdigest()[:8], 16) / 2**32
    # fractions over many pixels are uniform enough for 70/15/15 to come out right
    u = pixel_fraction(np.arange(20000), 7)
    assert abs((u < 0.7).mean() - 0.7) < 0.015


def test_sampling_quotas_shortfalls_and_hash_order(built):
    summary, out = built
    sf = pd.read_csv(out / "shortfalls.csv")
    # every stratum and pool: taken = min(quota, available), shortfall = quota - taken
    assert (sf["taken"] == np.minimum(sf["quota"], sf["available"])).all()
    assert (sf["shortfall"] == sf["quota"] - sf["taken"]).all()
    pos = pd.read_parquet(out / "positives.parquet")
    for (b, t), g in pos.groupby(["nobs_z_bin", "type"]):
        q = sf[(sf.nobs_z_bin == b) & (sf.type == t)].set_index("pool")["quota"]
        assert q.sum() == round(2 * len(g)) and q["N2"] == round(q.sum() * 0.5)
    assert nobs_bin_labels((3, 6, 11)) == ["<3", "3-5", "6-10", "11+"]


def test_same_inputs_and_seed_give_identical_bytes_across_workers(fake, built, tmp_path):
    _, out = built
    s = build_catalog(_cfg(fake, tmp_path / "w2", workers=2))
    for scheme in ("70_30", "70_15_15"):
        a = (out / f"manifest_{scheme}.parquet").read_bytes()
        assert a == Path(s["manifests"][scheme]).read_bytes()
    other = build_catalog(_cfg(fake, tmp_path / "seed", sampling={"ratio": 2, "n2_fraction": 0.5, "seed": 2}))
    ids_a = set(pd.read_parquet(out / "manifest_70_30.parquet").id)
    ids_b = set(pd.read_parquet(other["manifests"]["70_30"]).id)
    assert ids_a != ids_b  # the sampling seed matters


def test_ingestion_native_order_units_and_resume(fake, tmp_path):
    src = fake / "sweeps" / "sweep-150p000-155p005.fits"
    r1 = ingest_sweep(src, tmp_path)
    assert not r1["skipped"]
    t = pq.read_table(r1["partition"])
    assert t.schema.field("PSFDEPTH_R").metadata[b"unit"] == b"1/nanomaggy^2"
    assert t.schema.field("FLUX_R").metadata[b"unit"] == b"nanomaggy"
    df = t.to_pandas()
    ref = Table.read(src, hdu="SWEEP")
    np.testing.assert_array_equal(df["OBJID"].to_numpy(), np.asarray(ref["OBJID"]))
    np.testing.assert_array_equal(df["FLUX_Z"].to_numpy(), np.asarray(ref["FLUX_Z"]))
    assert df["FLUX_Z"].dtype.byteorder in ("=", "<") and df["TYPE"].iloc[0] == "SER"
    assert df["TYPE"].tolist() == [s.strip() for s in ref["TYPE"]]
    # dictionary encoding only where it pays: the string columns
    meta = pq.ParquetFile(r1["partition"]).metadata.row_group(0)
    enc = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" in enc["TYPE"] and "RLE_DICTIONARY" in enc["BRICKNAME"]
    assert not {"RLE_DICTIONARY", "PLAIN_DICTIONARY"} & set(enc["FLUX_Z"] + enc["RA"])
    assert ingest_sweep(src, tmp_path)["skipped"]


def test_malformed_sweeps_raise_clear_errors(tmp_path):
    a = synthetic_sweep_rows(20, BOX_A, seed=3)
    names = [n for n in a.dtype.names if n != "FLUX_Z"]
    p = write_sweep_fits(a[names], tmp_path / "sweep-150p000-155p005.fits", BOX_A)
    with pytest.raises(SchemaError, match=r"sweep-150p000-155p005.fits.*missing required column.*FLUX_Z"):
        read_sweep(p)
    dt = [(n, ">f4") if n == "NOBS_Z" else (n, a.dtype[n]) for n in a.dtype.names]
    b = np.zeros(20, dtype=dt)
    for n in a.dtype.names:
        b[n] = a[n]
    p2 = write_sweep_fits(b, tmp_path / "sweep-150p005-155p010.fits", BOX_A)
    with pytest.raises(SchemaError, match="column NOBS_Z has dtype"):
        read_sweep(p2)


def test_bad_rows_error_or_counted_skip(fake, tmp_path):
    with pytest.raises(CatalogInputError, match=r"2 row\(s\) with NaN or out-of-range RA/DEC"):
        build_catalog(_cfg(fake, tmp_path / "e", on_bad_rows="error"))
    # duplicate object ids across two sweep files
    d = tmp_path / "dup"
    (d / "sweeps").mkdir(parents=True)
    rows = _row_block(10, 151.0, 1.0, 0)
    write_sweep_fits(rows, d / "sweeps" / "sweep-150p000-155p005.fits", BOX_A)
    write_sweep_fits(rows[:3], d / "sweeps" / "sweep-150p005-155p010.fits", (150, 155, 5, 10))
    pd.DataFrame({"name": ["X"], "ra": [151.0], "dec": [1.0], "zlens": [0.4], "type": ["galaxy"],
                  "grading": ["confident"], "ref": ["t"]}).to_csv(d / "candidates.csv", index=False)
    s = build_catalog(_cfg(d, d / "out"))
    assert s["cutflow_total"]["duplicate_ids"] == 2  # rows 1, 2 repeated (row 0 is the positive)
    with pytest.raises(CatalogInputError, match="duplicate object id"):
        build_catalog(_cfg(d, d / "out2", on_bad_rows="error"))


def test_malformed_candidate_rows(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("name,ra,dec,zlens,type,grading,ref\nA,10,1,0.3,galaxy,confident,x\nB,abc,1,0.3,galaxy,probable,x\n"
                 "C,10,95,0.3,galaxy,probable,x\nD,11,1,0.3,galaxy,maybe,x\nA,12,1,0.3,galaxy,confident,x\n")
    with pytest.raises(CatalogInputError, match=r"4 malformed row\(s\): line 3 \('B'\): ra/dec not a number"):
        read_candidates(p)
    good, skipped = read_candidates(p, on_bad_rows="skip")
    assert good["name"].tolist() == ["A"] and good["tier"].tolist() == ["A"]
    assert [s["reason"] for s in skipped] == ["ra/dec not a number", "ra/dec out of range",
                                              "grading not confident/probable", "duplicate name"]
    with pytest.raises(CatalogInputError, match="missing column"):
        (tmp_path / "x.csv").write_text("name,ra\nA,1\n")
        read_candidates(tmp_path / "x.csv")


def test_verify_catches_leakage_and_cli_exits_nonzero(built, tmp_path, capsys):
    _, out = built
    path = out / "manifest_70_15_15.parquet"
    assert verify_manifest(path)["passed"]
    m = pd.read_parquet(path)
    meta = read_manifest_metadata(path)
    # move one object of a shared train pixel to another split: the pixel now straddles two splits
    train = m[m.split == "train"]
    crowded = train["healpix_128"].value_counts()
    assert crowded.max() > 1
    i = int(train.index[train["healpix_128"] == crowded.idxmax()][0])
    bad = m.copy()
    bad.loc[i, "split"] = "val"
    write_manifest(bad, tmp_path / "leaky.parquet", meta)
    rep = verify_manifest(tmp_path / "leaky.parquet")
    assert not rep["passed"] and any("differs from the recorded split rule" in f for f in rep["failures"])
    assert any("share" in f and "healpix_128" in f for f in rep["failures"])
    assert main(["catalog", "verify", str(tmp_path / "leaky.parquet")]) == 1
    assert main(["catalog", "verify", str(path)]) == 0
    assert "PASS" in capsys.readouterr().out


def test_exclusion_smaller_than_match_radius_is_rejected(fake, tmp_path):
    with pytest.raises(CatalogInputError, match="could leak"):
        build_catalog(_cfg(fake, tmp_path, cuts={"exclusion_radius_arcsec": 0.5}))


# ----------------------------------------------------------------------------- mock survey, CLI
@pytest.fixture(scope="module")
def mock_dir(mock_survey_dir):
    return mock_survey_dir


@pytest.mark.slow   # builds a 1 deg^2 mock survey (the stage functions have unit tests in test_stages)
def test_cli_build_on_mock_survey_passes_verification(mock_dir, tmp_path, capsys):
    rc = main(["catalog", "build", "--config", str(bundled_config("catalog/mock_demo.yaml")), "--sweeps", str(mock_dir / "sweeps"),
               "--candidates", str(mock_dir / "candidates.csv"), "--out", str(tmp_path / "out")])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["verified"] == {"70_30": True, "70_15_15": True}
    truth = pd.read_parquet(mock_dir / "truth" / "truth.parquet")
    m = pd.read_parquet(tmp_path / "out" / "manifest_70_15_15.parquet")
    # every positive is the true host the mock catalogued (truth table: same brickname_objid ids)
    assert (m.label == 1).sum() == summary["n_positives"] >= 10
    assert set(m.loc[m.label == 1, "id"]) == set(truth.loc[truth.in_candidates, "id"])
    assert set(m.split) == {"train", "val", "test"}
    import yaml

    from lensaudit.utils.io import sha256_json

    resolved = yaml.safe_load((tmp_path / "out" / "config.resolved.yaml").read_text())
    assert resolved["sweeps"] == str(mock_dir / "sweeps") and resolved["sampling"]["ratio"] == 10
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["config_sha256"] == sha256_json(resolved) and info["summary"]["n_positives"] == summary["n_positives"]


@pytest.mark.slow   # builds a 1 deg^2 mock survey (the stage functions have unit tests in test_stages)
def test_host_matched_negatives_match_the_positives_host_properties(mock_dir, tmp_path):
    """Published stratification: negatives are fainter, bluer, smaller than the lens hosts; host-matched:
    per-quantity KS statistics within the stated limit, recorded in the metadata and verified."""
    from lensaudit.catalog.verify import verify_manifest

    kw = {"sweeps": str(mock_dir / "sweeps"), "candidates": str(mock_dir / "candidates.csv"),
          "sampling": {"ratio": 10}, "cuts": {"types": ["SER", "DEV", "REX", "EXP"]}}
    plain = build_catalog(CatalogConfig.model_validate({**kw, "out": str(tmp_path / "plain")}))
    hm_kw = {**kw, "sampling": {"ratio": 10, "host_match": {"enabled": True, "bins": 2, "max_ks": 0.2}}}
    matched = build_catalog(CatalogConfig.model_validate({**hm_kw, "out": str(tmp_path / "hm")}))
    rp = verify_manifest(plain["manifests"]["70_15_15"])
    rm = verify_manifest(matched["manifests"]["70_15_15"])
    assert rp["passed"] and not rp["host_matched"] and rm["passed"] and rm["host_matched"]
    # unmatched: the lens hosts are brighter than the type-stratified negatives; matched: much less so
    assert rp["host_properties"]["mag_z"]["ks_statistic"] > 0.2
    assert rm["host_properties"]["mag_z"]["ks_statistic"] < 0.7 * rp["host_properties"]["mag_z"]["ks_statistic"]
    for q in ("mag_z", "g_r", "shape_r"):
        assert rm["host_properties"][q]["ks_statistic"] <= 0.2
    meta = read_manifest_metadata(matched["manifests"]["70_15_15"])
    assert meta["sampling"]["host_match"]["enabled"] and len(meta["host_match_edges"]["mag_z"]) == 1
    # the verification fails a host-matched manifest whose negatives were not matched
    m = pd.read_parquet(matched["manifests"]["70_15_15"])
    p = pd.read_parquet(plain["manifests"]["70_15_15"])
    from lensaudit.catalog.manifest import write_manifest

    # (the fainter half of the published negatives: a difference both beyond max_ks and significant at 1 percent)
    neg = p[p.label == 0]
    neg = neg[neg.mag_z > neg.mag_z.median()]
    swapped = pd.concat([m[m.label == 1], neg]).sort_values("id").reset_index(drop=True)
    bad = write_manifest(swapped, tmp_path / "swapped.parquet", meta)
    rep = verify_manifest(bad)
    assert not rep["passed"] and any("mag_z" in f for f in rep["failures"])
    # the same D in a sample too small to call it a difference passes
    few = pd.concat([m[m.label == 1].head(4), neg.head(8)]).sort_values("id").reset_index(drop=True)
    rep = verify_manifest(write_manifest(few, tmp_path / "few.parquet", meta))
    assert rep["host_properties"]["mag_z"]["ks_statistic"] > 0.2 and rep["host_properties"]["mag_z"]["ks_pvalue"] > 0.01
    assert not any("mag_z" in f for f in rep["failures"])


def test_host_cells_against_numpy_digitize():
    from lensaudit.catalog.stages import assign_host_cells

    rng = np.random.default_rng(3)
    df = pd.DataFrame({"mag_z": rng.uniform(16, 20, 500), "g_r": rng.normal(1, 0.5, 500), "shape_r": rng.uniform(0, 3, 500)})
    df.loc[5, "g_r"] = np.nan
    edges = {"mag_z": [17.0, 18.5], "g_r": [0.5, 1.0, 1.5]}
    got = assign_host_cells(df, edges)["host_cell"].to_numpy()
    want = np.digitize(df.mag_z, edges["mag_z"]) + 3 * np.digitize(np.nan_to_num(df.g_r, nan=np.inf), edges["g_r"])
    np.testing.assert_array_equal(got, want)
    assert got[5] == np.digitize(df.mag_z[5], edges["mag_z"]) + 3 * 3      # NaN in the last bin
    assert (assign_host_cells(df, {})["host_cell"] == 0).all()


# ----------------------------------------------------------------------------- Spark
@pytest.mark.spark
def test_spark_and_local_engines_give_byte_identical_manifests(spark, fake, built, mock_dir, tmp_path):
    _, out = built
    s = build_catalog(_cfg(fake, tmp_path / "spark", engine="spark"), engine=SparkEngine(spark))
    assert s["engine"] == "spark"
    for scheme in ("70_30", "70_15_15"):
        assert (out / f"manifest_{scheme}.parquet").read_bytes() == Path(s["manifests"][scheme]).read_bytes()
    assert json.loads((tmp_path / "spark" / "cutflow.json").read_text())["total"] == \
        json.loads((out / "cutflow.json").read_text())["total"]
    # on the mock survey too, with several Spark partition layouts
    kw = {"sweeps": str(mock_dir / "sweeps"), "candidates": str(mock_dir / "candidates.csv"),
          "sampling": {"ratio": 5, "seed": 9}, "cuts": {"types": ["SER", "DEV", "REX", "EXP"]}}
    ref = build_catalog(CatalogConfig.model_validate({**kw, "out": str(tmp_path / "loc")}), engine=LocalEngine())
    want = Path(ref["manifests"]["70_15_15"]).read_bytes()
    for n_in, n_shuffle in ((1, 2), (3, 5)):
        spark.conf.set("spark.sql.shuffle.partitions", str(n_shuffle))
        try:
            got = build_catalog(CatalogConfig.model_validate({**kw, "out": str(tmp_path / f"s{n_in}")}),
                                engine=SparkEngine(spark, input_partitions=n_in))
        finally:
            spark.conf.set("spark.sql.shuffle.partitions", "2")
        assert Path(got["manifests"]["70_15_15"]).read_bytes() == want, (n_in, n_shuffle)
    # host-matched negatives: the same stage functions bin the negatives on both engines
    hm = {**kw, "sampling": {**kw["sampling"], "host_match": {"enabled": True, "bins": 3}}}
    ref = build_catalog(CatalogConfig.model_validate({**hm, "out": str(tmp_path / "hm_loc")}), engine=LocalEngine())
    got = build_catalog(CatalogConfig.model_validate({**hm, "out": str(tmp_path / "hm_spark")}),
                        engine=SparkEngine(spark, input_partitions=2))
    assert Path(got["manifests"]["70_15_15"]).read_bytes() == Path(ref["manifests"]["70_15_15"]).read_bytes()
    assert Path(ref["manifests"]["70_15_15"]).read_bytes() != want


@pytest.mark.spark
def test_spark_ingestion_matches_local(spark, fake, tmp_path):
    files = sorted((fake / "sweeps").glob("sweep-*.fits"))
    loc = LocalEngine().ingest(files, tmp_path / "l", None)
    spk = SparkEngine(spark).ingest(files, tmp_path / "s", None)
    assert [r["rows"] for r in loc] == [r["rows"] for r in spk]
    for r_l, r_s in zip(loc, spk, strict=True):
        assert pq.read_table(r_l["partition"]).equals(pq.read_table(r_s["partition"]))


def _write_vac(path, rows):
    cols = [fits.Column(name="TARGETID", format="K", array=np.array([r[0] for r in rows])),
            fits.Column(name="SURVEY", format="7A", array=np.array(["main"] * len(rows))),
            fits.Column(name="PROGRAM", format="6A", array=np.array(["dark"] * len(rows))),
            fits.Column(name="HEALPIX", format="J", array=np.zeros(len(rows), np.int32)),
            fits.Column(name="Z", format="D", array=np.full(len(rows), 0.5)),
            fits.Column(name="ZWARN", format="K", array=np.array([r[3] for r in rows])),
            fits.Column(name="SPECTYPE", format="6A", array=np.array(["GALAXY"] * len(rows))),
            fits.Column(name="TARGET_RA", format="D", array=np.array([r[1] for r in rows])),
            fits.Column(name="TARGET_DEC", format="D", array=np.array([r[2] for r in rows]))]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="DESI_SL_CATALOG")]).writeto(path)


def test_desi_sl_vac_evaluation_set_overlaps_removed_and_reported(fake, tmp_path):
    _write_vac(tmp_path / "desi-sl-vac-v1.fits", [
        (1, 153.0, 1.0, 0),                                   # the host of training candidate C0: same object
        (2, 153.0 + 2 / 60 + 5 * ARCSEC, 1.0, 0),             # its own source, 5" from training candidate C2
        (3, 151.0 + 5 / 60, 1.0 + 0.2 * ARCSEC, 0),           # a new system: kept
        (3, 151.0 + 5 / 60, 1.0 + 0.2 * ARCSEC, 0),           # a second spectrum of it
        (4, 40.0, -5.0, 0),                                   # outside the sweeps: unmatched
        (5, 151.0 + 7 / 60, 1.0, 4),                          # ZWARN set: cut
    ])
    s = build_catalog(_cfg(fake, tmp_path / "o", eval_sets=[{"name": "desi_sl", "path": str(tmp_path / "desi-sl-vac-v1.fits")}]))
    rep = json.loads((tmp_path / "o" / "evalset_desi_sl.json").read_text())
    assert rep["read"] == {"rows_in": 6, "zwarn_nonzero": 1, "spectype_not_galaxy": 0, "duplicate_targetid": 1, "rows_kept": 4}
    assert rep["n_matched"] == 3 and rep["n_unmatched"] == 1
    assert rep["removed_same_object_as_training"] == 1
    assert rep["removed_within_exclusion_radius_of_training_candidate"] == 1
    ev = pd.read_parquet(tmp_path / "o" / "evalset_desi_sl.parquet")
    assert ev["name"].tolist() == ["DESI-SL-3"] and ev["tier"].tolist() == ["S"] and ev["split"].tolist() == ["eval_desi_sl"]
    assert not set(ev["id"]) & set(pd.read_parquet(s["manifests"]["70_30"])["id"])
    with pytest.raises(CatalogInputError, match="no HDU 'DESI_SL_CATALOG'"):
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
            [fits.Column(name="X", format="D", array=np.zeros(1))], name="OTHER")]).writeto(tmp_path / "bad.fits")
        build_catalog(_cfg(fake, tmp_path / "o2", eval_sets=[{"name": "x", "path": str(tmp_path / "bad.fits")}]))

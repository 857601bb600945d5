"""The manifest and predictions formats (lensaudit.manifest): reading, checks, the one writer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lensaudit.artifacts import (
    MANIFEST_META_KEY,
    MAX_ID_LENGTH,
    PREDICTIONS_META_KEY,
    ArtifactError,
    ManifestError,
    check_ids,
    check_manifest,
    check_predictions,
    healpix_column,
    manifest_columns,
    read_manifest,
    read_manifest_metadata,
    read_predictions,
    read_table,
    read_table_metadata,
    write_table,
)

M = pd.DataFrame({"id": ["b", "a", "c"], "ra": [10.0, 20.0, 359.5], "dec": [-5.0, 0.0, 89.0],
                  "label": [1, 0, 0], "split": ["train", "val", "val"], "sample_weight": [1.0, 0.5, 1.0],
                  "healpix_128": [3, 4, 5]})


def test_parquet_and_csv_read_the_same_and_ids_are_strings(tmp_path):
    M.to_parquet(tmp_path / "m.parquet", index=False)
    M.assign(id=["007", "08", "9"]).to_csv(tmp_path / "m.csv", index=False)
    a = read_manifest(tmp_path / "m.parquet")
    b = read_manifest(tmp_path / "m.csv")
    assert a["id"].tolist() == ["b", "a", "c"] and b["id"].tolist() == ["007", "08", "9"]  # no int coercion
    assert a["ra"].dtype == np.float64 and a["label"].dtype == np.int8
    np.testing.assert_array_equal(a[["ra", "dec"]].to_numpy(), b[["ra", "dec"]].to_numpy())
    assert read_manifest(tmp_path / "m.parquet", split="val")["id"].tolist() == ["a", "c"]
    M.to_csv(tmp_path / "m.csv.gz", index=False)
    assert len(read_table(tmp_path / "m.csv.gz")) == 3


def test_integer_ids_become_their_decimal_text():
    out = check_manifest(pd.DataFrame({"id": np.array([5, 12], dtype=np.int64), "ra": [1.0, 2.0], "dec": [0.0, 0.0]}))
    assert out["id"].tolist() == ["5", "12"]


@pytest.mark.parametrize("frame, match", [
    (M.drop(columns="dec"), r"missing required column\(s\) \['dec'\]"),
    (M.assign(ra=[10.0, np.nan, 3.0]), r"1 row\(s\) with missing or out-of-range ra/dec, ids \['a'\]"),
    (M.assign(ra=[10.0, 360.5, 3.0]), r"out-of-range ra/dec, ids \['a'\]"),
    (M.assign(dec=[10.0, -90.01, 3.0]), r"out-of-range ra/dec, ids \['a'\]"),
    (M.assign(id=["b", "b", "c"]), r"1 duplicate id\(s\), e.g. \['b'\]"),
    (M.assign(id=["b", None, "c"]), r"1 row\(s\) with no id, e.g. rows \[1\]"),
    (M.assign(id=["b", "x" * (MAX_ID_LENGTH + 1), "c"]), "longer than 256"),
    (M.assign(id=["b", 3.5, "c"]), r"not a string \(float\)"),
    (M.assign(label=[1, 2, 0]), r"label other than 0 or 1, e.g. \['a=2'\]"),
    (M.assign(label=[1, np.nan, 0]), "label other than 0 or 1"),
    (M.assign(sample_weight=[1.0, -0.1, 1.0]), r"sample_weight that is not finite and >= 0, ids \['a'\]"),
    (M.assign(sample_weight=[1.0, np.inf, 1.0]), "sample_weight"),
])
def test_bad_manifests_name_the_rows(frame, match):
    with pytest.raises(ManifestError, match=match):
        check_manifest(frame, source="m")


def test_edges_that_are_valid():
    ok = check_manifest(M.assign(ra=[0.0, 360.0, 1.0], dec=[-90.0, 90.0, 0.0], id=["x" * MAX_ID_LENGTH, "é", "c"]))
    assert len(ok) == 3
    with pytest.raises(ManifestError, match=r"no 'split' column"):
        check_manifest(M.drop(columns="split"), split="val")
    # required columns beyond id, ra, dec
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['tier'\]"):
        check_manifest(M, require=("id", "tier"))
    assert check_ids(pd.Series(["a", "a"]), "s", unique=False).tolist() == ["a", "a"]


def test_predictions_checks(tmp_path):
    p = pd.DataFrame({"id": ["a", "b"], "probability": [0.0, 1.0], "logit": [-3.0, 2.0]})
    assert check_predictions(p)["probability"].dtype == np.float64
    for bad, match in [(p.assign(probability=[0.5, 1.01]), r"column 'probability': 1 row\(s\) NaN or outside \[0, 1\]; "
                                                           r"first bad row 1 \(id 'b': 1.01\)"),
                       (p.assign(probability=[np.nan, 0.2]), "NaN or outside"),
                       (p.assign(logit=[np.inf, 0.0]), r"column 'logit': 1 row\(s\) not finite; first bad row 0 \(id 'a'"),
                       (p.assign(id=["a", "a"]), "duplicate id"), (p.drop(columns="probability"), "probability")]:
        with pytest.raises(ManifestError, match=match):
            check_predictions(bad)
    p.to_parquet(tmp_path / "p.parquet")
    assert read_predictions(tmp_path / "p.parquet", require=("id", "logit"))["logit"].tolist() == [-3.0, 2.0]


def test_unreadable_tables_are_clear_errors(tmp_path):
    with pytest.raises(ArtifactError, match="file not found"):
        read_table(tmp_path / "nope.parquet")
    with pytest.raises(ArtifactError, match="is a directory"):
        read_table(tmp_path)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ArtifactError, match="unknown format '.json'"):
        read_table(tmp_path / "x.json")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ArtifactError, match="cannot read"):
        read_table(tmp_path / "bad.parquet")
    with pytest.raises(ArtifactError, match="not a readable Parquet"):
        read_table_metadata(tmp_path / "bad.parquet", MANIFEST_META_KEY)


def test_writer_is_deterministic_atomic_and_carries_metadata(tmp_path):
    a = write_table(M, tmp_path / "a.parquet", MANIFEST_META_KEY, {"seed": 1, "fractions": {"train": 0.7}})
    b = write_table(M, tmp_path / "sub" / "b.parquet", MANIFEST_META_KEY, {"fractions": {"train": 0.7}, "seed": 1})
    assert a.read_bytes() == b.read_bytes()  # same rows and metadata (any key order): same bytes
    assert read_manifest_metadata(a) == {"seed": 1, "fractions": {"train": 0.7}}
    assert read_table_metadata(a, PREDICTIONS_META_KEY) is None
    assert pq.read_schema(a).metadata == {MANIFEST_META_KEY: b'{"fractions": {"train": 0.7}, "seed": 1}'}
    plain = write_table(M, tmp_path / "c.parquet")
    assert not pq.read_schema(plain).metadata and pd.read_parquet(plain).equals(M)
    with pytest.raises(ManifestError, match="no lensaudit metadata"):
        read_manifest_metadata(plain)
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary files left behind


def test_healpix_column_and_manifest_columns():
    assert healpix_column(["id", "healpix_64", "healpix_128", "healpix_x"]) == "healpix_64"
    assert healpix_column(["id", "ra"]) is None
    cols = manifest_columns(256)
    assert "healpix_256" in cols and cols["label"] == "int8" and list(cols)[:4] == ["id", "name", "ra", "dec"]

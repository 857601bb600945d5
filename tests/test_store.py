"""Sharded store: round trips, atomicity under a killed writer, corruption, locking."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from lensaudit.cutouts.store import CutoutStore, StoreCorruptError, StoreError


def _cubes(n, seed=0):
    return np.random.default_rng(seed).normal(0, 0.01, (n, 3, 101, 101)).astype(np.float32)


def _fill(store, cubes, prefix="c", commit_every=None):
    with store.writer(commit_every=commit_every) as w:
        for i, c in enumerate(cubes):
            w.add(f"{prefix}{i}", c, ra=10 + i * 1e-3, dec=-1.0, tier="A")


def test_roundtrip_random_order_and_shards(tmp_path):
    store = CutoutStore(tmp_path / "s", create=True, shard_size=7)
    cubes = _cubes(20)
    _fill(store, cubes)
    assert len(store) == 20 and store.index["shard"].nunique() == 3  # 7 + 7 + 6
    order = [13, 2, 19, 0, 7]
    got = store.get([f"c{i}" for i in order])
    np.testing.assert_array_equal(got, cubes[order])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(store["c5"], cubes[5])
    assert set(store.index.columns) >= {"id", "shard", "offset", "ra", "dec", "tier"}
    with pytest.raises(KeyError, match="1 id\\(s\\) not stored, e.g. \\['nope'\\]"):
        store.get(["c1", "nope"])
    # reopen from disk
    again = CutoutStore(tmp_path / "s")
    np.testing.assert_array_equal(again.get(["c19"])[0], cubes[19])
    assert again.verify()["ok"]


def test_writer_rejects_bad_input_without_touching_stored_data(tmp_path):
    store = CutoutStore(tmp_path / "s", create=True)
    _fill(store, _cubes(3))
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s" / "shards").iterdir()}
    with pytest.raises(ValueError, match="shape \\(3, 64, 64\\)"):
        with store.writer() as w:
            w.add("x", np.zeros((3, 64, 64), np.float32), 0, 0)
    with pytest.raises(ValueError, match="already in store"):
        with store.writer() as w:
            w.add("c1", _cubes(1)[0], 0, 0)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s" / "shards").iterdir()}
    assert before == after and len(CutoutStore(tmp_path / "s")) == 3


def test_not_a_store_and_bad_metadata(tmp_path):
    with pytest.raises(StoreError, match="no store.json"):
        CutoutStore(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "store.json").write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        CutoutStore(tmp_path / "bad")


def test_second_writer_is_refused(tmp_path):
    store = CutoutStore(tmp_path / "s", create=True)
    other = CutoutStore(tmp_path / "s")
    with store.writer():
        with pytest.raises(StoreError, match="another process is writing"):
            with other.writer():
                pass


def test_corrupt_shard_is_detected_and_named(tmp_path):
    store = CutoutStore(tmp_path / "s", create=True)
    cubes = _cubes(4)
    _fill(store, cubes)
    shard = store.index["shard"].iloc[0]
    path = tmp_path / "s" / "shards" / shard
    with h5py.File(path, "r") as h:
        off = h["images"].id.get_offset() + 2 * cubes[0].nbytes  # start of cutout c2
    with open(path, "r+b") as fh:
        fh.seek(off + 1000)
        fh.write(b"\x00\xff" * 64)
    fresh = CutoutStore(tmp_path / "s")
    np.testing.assert_array_equal(fresh.get(["c1"])[0], cubes[1])  # other cutouts still readable
    with pytest.raises(StoreCorruptError, match=f"shard {shard} offset 2 \\(cutout 'c2'\\)"):
        fresh.get(["c2"])
    with pytest.raises(StoreCorruptError, match="failed its CRC-32 checksum"):
        fresh.verify()


WRITER = textwrap.dedent(
    """
    import sys, time, numpy as np
    from lensaudit.cutouts.store import CutoutStore
    store = CutoutStore(sys.argv[1], create=True)
    rng = np.random.default_rng(0)
    with store.writer(commit_every=10) as w:
        for i in range(100000):
            w.add(f"k{i}", rng.normal(0, 0.01, (3, 101, 101)).astype(np.float32), 1.0, 2.0)
            if i == 35:
                print("READY", flush=True)
    """
)


def test_killed_writer_leaves_only_complete_shards(tmp_path):
    root = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "READY"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = CutoutStore(root)
    n = len(store)
    assert n >= 30 and n % 10 == 0  # only whole committed shards are visible
    rng = np.random.default_rng(0)
    expected = [rng.normal(0, 0.01, (3, 101, 101)).astype(np.float32) for _ in range(n)]
    np.testing.assert_array_equal(store.get([f"k{i}" for i in range(n)]), np.stack(expected))
    report = store.verify()
    assert report["ok"]
    # a writer killed mid-shard leaves at most an orphan or temp file, which repair removes
    removed = store.repair()
    assert all(p.name.startswith((".", "shard-")) for p in removed)
    assert store.orphans() == [] and len(CutoutStore(root)) == n
    # and the store accepts new writes afterwards
    with store.writer() as w:
        w.add("after", np.zeros((3, 101, 101), np.float32) + 1, 0, 0)
    assert len(CutoutStore(root)) == n + 1


def test_store_survives_pickling_for_workers(tmp_path):
    import copy  # deepcopy goes through __getstate__, as a DataLoader worker hand-off does

    store = CutoutStore(tmp_path / "s", create=True)
    cubes = _cubes(3)
    _fill(store, cubes)
    store.get(["c0"])  # open a handle
    clone = copy.deepcopy(store)
    np.testing.assert_array_equal(clone.get(["c2"])[0], cubes[2])


def test_shard_names_sequence_and_autocommit_boundary(tmp_path):
    import re

    s = CutoutStore(tmp_path / "s", create=True)
    cubes = _cubes(5)
    with s.writer(commit_every=2) as w:
        for i in range(2):
            w.add(f"a{i}", cubes[i].astype(np.float64), 1.0, 2.0)        # float64 in, float32 stored
        assert len(list((tmp_path / "s" / "index").glob("*.parquet"))) == 1   # committed at exactly 2
        w.add("a2", cubes[2], 1.0, 2.0)
        assert w.n_written == 2
    with s.writer() as w:
        w.add("b0", cubes[3], 1.0, 2.0)
    names = sorted(p.name for p in (tmp_path / "s" / "shards").glob("*.h5"))
    assert [n[:12] for n in names] == ["shard-000000", "shard-000001", "shard-000002"]
    assert all(re.fullmatch(r"shard-\d{6}-[0-9a-f]{8}\.h5", n) for n in names)
    s = CutoutStore(tmp_path / "s")
    np.testing.assert_array_equal(s.get(["a0"])[0], cubes[0])
    assert s.get(["a0"]).dtype == np.float32 and s.index["replaces"].tolist() == [False] * 4
    assert (tmp_path / "s" / ".lock").exists()                           # the writers' lock file


def test_get_into_a_buffer_locate_and_reload(tmp_path):
    s = CutoutStore(tmp_path / "s", create=True)
    cubes = _cubes(3)
    _fill(s, cubes)
    s = CutoutStore(tmp_path / "s")
    buf = np.zeros((2, 3, 101, 101), np.float32)
    got = s.get(["c2", "c0"], out=buf)
    assert got is buf and np.array_equal(buf[0], cubes[2]) and np.array_equal(buf[1], cubes[0])
    assert list(s.locate(["c0", "c2"])) == [0, 2]
    with pytest.raises(KeyError, match=r"1 id\(s\) not stored, e\.g\. \['nope'\]"):
        s.locate(["c0", "nope"])
    s.reload()
    assert "c1" in s and s.locate(["c1"])[0] == 1


def test_replacement_is_marked_and_within_a_writer_duplicates_are_refused(tmp_path):
    s = CutoutStore(tmp_path / "s", create=True)
    cubes = _cubes(2)
    with s.writer() as w:
        w.add("x", cubes[0], 1.0, 2.0)
        with pytest.raises(ValueError, match="already in store"):
            w.add("x", cubes[1], 1.0, 2.0)
        w.add("x", cubes[1], 1.0, 2.0, replace=True)
    idx = CutoutStore(tmp_path / "s").index
    assert idx["id"].tolist() == ["x"] and idx["replaces"].tolist() == [True]     # the newer copy, marked


def test_index_offset_past_the_shard_is_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    s = CutoutStore(tmp_path / "s", create=True)
    _fill(s, _cubes(3))
    f = next((tmp_path / "s" / "index").glob("*.parquet"))
    t = pq.read_table(f).to_pandas()
    t.loc[t.id == "c2", "offset"] = 3                                     # one past the last cutout
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), f)
    with pytest.raises(StoreCorruptError, match=r"has no offset 3 \(cutout 'c2'\)"):
        CutoutStore(tmp_path / "s").get(["c2"])


def test_handles_are_reused_in_a_process_and_reopened_after_a_fork(tmp_path, monkeypatch):
    s = CutoutStore(tmp_path / "s", create=True)
    _fill(s, _cubes(2))
    s = CutoutStore(tmp_path / "s")
    s.get(["c0"])
    (shard,) = s._handles
    first = s._handles[shard]
    s.get(["c1"])
    assert s._handles[shard] is first                                     # one map per shard and process
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)                   # as in a forked DataLoader worker
    s.get(["c0"])
    second = s._handles[shard]
    assert second is not first
    s.get(["c1"])
    assert s._handles[shard] is second


def test_failure_times_are_utc_whatever_the_local_zone(monkeypatch):
    from datetime import datetime, timezone

    from lensaudit.cutouts.store import _now_utc

    monkeypatch.setenv("TZ", "Etc/GMT+5")
    time.tzset()
    try:
        got = datetime.strptime(_now_utc(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert abs((datetime.now(timezone.utc) - got).total_seconds()) < 60
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_creating_a_store_makes_its_folders_and_records_when(tmp_path):
    import json

    root = tmp_path / "deep" / "er" / "s"                               # parents are made
    CutoutStore(root, create=True)
    assert all((root / sub).is_dir() for sub in ("shards", "index", "failures"))
    meta = json.loads((root / "store.json").read_text())
    assert meta["created_utc"].endswith("Z") and meta["version"] == 1
    CutoutStore(root, create=True)                                      # again: nothing is lost
    pre = tmp_path / "existing"
    pre.mkdir()
    CutoutStore(pre, create=True)                                       # an empty folder can become a store
    # a store.json without a version (an early file) opens; a newer version is refused
    del meta["version"]
    (root / "store.json").write_text(json.dumps(meta))
    assert len(CutoutStore(root)) == 0


def test_effective_rows_replacements_and_unmarked_repeats():
    import pandas as pd

    from lensaudit.cutouts.store import _effective_rows

    df = pd.DataFrame({"id": ["a", "b", "a", "b", "c"], "offset": [0, 1, 2, 3, 4],
                       "replaces": pd.array([False, False, True, None, None], dtype="boolean")})
    eff, unmarked = _effective_rows(df)
    # a: replaced by its marked copy; b: the unmarked repeat is ignored and reported; c: missing mark = False
    assert eff["id"].tolist() == ["b", "a", "c"] and eff["offset"].tolist() == [1, 2, 4]
    assert list(eff.index) == [0, 1, 2] and list(eff.columns) == ["id", "offset", "replaces"] and unmarked == ["b"]
    eff2, unmarked2 = _effective_rows(df.drop(columns="replaces"))      # older indexes have no column
    assert eff2["offset"].tolist() == [0, 1, 4] and unmarked2 == ["a", "b"]

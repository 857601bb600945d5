"""Distributed cutout acquisition: Spark tasks with the same client, staging stores adopted into the store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lensaudit.cutouts import CutoutStore, FetchConfig, fetch_manifest
from lensaudit.cutouts.spark_fetch import adopt_staging, fetch_spark, staging_dir, task_rate
from lensaudit.cutouts.store import StoreError, adopt_store
from lensaudit.mock.server import serve_in_thread

FAST = dict(rate_per_s=1000.0, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5.0, concurrency=2, commit_every=7)
PROVENANCE = ["url", "http_status", "attempts", "source", "tier", "crc32", "sky_median_r", "sky_mad_z", "has_g"]


def _manifest(n, ra0=150.0):
    return pd.DataFrame({"id": [f"obj{i:04d}" for i in range(n)], "ra": ra0 + np.arange(n) * 0.01,
                         "dec": np.full(n, 1.5), "tier": ["A", "B"] * (n // 2) + ["A"] * (n % 2)})


def _same_store(a: CutoutStore, b: CutoutStore, ids) -> None:
    ia, ib = a.index.set_index("id").loc[ids], b.index.set_index("id").loc[ids]
    np.testing.assert_array_equal(a.get(ids), b.get(ids))
    pd.testing.assert_frame_equal(ia[PROVENANCE].reset_index(drop=True), ib[PROVENANCE].reset_index(drop=True))


def test_task_rate_splits_the_global_limit():
    assert task_rate(10.0, 4) == 2.5 and task_rate(5.0, 1) == 5.0
    with pytest.raises(ValueError, match="task slots 0"):
        task_rate(5.0, 0)


def test_adopting_a_store_moves_its_shards_and_refuses_clashes(tmp_path, render):
    m = _manifest(20)
    main, part = CutoutStore(tmp_path / "main", create=True), CutoutStore(tmp_path / "part", create=True)
    with serve_in_thread(render) as srv:
        cfg = FetchConfig(service_url=srv.url, **FAST)
        fetch_manifest(m.iloc[:8], main, cfg)
        fetch_manifest(m.iloc[5:], part, cfg)          # obj0005-0007 are in both
        ref = CutoutStore(tmp_path / "ref", create=True)
        fetch_manifest(m, ref, cfg)
    n_shards = len(list((part.root / "shards").glob("*.h5")))
    with pytest.raises(StoreError, match="3 of its id"):
        adopt_store(main, part.root)
    assert len(main) == 8 and len(CutoutStore(part.root)) == 15      # nothing moved
    got = adopt_store(main, part.root, replace={"obj0005", "obj0006", "obj0007"})
    assert len(got) == 15 and not part.root.exists()
    assert len(main) == 20 and len(list((main.root / "shards").glob("*.h5"))) == 2 + n_shards
    v = main.verify()
    assert v["ok"] and v["n_cutouts"] == 20 and not v["orphans"]
    idx = main.index.set_index("id")
    assert idx.loc[["obj0005", "obj0006", "obj0007"], "replaces"].all() and not idx.loc["obj0010", "replaces"]
    _same_store(main, ref, list(m["id"]))


@pytest.mark.spark
def test_spark_fetch_equals_the_single_process_fetch_and_resumes(spark, tmp_path, render):
    m = _manifest(45)
    calls = []

    def counting(req):
        calls.append((round(req.ra, 5), round(req.dec, 5)))
        return render(req)

    with serve_in_thread(counting) as srv:
        cfg = FetchConfig(service_url=srv.url, **FAST)
        ref = CutoutStore(tmp_path / "ref", create=True)
        fetch_manifest(m, ref, cfg)
        calls.clear()
        store = CutoutStore(tmp_path / "s", create=True)
        rep = fetch_spark(m.iloc[:30], store, cfg, spark=spark, partition_rows=8)
        assert rep.n_stored == 30 and rep.n_failed == 0 and len(calls) == 30
        assert not staging_dir(store.root).exists()                  # every staging store was adopted
        _same_store(store, ref, list(m["id"].iloc[:30]))
        # a killed run left a staging store behind: the next run adopts it and fetches only the rest
        orphan = CutoutStore(staging_dir(store.root) / "part-000003", create=True)
        fetch_manifest(m.iloc[30:36], orphan, cfg)
        calls.clear()
        rep = fetch_spark(m, store, cfg, spark=spark, partition_rows=8)
        assert rep.n_already_stored == 36 and rep.n_requested == 9 and rep.n_stored == 9 and len(calls) == 9
    assert len(store) == 45 and store.verify()["n_cutouts"] == 45
    _same_store(store, ref, list(m["id"]))
    assert adopt_staging(store) == []


def test_a_staged_refetch_of_a_moved_cutout_is_adopted_as_its_replacement(tmp_path, render):
    """A killed Spark fetch with --moved refetch may leave the new copy of a moved cutout in staging: the
    next run adopts it as the replacement (no request, no clash) instead of refusing it."""
    m = _manifest(6)
    store = CutoutStore(tmp_path / "s", create=True)
    moved = m.copy()
    moved.loc[2, "ra"] += 1.0 / 3600                       # 1 arcsec: beyond the 0.05 arcsec tolerance
    calls = []

    def counting(req):
        calls.append(req.ra)
        return render(req)

    with serve_in_thread(counting) as srv:
        cfg = FetchConfig(service_url=srv.url, moved="refetch", **FAST)
        fetch_manifest(m, store, cfg)
        fetch_manifest(moved.iloc[[2]], CutoutStore(staging_dir(store.root) / "part-000000", create=True), cfg)
        calls.clear()
        rep = fetch_spark(moved, store, cfg, spark=None, master=None)   # nothing left to fetch: no Spark needed
    assert calls == [] and rep.n_requested == 0 and rep.n_already_stored == 6
    row = store.index.set_index("id").loc["obj0002"]
    assert bool(row["replaces"]) and row["ra"] == pytest.approx(moved.loc[2, "ra"])
    assert not staging_dir(store.root).exists() or not any(staging_dir(store.root).iterdir())

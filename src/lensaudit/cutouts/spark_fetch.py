"""``lensaudit cutouts fetch --engine spark``: cutout acquisition spread over Spark executors.

The same client (:func:`lensaudit.cutouts.client.fetch_manifest`: retries, back-off, QA, provenance
columns) runs in every Spark task on a slice of the rows still to fetch, into a staging store of its own
beside the target store (``<store>.staging/part-<k>/``, on the same shared file system). The driver
moves each finished wave's staging stores into the target store (:func:`adopt_store`: the shards are
renamed into place, not copied), so the target store has one writer, as always.

Limits: ``concurrency`` is per task (requests in flight in one executor task); ``rate_per_s`` is global:
each of the ``slots`` tasks that can run at once gets ``rate_per_s / slots`` (so the job never starts
more than ``rate_per_s`` requests per second, whatever the scheduling).

Resume: a staging store commits every ``commit_every`` cutouts. A re-run first adopts whatever earlier
(killed) runs left in the staging folder, then plans from the target store, so only missing cutouts are
requested again. Rows travel to the tasks as a Parquet file on the shared file system, read by row range.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from lensaudit.cutouts.client import FetchConfig, FetchReport, plan_fetch
from lensaudit.cutouts.qa import QAConfig
from lensaudit.cutouts.store import CutoutStore, adopt_store
from lensaudit.errors import InputError
from lensaudit.utils.io import atomic_path

log = logging.getLogger(__name__)


def task_rate(rate_per_s: float, slots: int) -> float:
    """Requests per second one task may start so that ``slots`` tasks together start at most ``rate_per_s``."""
    if slots < 1 or rate_per_s <= 0:
        raise InputError(f"fetch --engine spark: bad rate {rate_per_s} or task slots {slots}")
    return rate_per_s / slots


def staging_dir(store_root: str | os.PathLike) -> Path:
    """The folder of a store's per-task staging stores (beside it, on the same file system)."""
    return Path(str(Path(store_root)).rstrip("/") + ".staging")


def adopt_staging(store: CutoutStore, replace: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Adopt every staging store left beside ``store`` (finished or not); returns the ids adopted."""
    d = staging_dir(store.root)
    ids: list[str] = []
    for part in sorted(d.glob("part-*")):
        if (part / "store.json").is_file():
            ids += adopt_store(store, part, replace)
        else:  # a task killed before its store existed
            import shutil

            shutil.rmtree(part, ignore_errors=True)
    return ids


def _fetch_task(todo_path: str, staging: str, part_rows: int, cfg_json: dict, qa_json: dict, size: int, bands: str):
    """What one Spark task runs: fetch rows [k * part_rows, (k + 1) * part_rows) into staging/part-<k>."""

    def run(k: int) -> dict:
        import pyarrow.parquet as pq

        from lensaudit.cutouts.client import FetchConfig, fetch_manifest
        from lensaudit.cutouts.qa import QAConfig
        from lensaudit.cutouts.store import CutoutStore

        table = pq.read_table(todo_path)
        rows = table.slice(k * part_rows, part_rows).to_pandas()
        store = CutoutStore(Path(staging) / f"part-{k:06d}", create=True, size=size, bands=bands)
        rep = fetch_manifest(rows, store, FetchConfig(**cfg_json), QAConfig(**qa_json))
        return {"part": k, **rep.to_dict()}

    return run


def fetch_spark(manifest: pd.DataFrame, store: CutoutStore, cfg: FetchConfig, qa_cfg: QAConfig = QAConfig(),
                spark=None, master: str | None = "local[*]", partition_rows: int = 2000, slots: int | None = None,
                wave: int | None = None) -> FetchReport:
    """Fetch every manifest row not yet in ``store`` with Spark tasks; returns the combined report."""
    from lensaudit.catalog.engines import spark_session

    if partition_rows < 1:
        raise InputError(f"fetch --engine spark: partition_rows must be >= 1, not {partition_rows}")
    t0 = time.monotonic()
    # what killed runs left behind (their cutouts passed QA); re-fetches of moved ids among them replace
    _, moved, _ = plan_fetch(manifest, store, cfg)
    adopted = adopt_staging(store, moved)
    if adopted:
        log.info("adopted %d cutouts staged by an earlier run", len(adopted))
    todo, replace, rep = plan_fetch(manifest, store, cfg)
    if todo.empty:
        rep.elapsed_s = time.monotonic() - t0
        return rep
    spark = spark or spark_session(master, app="lensaudit-fetch")
    slots = slots or max(1, spark.sparkContext.defaultParallelism)
    n_parts = (len(todo) + partition_rows - 1) // partition_rows
    wave = wave or 2 * slots
    task_cfg = cfg.model_copy(update={"rate_per_s": task_rate(cfg.rate_per_s, min(slots, n_parts))})
    staging = staging_dir(store.root)
    staging.mkdir(parents=True, exist_ok=True)
    todo_path = staging / "todo.parquet"
    with atomic_path(todo_path) as tmp:
        todo.reset_index(drop=True).to_parquet(tmp, index=False)
    fn = _fetch_task(str(todo_path), str(staging), partition_rows, task_cfg.model_dump(mode="json"),
                     dataclasses.asdict(qa_cfg), store.size, store.bands)
    reasons: Counter[str] = Counter()
    for w in range(0, n_parts, wave):
        parts = list(range(w, min(n_parts, w + wave)))
        reports = spark.sparkContext.parallelize(parts, len(parts)).map(fn).collect()
        rep.n_replaced += len(set(adopt_staging(store, replace)) & replace)
        for r in reports:
            rep.n_stored += r["n_stored"]
            rep.n_failed += r["n_failed"]
            rep.n_retries += r["n_retries"]
            reasons.update(r["failure_reasons"])
        log.info("fetched partitions %d-%d of %d (%d cutouts stored so far)", parts[0], parts[-1], n_parts - 1,
                 rep.n_stored)
    todo_path.unlink(missing_ok=True)
    if not any(staging.iterdir()):
        staging.rmdir()
    rep.failure_reasons = dict(reasons)
    rep.elapsed_s = time.monotonic() - t0
    log.info("fetched %d cutouts on Spark (%d failed, %d already stored) in %.1f s", rep.n_stored, rep.n_failed,
             rep.n_already_stored, rep.elapsed_s)
    return rep


__all__ = ["adopt_staging", "fetch_spark", "staging_dir", "task_rate"]

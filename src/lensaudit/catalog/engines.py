"""Engines: where the stage functions run.

``LocalEngine`` runs them in-process (or in a process pool) with pandas; ``SparkEngine`` runs the
per-sweep work as one ``mapInPandas`` task per sweep file (passing file references, not rows)
and uses Spark only for the reductions: the nearest match per candidate, duplicate ids, the
per-stratum availability counts and the per-stratum top-K by stable hash (a window). Both
return the same :class:`Gathered` and the caller assembles identical manifests from it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow.parquet as pq

from lensaudit.catalog import stages as st
from lensaudit.catalog.config import CatalogConfig
from lensaudit.catalog.ingest import ingest_sweep
from lensaudit.errors import InputError

log = logging.getLogger(__name__)
STRATUM = st.STRATUM_KEY


@dataclass
class Gathered:
    """Everything the engines reduce the sweeps to (all small enough for the driver)."""

    flows: list[dict]                 # per-sweep cut flow (with a "sweep" key)
    nearest: pd.DataFrame             # nearest source per candidate (MATCH_COLUMNS)
    available: pd.DataFrame           # eligible negatives per stratum (STRATUM): "available"
    selected: pd.DataFrame            # sampled negatives (ROW_COLUMNS)
    n_duplicate_ids: int = 0
    extra: dict = field(default_factory=dict)


class Engine(Protocol):
    """Where the stage functions run. Both engines return the same results for the same inputs."""

    name: str

    def ingest(self, sweeps: list[Path], out_root: Path, columns: tuple[str, ...] | None,
               force: bool = False) -> list[dict]:
        """Sweep FITS -> Parquet partitions (one per file); one record per file (see ``ingest_sweep``)."""
        ...

    def gather(self, parts: list[Path], cfg: CatalogConfig, cands: pd.DataFrame,
               plan_of: Callable[[pd.DataFrame], tuple[pd.DataFrame, dict]]) -> Gathered:
        """Run the per-sweep stage functions over ``parts`` and reduce them (nearest matches, counts, top-K).

        ``plan_of(nearest)`` returns the sampling quotas and the host-cell edges the negatives are
        binned with (:func:`lensaudit.catalog.stages.assign_host_cells`)."""
        ...


def read_partition(path: str | os.PathLike) -> pd.DataFrame:
    return pq.read_table(path, columns=list(st.SWEEP_COLUMNS_USED)).to_pandas()


def _sweep_name(path: str | os.PathLike) -> str:
    return Path(path).parent.name.removeprefix("sweep=")


def _process_file(args) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    path, cfg, cands = args
    neg, matches, flow = st.process_sweep(read_partition(path), cfg, cands, source=f"sweep {_sweep_name(path)}")
    return neg, matches, {"sweep": _sweep_name(path), **flow}


def _ingest_args(args) -> dict:
    return ingest_sweep(*args)


class LocalEngine:
    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = workers

    def _map(self, fn, items):
        if self.workers <= 1 or len(items) <= 1:
            return [fn(i) for i in items]
        with ProcessPoolExecutor(min(self.workers, len(items))) as pool:
            return list(pool.map(fn, items))

    def ingest(self, sweeps: list[Path], out_root: Path, columns, force: bool = False) -> list[dict]:
        return self._map(_ingest_args, [(p, out_root, columns, force) for p in sweeps])

    def gather(self, parts: list[Path], cfg: CatalogConfig, cands: pd.DataFrame, plan_of) -> Gathered:
        res = self._map(_process_file, [(p, cfg, cands) for p in parts])
        neg = pd.concat([r[0] for r in res] or [st.empty_rows()], ignore_index=True)
        matches = pd.concat([r[1] for r in res] or [st.empty_rows(st.MATCH_COLUMNS)], ignore_index=True)
        neg, n_dup = st.dedupe_ids(neg, "eligible negatives", cfg.on_bad_rows)
        nearest = st.nearest_matches(matches)
        quotas, edges = plan_of(nearest)
        neg = st.assign_host_cells(neg, edges)
        available = neg.groupby(STRATUM).size().rename("available").reset_index()
        if cfg.sampling.fill_short_pool:
            quotas = st.rebalance_pools(quotas, available)
        selected = st.take_top_k(neg, quotas)
        return Gathered([r[2] for r in res], nearest, available, selected, n_dup)


# ----------------------------------------------------------------------------- Spark
_SPARK_TYPES = {"object": "string", "int16": "short", "int32": "int", "int64": "long", "float32": "float",
                "float64": "double", "int8": "byte"}


def _ddl(columns: dict[str, str]) -> str:
    return ", ".join(f"`{c}` {_SPARK_TYPES[t]}" for c, t in columns.items())


LONG_COLUMNS = {**st.MATCH_COLUMNS, "kind": "object", "info": "object"}


def _long(neg: pd.DataFrame, matches: pd.DataFrame, flow: dict) -> pd.DataFrame:
    """One frame per sweep for mapInPandas: kind 'neg', 'match' and one 'flow' row (JSON in ``info``)."""
    n = neg.assign(kind="neg", cand_idx=-1, match_sep_arcsec=float("nan"), info=None)
    m = matches.assign(kind="match", info=None)
    f = st.empty_rows(st.MATCH_COLUMNS).reindex(range(1)).assign(kind="flow", info=json.dumps(flow))
    out = pd.concat([x for x in (n, m) if len(x)] + [f], ignore_index=True)
    for c, t in LONG_COLUMNS.items():
        if t != "object":
            out[c] = out[c].fillna(0).astype(t) if t.startswith("int") else out[c].astype(t)
    return out[list(LONG_COLUMNS)]


def spark_session(master: str | None = "local[*]", app: str = "lensaudit-catalog", conf: dict | None = None):
    """A Spark session for the catalog stages (an existing active session is reused unchanged).

    ``master=None`` leaves the master to ``spark-submit`` (cluster runs); ``local...`` masters get
    a quiet loopback-only setup (no UI, 2 shuffle partitions).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise InputError("the spark engine needs pyspark: pip install 'lensaudit[spark]'") from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    local = master is not None and master.startswith("local")
    b = SparkSession.builder.appName(app)
    if local:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if master is not None:
        b = b.master(master)
    settings = {"spark.sql.execution.arrow.pyspark.enabled": "true",
                "spark.sql.execution.arrow.maxRecordsPerBatch": "65536",
                "spark.sql.optimizer.windowGroupLimitThreshold": "1000000",
                "spark.sql.session.timeZone": "UTC"}
    if local:
        quiet = Path(__file__).with_name("log4j2-quiet.properties")
        settings.update({"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                         "spark.sql.shuffle.partitions": "2",
                         "spark.driver.bindAddress": "127.0.0.1",
                         # Spark's INFO/WARN start-up chatter stays out of local runs and test output
                         "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{quiet}"})
    settings.update(conf or {})
    for k, v in settings.items():
        b = b.config(k, v)
    s = b.getOrCreate()
    s.sparkContext.setLogLevel("ERROR")
    return s


class SparkEngine:
    name = "spark"

    def __init__(self, spark=None, master: str | None = "local[*]", input_partitions: int | None = None):
        self.spark = spark or spark_session(master)
        self.input_partitions = input_partitions

    def _paths_df(self, paths: list[str]):
        df = self.spark.createDataFrame(pd.DataFrame({"path": paths}))
        return df.repartition(self.input_partitions or max(len(paths), 1))

    def ingest(self, sweeps: list[Path], out_root: Path, columns, force: bool = False) -> list[dict]:
        cols = None if columns is None else list(columns)
        root = str(out_root)

        def run(batches):
            for b in batches:
                rows = [ingest_sweep(p, root, None if cols is None else tuple(cols), force) for p in b["path"]]
                yield pd.DataFrame(rows, columns=["source", "partition", "rows", "skipped"])

        res = self._paths_df([str(p) for p in sweeps]).mapInPandas(
            run, "source string, partition string, rows long, skipped boolean").toPandas()
        return res.sort_values("source").to_dict("records")

    def gather(self, parts: list[Path], cfg: CatalogConfig, cands: pd.DataFrame, plan_of) -> Gathered:
        from pyspark import StorageLevel
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        def run(batches):
            for b in batches:
                for p in b["path"]:
                    neg, matches, flow = _process_file((p, cfg, cands))
                    yield _long(neg, matches, flow)

        long = self._paths_df([str(p) for p in parts]).mapInPandas(run, _ddl(LONG_COLUMNS))
        long = long.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            flows = [json.loads(s) for s in long.filter(F.col("kind") == "flow").select("info").toPandas()["info"]]
            neg = long.filter(F.col("kind") == "neg").select(*st.ROW_COLUMNS)
            dups = neg.groupBy("id").count().filter(F.col("count") > 1)
            dup_ids = sorted(dups.select("id").toPandas()["id"].tolist())
            n_dup = 0
            if dup_ids:
                if cfg.on_bad_rows == "error":
                    raise st.CatalogInputError(
                        f"eligible negatives: {len(dup_ids)} duplicate object id(s) across sweeps, e.g. {dup_ids[:5]}")
                n_dup = int(dups.agg(F.sum(F.col("count") - 1)).collect()[0][0])
                w = Window.partitionBy("id").orderBy("ra", "dec", "order_hash")
                neg = neg.withColumn("_rn", F.row_number().over(w)).filter(F.col("_rn") == 1).drop("_rn")
            w = Window.partitionBy("cand_idx").orderBy("match_sep_arcsec", "order_hash", "id")
            nearest = (long.filter(F.col("kind") == "match").select(*st.MATCH_COLUMNS)
                       .withColumn("_rn", F.row_number().over(w)).filter(F.col("_rn") == 1).drop("_rn"))
            nearest = _typed(nearest.toPandas(), st.MATCH_COLUMNS)
            quotas, edges = plan_of(nearest)
            if edges:
                def cells(batches):
                    for b in batches:
                        yield st.assign_host_cells(_typed(b, st.ROW_COLUMNS), edges)

                neg = neg.mapInPandas(cells, _ddl(st.ROW_COLUMNS))
            available = neg.groupBy(*STRATUM).count().withColumnRenamed("count", "available").toPandas()
            available = available.astype({"host_cell": "int16", "available": "int64"})
            if cfg.sampling.fill_short_pool:
                quotas = st.rebalance_pools(quotas, available)
            q = self.spark.createDataFrame(quotas[[*STRATUM, "quota"]]) if len(quotas) else None
            if q is None:
                selected = st.empty_rows()
            else:
                w = Window.partitionBy(*STRATUM).orderBy("order_hash", "id")
                sel = (neg.join(F.broadcast(q), on=STRATUM, how="inner")
                       .withColumn("_rn", F.row_number().over(w)).filter(F.col("_rn") <= F.col("quota"))
                       .select(*st.ROW_COLUMNS))
                selected = _typed(sel.toPandas(), st.ROW_COLUMNS)
        finally:
            long.unpersist()
        available["available"] = available["available"].astype("int64")
        return Gathered(flows, nearest, available, selected, n_dup)


def _typed(df: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    if not len(df):
        return st.empty_rows(columns)
    return df[list(columns)].astype(columns).reset_index(drop=True)


def make_engine(name: str, workers: int = 1, master: str | None = "local[*]") -> Engine:
    """The engine called ``name`` (local or spark)."""
    if name == "local":
        return LocalEngine(workers)
    if name == "spark":
        return SparkEngine(master=master)
    raise InputError(f"unknown engine {name!r} (local or spark)")

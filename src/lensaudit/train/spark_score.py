"""``lensaudit score --engine spark``: batch scoring on Spark executors (issue 13, first piece).

Rows carry references, not pixels: a Spark row is (position in the manifest, id, manifest partition);
each Python worker opens the cutout store itself and reads the pixels (pushing 122 KB cutouts through
the JVM as binary columns halves throughput). The model and the store are loaded once per executor
process and reused by every task it runs. Arrow batches are a few hundred rows
(``rows_per_arrow_batch``), not Spark's default 10,000.

The manifest is cut into partitions of ``partition_rows`` consecutive rows (a multiple of
``batch_size``), and within a partition rows are scored in batches of ``batch_size`` in manifest order:
the same batches as single-process ``score_manifest`` with the same ``batch_size``, so the scores are
bit-identical on the CPU (a model's float32 output for one cutout can change in the last bits with the
company it is batched with). Each finished partition is written to ``<out>/part=<k>/`` and skipped on a
re-run (resume by partition); work runs in waves of partitions, each wave one Spark job whose output is
moved into place only when it succeeded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import SparkScoresDir, check_manifest
from lensaudit.errors import InputError
from lensaudit.utils.io import atomic_write_json, sha256_file

log = logging.getLogger(__name__)
_WORKER: dict = {}


def _worker_state(checkpoint: str, store: str, device: str):
    """The model, its preprocessing and the store of this executor process (loaded on first use)."""
    key = (checkpoint, store, device)
    if _WORKER.get("key") != key:
        import torch

        from lensaudit.cutouts import CutoutStore
        from lensaudit.train.checkpoint import load_model
        from lensaudit.train.loop import pick_device

        # one Spark task per core: each Python worker computes on spark.task.cpus threads (1 by default), else
        # the workers of an executor oversubscribe its cores
        torch.set_num_threads(max(1, int(os.environ.get("LENSAUDIT_TASK_THREADS", "1"))))
        model, pre, _ = load_model(checkpoint)
        dev = pick_device(device)
        _WORKER.update(key=key, model=model.to(dev).eval(), pre=pre, dev=dev, store=CutoutStore(store))
    return _WORKER


def _score_batches(checkpoint: str, store: str, device: str, batch_size: int, features: bool):
    """The function Spark runs per task: pandas batches of (pos, id, part) in, scores out, in canonical batches."""

    def run(batches):
        from lensaudit.train.score import score_arrays

        st = _worker_state(checkpoint, store, device)
        buf: list[pd.DataFrame] = []
        n_buf = 0

        def flush(rows: pd.DataFrame) -> pd.DataFrame:
            lg, ft = score_arrays(st["model"], st["pre"], st["store"].get(list(rows["id"])), st["dev"], batch_size,
                                  features)
            out = pd.DataFrame({"pos": rows["pos"].to_numpy(), "id": rows["id"].to_numpy(), "logit": lg,
                                "probability": 1 / (1 + np.exp(-lg)), "part": rows["part"].to_numpy()})
            if features:
                out["features"] = list(ft.astype(np.float32))
            return out

        for b in batches:
            # batch boundaries restart at every manifest partition (partitions are multiples of batch_size)
            for _, g in b.groupby("part", sort=False):
                if buf and buf[0]["part"].iat[0] != g["part"].iat[0]:
                    yield flush(pd.concat(buf, ignore_index=True))
                    buf, n_buf = [], 0
                buf.append(g)
                n_buf += len(g)
                while n_buf >= batch_size:
                    allrows = pd.concat(buf, ignore_index=True)
                    yield flush(allrows.iloc[:batch_size])
                    rest = allrows.iloc[batch_size:]
                    buf, n_buf = ([rest] if len(rest) else []), len(rest)
        if buf:
            yield flush(pd.concat(buf, ignore_index=True))

    return run


def score_spark(checkpoint: str | os.PathLike, manifest: pd.DataFrame, store: str | os.PathLike, out: str | os.PathLike,
                spark=None, master: str | None = "local[*]", batch_size: int = 512, partition_rows: int | None = None,
                rows_per_arrow_batch: int = 256, features: bool = False, device: str = "auto",
                wave: int | None = None) -> dict:
    """Score the manifest's cutouts on Spark into ``out/part=<k>/``; returns a summary. Read the result with
    :func:`read_spark_predictions`."""
    from lensaudit.catalog.engines import spark_session

    manifest = check_manifest(manifest, source="manifest", require=("id",))
    if batch_size < 1 or rows_per_arrow_batch < 1:
        raise InputError("score --engine spark: batch_size and rows_per_arrow_batch must be >= 1")
    part_rows = partition_rows or max(batch_size, (20000 // batch_size) * batch_size)
    if part_rows % batch_size:
        raise InputError(f"score --engine spark: partition_rows {part_rows} must be a multiple of batch_size {batch_size} "
                         "(so batches match single-process scoring)")
    ids = manifest["id"].astype(str)
    missing = ids[~ids.isin(_store_ids(store))]  # hash lookups: seconds for millions of rows, not a Python loop
    if len(missing):
        raise InputError(f"score --engine spark: {len(missing)} id(s) have no cutout in {store} "
                         f"(e.g. {missing.head(3).tolist()})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with SparkScoresDir(out).lock("Spark scoring"):
        n = len(manifest)
        n_parts = (n + part_rows - 1) // part_rows
        from lensaudit.cutouts import CutoutStore

        meta = {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint), "n_rows": n,
                "store_fingerprint": CutoutStore(store).fingerprint(),
                "partition_rows": part_rows, "batch_size": batch_size, "features": features,
                "ids_sha256": pd.util.hash_pandas_object(manifest["id"].astype(str), index=False).sum().item()}
        sd = SparkScoresDir(out)
        mpath = sd.record
        if mpath.is_file():
            old = json.loads(mpath.read_text())
            if {k: old.get(k) for k in meta} != meta:
                changed = [k for k in meta if old.get(k) != meta[k]]
                raise InputError(f"{out}: holds scores of another manifest, checkpoint, store or setting ({', '.join(changed)} "
                                 f"changed; {mpath}); use a new folder")
        atomic_write_json(mpath, meta)
        todo = [k for k in range(n_parts) if not sd.done(k).is_file()]
        spark = spark or spark_session(master, app="lensaudit-score")
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(rows_per_arrow_batch))
        wave = wave or max(2 * spark.sparkContext.defaultParallelism, 1)
        schema = "pos long, id string, logit double, probability double, part int" + \
            (", features array<float>" if features else "")
        fn = _score_batches(str(checkpoint), str(store), device, batch_size, features)
        t0 = time.perf_counter()
        ids = ids.to_numpy()
        for w in range(0, len(todo), wave):
            parts = todo[w : w + wave]
            rows = pd.concat([pd.DataFrame({"pos": np.arange(k * part_rows, min(n, (k + 1) * part_rows), dtype=np.int64),
                                            "id": ids[k * part_rows : (k + 1) * part_rows], "part": np.int32(k)})
                              for k in parts], ignore_index=True)
            df = spark.createDataFrame(rows).repartition(len(parts), "part").sortWithinPartitions("part", "pos")
            tmp = out / f"_wave_{w:06d}"
            shutil.rmtree(tmp, ignore_errors=True)
            df.mapInPandas(fn, schema).write.mode("overwrite").partitionBy("part").parquet(str(tmp))
            for k in parts:
                dst = sd.part(k)
                shutil.rmtree(dst, ignore_errors=True)
                os.replace(tmp / dst.name, dst)
                sd.done(k).write_text("")
            shutil.rmtree(tmp, ignore_errors=True)
            log.info("scored partitions %d-%d of %d", parts[0], parts[-1], n_parts)
        dt = time.perf_counter() - t0
        return {"out": str(out), "n_rows": n, "partitions": n_parts, "scored_partitions": len(todo), "seconds": round(dt, 2),
                "cutouts_per_s": round(sum(min(n, (k + 1) * part_rows) - k * part_rows for k in todo) / dt, 1) if todo and dt
                else None}


def _store_ids(store) -> np.ndarray:
    from lensaudit.cutouts import CutoutStore

    return CutoutStore(store).ids()  # str already (the index casts its ids)


def read_spark_predictions(out: str | os.PathLike, allow_partial: bool = False) -> pd.DataFrame:
    """All partitions of a Spark scoring folder in manifest order, with the columns of single-process scoring.

    The folder's own record (``scoring.json``: rows and partitions) is the check: a folder with a partition missing or
    unfinished (a killed run) is an :class:`InputError` naming them, unless ``allow_partial`` (then a warning says
    how many rows are missing)."""
    out = Path(out)
    sd = SparkScoresDir(out)
    mpath = sd.record
    if not mpath.is_file():
        raise InputError(f"{out}: no {mpath.name} (not a lensaudit Spark scoring folder)")
    meta = json.loads(mpath.read_text())
    n_parts = (int(meta["n_rows"]) + int(meta["partition_rows"]) - 1) // int(meta["partition_rows"])
    done = [k for k in range(n_parts) if sd.done(k).is_file()]
    missing = sorted(set(range(n_parts)) - set(done))
    if not done:
        raise InputError(f"{out}: no finished partition of {n_parts}")
    if missing and not allow_partial:
        raise InputError(f"{out}: {len(missing)} of {n_parts} partitions are missing or unfinished (e.g. {missing[:5]}): "
                         "re-run the scoring to finish them, or read with allow_partial=True")
    df = pd.concat([pd.read_parquet(sd.part(k)) for k in done], ignore_index=True).sort_values("pos", kind="stable")
    if missing:
        log.warning("%s: partial scores: %d of %d rows (%d partitions missing)", out, len(df), meta["n_rows"], len(missing))
    elif len(df) != int(meta["n_rows"]):
        raise InputError(f"{out}: {len(df)} scored rows but the run scored {meta['n_rows']}: the folder is corrupt")
    return df.drop(columns=[c for c in ("pos", "part") if c in df]).reset_index(drop=True)


__all__ = ["read_spark_predictions", "score_spark"]

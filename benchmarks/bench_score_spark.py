"""Benchmark: scoring throughput (cutouts/s) single-process against Spark local mode on this machine's cores.

Generates a store of 101 x 101 g,r,z cutouts and scores them with the demo architecture (compact
bottleneck ResNet, 40-pixel crop) by ``score_manifest`` and by ``score_spark`` (``local[*]``; rows carry
ids, Python workers read the pixels; Arrow batches of 256 rows) in one run, and checks that the scores
are bit-identical. Spark's session start-up is timed apart from the job. Writes
``benchmarks/results/score_spark.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "results" / "score_spark.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8192)
    a = ap.parse_args()
    import torch

    from lensaudit.catalog.engines import spark_session
    from lensaudit.cutouts import CutoutStore
    from lensaudit.data.preprocess import PreprocessConfig
    from lensaudit.models import build_model
    from lensaudit.train.checkpoint import save_checkpoint
    from lensaudit.train.score import score_manifest
    from lensaudit.train.spark_score import read_spark_predictions, score_spark
    from lensaudit.utils.io import atomic_write_json
    from lensaudit.utils.provenance import run_info

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rng = np.random.default_rng(0)
        m = pd.DataFrame({"id": [f"c{i:06d}" for i in range(a.n)], "ra": rng.uniform(0, 1, a.n),
                          "dec": rng.uniform(0, 1, a.n)})
        store = CutoutStore(d / "store", create=True)
        with store.writer() as w:
            for r in m.itertuples():
                w.add(r.id, rng.normal(0, 0.01, (3, 101, 101)).astype(np.float32), r.ra, r.dec)
        kw = {"stem": 16, "stages": [[32, 16, 2, 2], [64, 32, 2, 2], [128, 48, 2, 2]]}
        torch.manual_seed(0)
        save_checkpoint(d / "ck.pt", arch="bottleneck_resnet", model_kwargs=kw,
                        preprocess=PreprocessConfig(crop=40, stretch="asinh").model_dump(),
                        model=build_model("bottleneck_resnet", **kw).state_dict())
        t0 = time.perf_counter()
        ref = score_manifest(d / "ck.pt", m, CutoutStore(d / "store"), batch_size=512)
        single = time.perf_counter() - t0
        t0 = time.perf_counter()
        spark = spark_session("local[*]", app="lensaudit-bench")
        startup = time.perf_counter() - t0
        rep = score_spark(d / "ck.pt", m, d / "store", d / "spark", spark=spark, batch_size=512, partition_rows=2048,
                          rows_per_arrow_batch=256, device="cpu")
        got = read_spark_predictions(d / "spark")
        identical = bool(np.array_equal(got["logit"].to_numpy(), ref["logit"].to_numpy()))
        spark.stop()
    res = {"n_cutouts": a.n, "cpu_count": os.cpu_count(), "model": "bottleneck_resnet (demo), crop 40",
           "single_process_cutouts_per_s": round(a.n / single, 1),
           "spark_local_cutouts_per_s": round(a.n / rep["seconds"], 1), "spark_session_startup_s": round(startup, 1),
           "ratio_spark_over_single": round(single / rep["seconds"], 2), "scores_bit_identical": identical,
           "settings": {"batch_size": 512, "partition_rows": 2048, "rows_per_arrow_batch": 256},
           "run_info": run_info()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT, res)
    print({k: v for k, v in res.items() if k != "run_info"})


if __name__ == "__main__":
    main()

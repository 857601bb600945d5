"""Scoring on Spark (local mode) against single-process scoring: bit-identical scores, resume by partition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lensaudit.cutouts import CutoutStore


@pytest.fixture(scope="module")
def scoring_inputs(tmp_path_factory):
    from lensaudit.data.preprocess import PreprocessConfig
    from lensaudit.models import build_model
    from lensaudit.train.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("spark_score")
    rng = np.random.default_rng(0)
    n = 150
    m = pd.DataFrame({"id": [f"c{i:04d}" for i in rng.permutation(n)], "ra": rng.uniform(0, 1, n),
                      "dec": rng.uniform(0, 1, n)})
    store = CutoutStore(d / "store", create=True)
    yy, xx = np.mgrid[0:101, 0:101]
    with store.writer() as w:
        for r in m.itertuples():
            blob = np.exp(-((xx - 50) ** 2 + (yy - 50) ** 2) / (2 * rng.uniform(2, 6) ** 2))
            w.add(r.id, (rng.uniform(0.05, 0.5) * blob[None] + rng.normal(0, 0.004, (3, 101, 101))).astype(np.float32),
                  r.ra, r.dec)
    torch.manual_seed(1)
    kw = {"stem": 8, "stages": [[16, 8, 1, 2], [32, 16, 1, 2]]}
    save_checkpoint(d / "ck.pt", arch="bottleneck_resnet", model_kwargs=kw,
                    preprocess=PreprocessConfig(crop=40, stretch="asinh").model_dump(),
                    model=build_model("bottleneck_resnet", **kw).state_dict())
    return d, m


@pytest.mark.spark
def test_spark_scores_equal_single_process_scores_bit_for_bit_and_resume(spark, scoring_inputs, tmp_path):
    from lensaudit.errors import InputError
    from lensaudit.train.score import score_manifest
    from lensaudit.train.spark_score import read_spark_predictions, score_spark

    d, m = scoring_inputs
    ref = score_manifest(d / "ck.pt", m, CutoutStore(d / "store"), batch_size=32, features=True)
    rep = score_spark(d / "ck.pt", m, d / "store", tmp_path / "s", spark=spark, batch_size=32, partition_rows=64,
                      rows_per_arrow_batch=20, features=True, device="cpu")
    assert rep["partitions"] == 3 and rep["scored_partitions"] == 3
    got = read_spark_predictions(tmp_path / "s")
    assert list(got.columns) == list(ref.columns)
    assert list(got["id"]) == list(ref["id"])                        # manifest order
    assert np.array_equal(got["logit"].to_numpy(), ref["logit"].to_numpy())
    assert np.array_equal(np.stack(got["features"]), np.stack(ref["features"]))
    # resume: nothing left to do; a partition without its completion mark is scored again, the others kept
    assert score_spark(d / "ck.pt", m, d / "store", tmp_path / "s", spark=spark, batch_size=32, partition_rows=64,
                       rows_per_arrow_batch=20, features=True, device="cpu")["scored_partitions"] == 0
    (tmp_path / "s" / "part=1" / "_DONE").unlink()
    kept = (tmp_path / "s" / "part=0" / "_DONE").stat().st_mtime_ns
    again = score_spark(d / "ck.pt", m, d / "store", tmp_path / "s", spark=spark, batch_size=32, partition_rows=64,
                        rows_per_arrow_batch=20, features=True, device="cpu")
    assert again["scored_partitions"] == 1 and (tmp_path / "s" / "part=0" / "_DONE").stat().st_mtime_ns == kept
    assert np.array_equal(read_spark_predictions(tmp_path / "s")["logit"].to_numpy(), ref["logit"].to_numpy())
    # another checkpoint or manifest into the same folder is refused; partitions must hold whole batches
    with pytest.raises(InputError, match="another manifest"):
        score_spark(d / "ck.pt", m.iloc[:100], d / "store", tmp_path / "s", spark=spark, batch_size=32,
                    partition_rows=64, device="cpu")
    with pytest.raises(InputError, match="multiple of batch_size"):
        score_spark(d / "ck.pt", m, d / "store", tmp_path / "t", spark=spark, batch_size=32, partition_rows=50)
    with pytest.raises(InputError, match="no cutout"):
        score_spark(d / "ck.pt", pd.DataFrame({"id": ["nope"]}), d / "store", tmp_path / "u", spark=spark)

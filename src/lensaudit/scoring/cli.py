"""``lensaudit score`` and ``lensaudit export-model`` (thin layers over :mod:`lensaudit.scoring`)."""

from __future__ import annotations

import argparse
import json


def _score(a: argparse.Namespace) -> int:
    from lensaudit.artifacts import read_manifest
    from lensaudit.cutouts import CutoutStore
    from lensaudit.scoring import score_manifest
    from lensaudit.train.score import write_predictions

    m = read_manifest(a.manifest, require=("id",))
    if a.engine == "spark":
        from lensaudit.scoring.scorers import CheckpointScorer, load_scorer
        from lensaudit.train.spark_score import score_spark

        if not isinstance(load_scorer(a.checkpoint, "cpu", spec=a.spec), CheckpointScorer):
            from lensaudit.errors import InputError

            raise InputError(f"score --engine spark: {a.checkpoint} is not a lensaudit checkpoint; the Spark engine "
                             f"scores checkpoints only (ONNX and TorchScript models: --engine local)")

        if a.split:
            m = m[m["split"] == a.split].reset_index(drop=True)
        rep = score_spark(a.checkpoint, m, a.store, a.out, master=None if a.master == "none" else a.master, batch_size=a.batch_size,
                          partition_rows=a.partition_rows, rows_per_arrow_batch=a.arrow_batch, features=a.features,
                          device=a.device)
        print(json.dumps(rep))
        return 0
    df = score_manifest(a.checkpoint, m, CutoutStore(a.store), features=a.features, batch_size=a.batch_size,
                        device=a.device, split=a.split, num_workers=a.workers, on_missing=a.on_missing, spec=a.spec)
    write_predictions(df, a.out, a.checkpoint)
    print(json.dumps({"out": a.out, "n_scored": len(df), "n_missing": len(df.attrs.get("missing", []))}))
    return 0


def _export(a: argparse.Namespace) -> int:
    from lensaudit.scoring.export import export_model

    cut = None
    if a.check_store:
        from lensaudit.cutouts import CutoutStore

        st = CutoutStore(a.check_store)
        cut = st.get(list(st.ids()[: a.check_n]))
    rep = export_model(a.checkpoint, a.out, a.name, a.tolerance, cut)
    print(json.dumps(rep, indent=2))
    return 0


def add_scoring_commands(sub) -> None:
    s = sub.add_parser("score", help="score a manifest's cutouts with a checkpoint, an ONNX model or a TorchScript file",
                       description="Batch inference with the model's own preprocessing (a checkpoint's stored one, or "
                                   "<model>.spec.yaml beside an ONNX or TorchScript file); one row per cutout "
                                   "(id, logit, probability[, features]).")
    s.add_argument("--model", "--checkpoint", dest="checkpoint", required=True, metavar="MODEL",
                   help="a lensaudit checkpoint (.pt), an ONNX model (.onnx) or a TorchScript file (.ts)")
    s.add_argument("--spec", default=None, help="the spec of an ONNX or TorchScript model (default: <model>.spec.yaml)")
    s.add_argument("--manifest", required=True, help="Parquet or CSV with an id column")
    s.add_argument("--store", required=True)
    s.add_argument("--out", required=True, help="predictions Parquet")
    s.add_argument("--split", default=None, help="score only this split")
    s.add_argument("--features", action="store_true", help="also write penultimate-layer features")
    s.add_argument("--batch-size", type=int, default=512)
    s.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    s.add_argument("--on-missing", default="error", choices=("error", "skip"))
    s.add_argument("--engine", default="local", choices=("local", "spark"),
                   help="spark: score on Spark executors into --out/part=<k>/ (a folder; resumable by partition), "
                        "scores bit-identical to the local engine with the same --batch-size on the CPU")
    s.add_argument("--master", default="local[*]", help="spark: the master (leave to spark-submit with 'none')")
    s.add_argument("--partition-rows", type=int, default=None, help="spark: manifest rows per partition (a multiple "
                                                                     "of --batch-size; default about 20,000)")
    s.add_argument("--arrow-batch", type=int, default=256, help="spark: rows per Arrow batch (cutouts are 122 KB)")
    s.set_defaults(fn=_score)

    e = sub.add_parser("export-model", help="a lensaudit checkpoint as ONNX and TorchScript, with its spec",
                       description="Writes OUT/NAME.onnx, NAME.ts (each: logit and penultimate features of a "
                                   "preprocessed batch), NAME.spec.yaml (the preprocessing, read by every command "
                                   "that takes a model) and NAME.export.json (the three scored against each other). "
                                   "A difference in probability above --tolerance is an error and nothing is written.")
    e.add_argument("checkpoint", help="a checkpoint written by lensaudit train")
    e.add_argument("--out", required=True, help="folder for the exported files")
    e.add_argument("--name", default="model", help="file stem (default: model)")
    e.add_argument("--tolerance", type=float, default=1e-5, help="largest probability difference accepted")
    e.add_argument("--check-store", default=None, help="also check on the first --check-n cutouts of this store")
    e.add_argument("--check-n", type=int, default=64)
    e.set_defaults(fn=_export)

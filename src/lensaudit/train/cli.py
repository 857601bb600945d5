"""``lensaudit train | score | meta | clean-negatives`` (thin layer over :mod:`lensaudit.train`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _train(a: argparse.Namespace) -> int:
    from lensaudit.config import load_config
    from lensaudit.train.config import TrainConfig
    from lensaudit.train.loop import train

    over = {"manifest": a.manifest, "store": a.store, "out": a.out, "epochs": a.epochs, "device": a.device}
    cfg = load_config(a.config, TrainConfig, over)
    s = train(cfg, resume=a.resume, config_path=a.config, force=a.force)
    print(json.dumps({k: v for k, v in s.items() if k != "history"}, indent=2))
    return 0


def _score(a: argparse.Namespace) -> int:
    from lensaudit.artifacts import read_manifest
    from lensaudit.cutouts import CutoutStore
    from lensaudit.scoring import score_manifest
    from lensaudit.train.score import write_predictions

    m = read_manifest(a.manifest, require=("id",))
    if a.engine == "spark":
        from lensaudit.train.spark_score import score_spark

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


def _meta(a: argparse.Namespace) -> int:
    from lensaudit.artifacts import read_manifest, read_predictions, write_table
    from lensaudit.errors import InputError
    from lensaudit.train.meta import MetaConfig, fit_meta_learner, save_meta
    from lensaudit.utils.io import atomic_write_json

    if len(a.preds) != len(a.names):
        raise InputError("--names needs one name per --preds file")
    m = read_manifest(a.manifest, require=("id", "label"), split=a.split or None)
    preds = {n: read_predictions(p, require=("id", "logit")) for n, p in zip(a.names, a.preds, strict=True)}
    oof, state, rep = fit_meta_learner(preds, m, MetaConfig(folds=a.folds, seed=a.seed), tuple(a.meta_features))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(oof, out / "meta_oof.parquet")
    save_meta(state, out / "meta.pt")
    atomic_write_json(out / "meta_report.json", rep)
    print(json.dumps(rep, indent=2))
    return 0


def _clean(a: argparse.Namespace) -> int:
    from lensaudit.artifacts import read_predictions
    from lensaudit.cutouts import CutoutStore
    from lensaudit.train.clean import clean_negatives

    rep = clean_negatives(read_predictions(a.preds), a.manifest, a.out, a.threshold,
                          CutoutStore(a.store) if a.store else None)
    print(json.dumps(rep, indent=2))
    return 0


def _models(a: argparse.Namespace) -> int:
    from lensaudit.models import build_model, count_parameters, list_models, model_spec

    for arch in list_models():
        spec = model_spec(arch)
        ref = f" (published: {spec.reference_params:,})" if spec.reference_params else ""
        print(f"{arch:<20} {count_parameters(build_model(arch)):>12,} parameters{ref}  {spec.description}")
    return 0


def add_train_commands(sub) -> None:
    ml = sub.add_parser("models", help="list the registered architectures with their parameter counts")
    ml.set_defaults(fn=_models)

    t = sub.add_parser("train", help="train a lens finder from a manifest and a cutout store",
                       description="Train per a YAML config (configs/train/*.yaml); --resume continues exactly "
                                   "from last.pt in the run folder (the config may change only in epochs, workers, "
                                   "threads, device and checkpointing). A folder that holds a run is refused "
                                   "without --resume or --force; one process per folder at a time.")
    t.add_argument("--config", required=True)
    t.add_argument("--resume", action="store_true", help="continue the run in the folder exactly from last.pt")
    t.add_argument("--force", action="store_true", help="replace a run already in the folder")
    for k in ("manifest", "store", "out", "device"):
        t.add_argument(f"--{k}", default=None, help=f"override the config's {k}")
    t.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    t.set_defaults(fn=_train)

    s = sub.add_parser("score", help="score a manifest's cutouts with a checkpoint, an ONNX model or a TorchScript file",
                       description="Batch inference with the model's own preprocessing (a checkpoint's stored one, or "
                                   "<model>.spec.yaml beside an ONNX or TorchScript file); one row per cutout "
                                   "(id, logit, probability[, features]).")
    s.add_argument("--model", "--checkpoint", dest="checkpoint", required=True,
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

    m = sub.add_parser("meta", help="stack two or more models' validation scores with a meta-learner",
                       description="One-hidden-layer (300 units) stacking network with k-fold cross-validation "
                                   "(folds by HEALPix pixel); writes out-of-fold predictions and meta.pt.")
    m.add_argument("--preds", nargs="+", required=True)
    m.add_argument("--names", nargs="+", required=True)
    m.add_argument("--manifest", required=True)
    m.add_argument("--split", default="val")
    m.add_argument("--meta-features", nargs="*", default=[], help="manifest columns, e.g. psfsize_r psfdepth_r")
    m.add_argument("--folds", type=int, default=5)
    m.add_argument("--seed", type=int, default=42)
    m.add_argument("--out", required=True)
    m.set_defaults(fn=_meta)

    c = sub.add_parser("clean-negatives", help="flag high-scoring negatives and write a cleaned manifest",
                       description="Two-pass protocol: negatives above --threshold (default 0.4) are listed with "
                                   "previews and removed from the manifest for the second pass.")
    c.add_argument("--preds", required=True)
    c.add_argument("--manifest", required=True)
    c.add_argument("--store", default=None, help="for previews")
    c.add_argument("--threshold", type=float, default=0.4)
    c.add_argument("--out", required=True)
    c.set_defaults(fn=_clean)

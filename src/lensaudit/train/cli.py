"""``lensaudit train | meta | clean-negatives`` (thin layer over :mod:`lensaudit.train`)."""

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

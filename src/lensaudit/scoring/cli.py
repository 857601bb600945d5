"""``lensaudit export-model`` (thin layer over :mod:`lensaudit.scoring.export`)."""

from __future__ import annotations

import argparse
import json


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

"""``lensaudit selection run | closure | mock-true-lenses`` and ``lensaudit inject`` (thin layers over
:mod:`lensaudit.selection` and :mod:`lensaudit.inject`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _run(a: argparse.Namespace) -> int:
    from lensaudit.config import load_config
    from lensaudit.selection.config import SelectionConfig
    from lensaudit.selection.run import run_selection

    cfg = load_config(a.config, SelectionConfig, {"out": a.out, "device": a.device})
    s = run_selection(cfg, config_path=a.config)
    print(json.dumps(s, indent=2))
    return 0


def _export(a: argparse.Namespace) -> int:
    from lensaudit.config import load_config
    from lensaudit.selection.config import SelectionConfig
    from lensaudit.selection.exchange import export_exchange

    cfg = load_config(a.config, SelectionConfig, {"out": a.out})
    print(json.dumps(export_exchange(cfg), indent=2))
    return 0


def _import_scores(a: argparse.Namespace) -> int:
    from lensaudit.config import load_config
    from lensaudit.selection.config import SelectionConfig
    from lensaudit.selection.run import run_selection

    cfg = load_config(a.config, SelectionConfig, {"out": a.out})
    cfg = cfg.model_copy(update={"checkpoint": None, "scores": a.scores,
                                 **({"features": False} if a.no_features else {})})
    s = run_selection(SelectionConfig(**cfg.model_dump()), config_path=a.config)
    print(json.dumps(s, indent=2))
    return 0


def _mock_true_lenses(a: argparse.Namespace) -> int:
    from lensaudit.artifacts import TrueLensesDir
    from lensaudit.selection.closure import score_mock_true_lenses

    t = score_mock_true_lenses(Path(a.survey), a.manifest, a.checkpoint, Path(a.out), splits=tuple(a.splits))
    print(json.dumps({"out": str(TrueLensesDir(a.out).table), "n_true_lenses": len(t),
                      "excluded": t.attrs.get("excluded", {})}))
    return 0


def _closure(a: argparse.Namespace) -> int:
    from lensaudit.artifacts.operating import HEADLINE
    from lensaudit.selection.closure import format_closure, run_closure

    threshold = a.threshold or HEADLINE
    per_bin, summary = run_closure(a.run, a.true_lenses, a.out, realism=a.realism, min_true=a.min_true,
                                   n_boot=a.n_boot)
    names = list(dict.fromkeys(summary["threshold"]))
    if threshold not in names:
        from lensaudit.errors import InputError

        raise InputError(f"closure: no operating point {threshold!r} to print; there are {names} (a detection is "
                         f"p >= t); every one is written to {a.out}")
    print(format_closure(summary, threshold))
    return 0


def _inject(a: argparse.Namespace) -> int:
    from lensaudit.selection.examples import inject_examples

    rep = inject_examples(a.config, a.family, a.n, Path(a.out), a.seed)
    print(json.dumps(rep, indent=2))
    return 0


def add_selection_commands(sub) -> None:
    s = sub.add_parser("selection", help="selection function by injection-recovery, and its closure test on the mock")
    ss = s.add_subparsers(dest="selection_command", metavar="SUBCOMMAND", required=True)
    r = ss.add_parser("run", help="inject every family on the grid, score with the frozen model, write the tables",
                      description="Resumable: chunks already written for the same configuration are kept.")
    r.add_argument("--config", required=True, help="selection YAML (configs/selection/*.yaml)")
    r.add_argument("--out", default=None, help="override the config's out")
    r.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"))
    r.set_defaults(fn=_run)
    e = ss.add_parser("export", help="offline exchange: write every cutout the run would score, for a model that "
                                     "runs elsewhere",
                      description="Writes OUT/exchange/: the audited negatives and every injection as npz shards "
                                  "(ids, float32 cutouts in nanomaggies, g r z), ids.csv, exchange.json (with the run "
                                  "id the scores file must carry) and a README of the layout. The config's checkpoint, "
                                  "if any, is not used.")
    e.add_argument("--config", required=True, help="selection YAML (the run to export)")
    e.add_argument("--out", default=None, help="override the config's out")
    e.set_defaults(fn=_export)
    m = ss.add_parser("import-scores", help="offline exchange: complete the run with scores from your own pipeline",
                      description="SCORES: CSV (or Parquet) of run_id, id, probability[, feature_0 ...] for every "
                                  "exported id. The whole file is checked before anything is written; then the run "
                                  "renders its injections again (each checked against the exported pixels) and "
                                  "writes its tables as `selection run` does.")
    m.add_argument("scores", help="the scores file")
    m.add_argument("--config", required=True, help="the selection YAML the export was made with")
    m.add_argument("--out", default=None, help="override the config's out (the folder holding exchange/)")
    m.add_argument("--no-features", action="store_true", help="keep no features (when the file has none)")
    m.set_defaults(fn=_import_scores)
    t = ss.add_parser("mock-true-lenses", help="mock only: the true lenses of the audited splits, fetched and scored")
    t.add_argument("--survey", required=True, help="mock survey folder")
    t.add_argument("--manifest", required=True)
    t.add_argument("--checkpoint", required=True)
    t.add_argument("--splits", nargs="+", default=["val", "test"])
    t.add_argument("--out", required=True)
    t.set_defaults(fn=_mock_true_lenses)
    c = ss.add_parser("closure", help="mock only: injection-measured against true completeness, per family")
    c.add_argument("--run", required=True, help="output folder of `selection run`")
    c.add_argument("--true-lenses", required=True, help="true_lenses.parquet from `selection mock-true-lenses`")
    c.add_argument("--realism", default=None, help="realism.parquet, to print each family's gate beside its closure")
    c.add_argument("--min-true", type=int, default=10, help="theta_E x magnitude bins are merged until each holds "
                                                            "this many true lenses")
    c.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates of the closure interval")
    c.add_argument("--threshold", default=None, help="operating point to print, e.g. p>=0.5 or fpr=0.001 (default: the "
                                                      "headline operating point; all are written)")
    c.add_argument("--out", required=True)
    c.set_defaults(fn=_closure)

    i = sub.add_parser("inject", help="inject a few arcs of one family into hosts and save them for inspection",
                       description="Writes injected cutouts (FITS, nanomaggies), their records and a gallery PNG.")
    i.add_argument("--config", required=True, help="selection YAML (hosts, priors, engine, families)")
    i.add_argument("--family", required=True)
    i.add_argument("--n", type=int, default=16)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--out", required=True)
    i.set_defaults(fn=_inject)

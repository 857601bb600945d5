"""``lensaudit catalog build|ingest|verify`` sub-commands (thin layer over :mod:`lensaudit.catalog`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _build(a: argparse.Namespace) -> int:
    from lensaudit.catalog import CatalogConfig, build_catalog
    from lensaudit.config import load_config

    over = {"engine": a.engine, "out": a.out, "workers": a.workers, "sweeps": a.sweeps, "candidates": a.candidates,
            "spark_master": a.spark_master}
    cfg = load_config(a.config, CatalogConfig, over)
    summary = build_catalog(cfg)
    print(json.dumps(summary, indent=2))
    return 0 if all(summary["verified"].values()) else 1


def _ingest(a: argparse.Namespace) -> int:
    from lensaudit.catalog.candidates import CatalogInputError
    from lensaudit.catalog.engines import make_engine
    from lensaudit.catalog.ingest import list_sweeps
    from lensaudit.survey.columns import LENS_COLUMNS

    files = list_sweeps(a.sweeps)
    if not files:
        raise CatalogInputError(f"sweeps {a.sweeps}: no sweep-*.fits files")
    rows = make_engine(a.engine or "local", a.workers or 1, a.spark_master or "local[*]").ingest(files, Path(a.out),
                                                                    None if a.all_columns else LENS_COLUMNS, a.force)
    print(json.dumps(rows, indent=2))
    return 0


def _verify(a: argparse.Namespace) -> int:
    from lensaudit.artifacts import CatalogDir
    from lensaudit.catalog.verify import format_report, verify_manifest
    from lensaudit.utils.io import atomic_write_json

    cut = Path(a.cutflow) if a.cutflow else CatalogDir(Path(a.manifest).parent).cutflow
    rep = verify_manifest(a.manifest, json.loads(cut.read_text()) if cut.exists() else None)
    if a.json:
        atomic_write_json(a.json, rep)
    print(format_report(rep))
    if not rep["passed"]:
        print("lensaudit: verification FAILED", file=sys.stderr)
    return 0 if rep["passed"] else 1


def add_catalog_commands(sub) -> None:
    c = sub.add_parser("catalog", help="build and verify training sets from DR10 sweeps and candidates",
                       description="Training-set construction with the published DR10 protocol: counted cuts, "
                                   "stratified negatives, hard confusers, HEALPix spatial splits; local or Spark.")
    csub = c.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    def engine_args(p):
        p.add_argument("--engine", choices=("local", "spark"), default=None, help="default: the config's (local)")
        p.add_argument("--workers", type=int, default=None, help="local engine: processes")
        p.add_argument("--spark-master", default=None, help="spark engine: master URL (default local[*])")

    b = csub.add_parser("build", help="sweeps + candidates -> manifests + verification reports",
                        description="Run ingestion, positives, negative pool, splits, sampling, manifests and "
                                    "verification. Exits 1 when a verification fails.")
    b.add_argument("--config", required=True, help="YAML with CatalogConfig keys (configs/catalog/*.yaml)")
    b.add_argument("--sweeps", default=None, help="override: folder of sweep-*.fits (or ingested partitions)")
    b.add_argument("--candidates", default=None, help="override: candidate CSV")
    b.add_argument("--out", default=None, help="override: output folder")
    engine_args(b)
    b.set_defaults(fn=_build)

    i = csub.add_parser("ingest", help="sweep FITS -> partitioned Parquet (native byte order, units kept)")
    i.add_argument("--sweeps", required=True, help="folder of sweep-*.fits files")
    i.add_argument("--out", required=True, help="output folder (sweep=<name>/part-0.parquet)")
    i.add_argument("--all-columns", action="store_true", help="every sweep column, not only the lens-finder set")
    i.add_argument("--force", action="store_true", help="rewrite partitions that already exist")
    engine_args(i)
    i.set_defaults(fn=_ingest)

    v = csub.add_parser("verify", help="verify a manifest (leakage, splits, strata); exit 1 on failure")
    v.add_argument("manifest")
    v.add_argument("--cutflow", default=None, help="cutflow.json (default: next to the manifest)")
    v.add_argument("--json", default=None, help="also write the report as JSON here")
    v.set_defaults(fn=_verify)

"""``lensaudit cutouts fetch|import|export|verify`` (thin layer over :mod:`lensaudit.cutouts`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lensaudit.errors import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL


def _cmd_fetch(a: argparse.Namespace) -> int:
    from lensaudit.artifacts import read_manifest
    from lensaudit.config import load_config, validate_config
    from lensaudit.cutouts import CutoutStore, FetchConfig, fetch_manifest

    overrides = {"service_url": a.service, "layer": a.layer, "concurrency": a.concurrency,
                 "rate_per_s": a.rate, "timeout_s": a.timeout, "max_retries": a.retries,
                 "commit_every": a.commit_every, "moved": a.moved}
    if a.no_retry_failed:
        overrides["retry_failed"] = False
    if a.config:
        cfg = load_config(a.config, FetchConfig, overrides)
    else:
        cfg = validate_config({k: v for k, v in overrides.items() if v is not None}, FetchConfig, "command line")
    manifest = read_manifest(a.manifest)
    store = CutoutStore(a.store, create=True)
    if a.engine == "spark":
        from lensaudit.cutouts.spark_fetch import fetch_spark

        rep = fetch_spark(manifest, store, cfg, master=None if a.master == "none" else a.master,
                          partition_rows=a.partition_rows)
    else:
        rep = fetch_manifest(manifest, store, cfg, progress=sys.stderr.isatty())
    print(json.dumps(rep.to_dict(), indent=2))
    return EXIT_OK if rep.n_failed == 0 or a.allow_failures else EXIT_PARTIAL


def _cmd_coadd(a: argparse.Namespace) -> int:
    import pandas as pd

    from lensaudit.artifacts import read_manifest
    from lensaudit.cutouts import CutoutStore
    from lensaudit.cutouts.coadd import CoaddReader, fetch_from_coadds

    p = Path(a.bricks)
    if p.suffix == ".parquet":
        bricks = pd.read_parquet(p)
    elif p.suffix == ".csv":
        bricks = pd.read_csv(p)
    else:  # survey-bricks.fits(.gz)
        from astropy.table import Table

        t = Table.read(p, hdu=1)
        bricks = t[[c for c in t.colnames if c.lower() in ("brickname", "ra1", "ra2", "dec1", "dec2")]].to_pandas()
    rep = fetch_from_coadds(read_manifest(a.manifest), CutoutStore(a.store, create=True), CoaddReader(a.coadds, bricks))
    print(json.dumps(rep.to_dict(), indent=2))
    return EXIT_OK if rep.n_failed == 0 or a.allow_failures else EXIT_PARTIAL


def _cmd_import(a: argparse.Namespace) -> int:
    from lensaudit.cutouts import CutoutStore, import_npz

    paths: list[Path] = []
    for p in map(Path, a.paths):
        paths += sorted(p.glob("*.npz")) if p.is_dir() else [p]
    rep = import_npz(paths, CutoutStore(a.store, create=True))
    print(json.dumps(rep.__dict__, indent=2))
    return EXIT_OK if not rep.failures else EXIT_PARTIAL


def _cmd_export(a: argparse.Namespace) -> int:
    from lensaudit.cutouts import export_cutouts, open_store

    written = export_cutouts(open_store(a.store), a.ids, a.out, a.format)
    for w in written:
        print(w)
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    from lensaudit.cutouts import StoreCorruptError, open_store

    store = open_store(a.store)
    if a.repair:
        store.repair()
    try:
        rep = store.verify(check_data=not a.quick)
    except StoreCorruptError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    rep["n_failures_recorded"] = int(len(store.failures()))
    print(json.dumps(rep, indent=2))
    return 0


def add_cutouts_commands(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("cutouts", help="fetch, import, export and verify g,r,z cutouts",
                       description="Acquire 101x101 g,r,z cutouts into a sharded store and inspect it.")
    csub = c.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    f = csub.add_parser("fetch", help="fetch a manifest's cutouts from a cutout service into a store",
                        description="Concurrent, rate-limited, resumable fetch from a Legacy Survey-style "
                                    "fits-cutout service. Re-running fetches only what is missing.")
    f.add_argument("--manifest", required=True, help="Parquet or CSV with columns id, ra, dec (others kept)")
    f.add_argument("--service", default=None, help="fits-cutout URL (default: the Legacy Survey viewer)")
    f.add_argument("--store", required=True, help="cutout store directory (created if missing)")
    f.add_argument("--config", default=None, help="YAML with FetchConfig keys")
    f.add_argument("--layer", default=None, help="service layer (default ls-dr10)")
    f.add_argument("--concurrency", type=int, default=None, help="requests in flight (default 4)")
    f.add_argument("--rate", type=float, default=None, help="max requests started per second (default 5)")
    f.add_argument("--timeout", type=float, default=None, help="per-request timeout, seconds (default 30)")
    f.add_argument("--retries", type=int, default=None, help="retries per cutout (default 4)")
    f.add_argument("--commit-every", type=int, default=None, help="cutouts per committed shard (default 512)")
    f.add_argument("--no-retry-failed", action="store_true", help="skip ids whose earlier fetch failed")
    f.add_argument("--moved", choices=("error", "refetch", "keep"), default=None,
                   help="a stored id whose manifest ra/dec moved (beyond 0.05 arcsec): stop with an error "
                        "(default), re-fetch it (the new cutout replaces the old), or keep the stored stamp")
    f.add_argument("--allow-failures", action="store_true", help="exit 0 even if some cutouts failed")
    f.add_argument("--engine", default="local", choices=("local", "spark"),
                   help="spark: Spark tasks fetch slices of the rows into staging stores beside --store, which "
                        "are moved into it after each wave; --concurrency is per task, --rate is global")
    f.add_argument("--master", default="local[*]", help="spark: the master (leave to spark-submit with 'none')")
    f.add_argument("--partition-rows", type=int, default=2000, help="spark: rows per task (default 2000)")
    f.set_defaults(fn=_cmd_fetch)

    k = csub.add_parser("coadd", help="cut a manifest's stamps from DR10 coadd files into a store",
                        description="Cut 101x101 g,r,z stamps directly from per-brick coadd images "
                                    "(coadd/<AAA>/<brick>/legacysurvey-<brick>-image-<band>.fits.fz), resampled "
                                    "onto the cutout service's WCS, stamps across brick edges included.")
    k.add_argument("--manifest", required=True, help="Parquet or CSV with columns id, ra, dec (others kept)")
    k.add_argument("--store", required=True, help="cutout store directory (created if missing)")
    k.add_argument("--coadds", required=True, help="folder holding coadd/ (e.g. .../dr10/south)")
    k.add_argument("--bricks", required=True, help="brick table: survey-bricks.fits.gz, or Parquet/CSV with "
                                                   "brickname, ra1, ra2, dec1, dec2")
    k.add_argument("--allow-failures", action="store_true", help="exit 0 even if some stamps failed QA")
    k.set_defaults(fn=_cmd_coadd)

    i = csub.add_parser("import", help="import legacy per-cutout .npz files into a store",
                        description="Import .npz cutouts (key 'cutout' of shape 101x101x3, meta_* keys).")
    i.add_argument("--store", required=True)
    i.add_argument("paths", nargs="+", help=".npz files or folders of them")
    i.set_defaults(fn=_cmd_import)

    e = csub.add_parser("export", help="write chosen cutouts as FITS (service layout) or npz")
    e.add_argument("--store", required=True)
    e.add_argument("--ids", nargs="+", required=True)
    e.add_argument("--format", choices=("fits", "npz"), default="fits")
    e.add_argument("--out", required=True)
    e.set_defaults(fn=_cmd_export)

    v = csub.add_parser("verify", help="check a store's shards, index and checksums")
    v.add_argument("--store", required=True)
    v.add_argument("--quick", action="store_true", help="skip reading every cutout's checksum")
    v.add_argument("--repair", action="store_true", help="remove orphan shards left by a killed writer first")
    v.set_defaults(fn=_cmd_verify)

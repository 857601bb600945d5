"""``lensaudit reference show|verify|path``: the real DR10 reference data shipped in the package."""

from __future__ import annotations

import argparse
import json

from lensaudit.reference import ENV, file_table, load_reference, package_dir


def add_reference_argument(p: argparse.ArgumentParser) -> None:
    """The ``--reference-data`` option (``--shared-data`` is its older name)."""
    p.add_argument("--reference-data", "--shared-data", dest="reference_data", default=None, metavar="DIR",
                   help=f"folder whose files replace the packaged real DR10 reference data by name "
                        f"(default: ${ENV} if set, else the data shipped in the package)")


def _show(a: argparse.Namespace) -> int:
    ref = load_reference(a.reference_data)
    rows = {r["path"]: r for r in file_table()}
    out = {"package_dir": str(package_dir()), **ref.provenance()}
    for name, f in out["files"].items():
        meta = rows.get(name, {})
        f.update({k: meta[k] for k in ("source", "licence", "description") if k in meta and f["origin"] == "package"})
    print(json.dumps(out, indent=2))
    return 0


def _verify(a: argparse.Namespace) -> int:
    ref = load_reference(a.reference_data)   # raises (exit 2) naming the file and the problem
    print(ref.describe())
    return 0


def _path(a: argparse.Namespace) -> int:
    if a.name is None:
        print(package_dir())
        return 0
    ref = load_reference(a.reference_data)
    if a.name.rstrip("/") in {n.split("/")[0] for n in ref.files if "/" in n}:
        print(ref.sample_cutouts[0].parent)
    else:
        print(ref.path(a.name))
    return 0


def add_reference_commands(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("reference", help="the real DR10 reference data shipped in the package",
                       description="The real DR10 reference data (DESI lens candidates, DR10 observing conditions, "
                                   "sample cutouts) shipped inside lensaudit, with checksums, sources and licences.")
    rs = r.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    s = rs.add_parser("show", help="every file in use: origin, path, SHA-256, source, licence (JSON)")
    add_reference_argument(s)
    s.set_defaults(fn=_show)
    v = rs.add_parser("verify", help="check checksums and columns; exit 2 naming the file on a problem")
    add_reference_argument(v)
    v.set_defaults(fn=_verify)
    p = rs.add_parser("path", help="where a reference file (or, without NAME, the packaged folder) is")
    p.add_argument("name", nargs="?", default=None, help="e.g. desi_lens_candidates.csv or dr10_sample_cutouts")
    add_reference_argument(p)
    p.set_defaults(fn=_path)

"""``lensaudit sources build-xdf | show``: source-galaxy libraries."""

from __future__ import annotations

import argparse
import json


def _build_xdf(a: argparse.Namespace) -> int:
    from lensaudit.sources.xdf import build_xdf_library

    rep = build_xdf_library(a.out)
    print(json.dumps({k: rep[k] for k in ("library", "n_detected", "rejected", "n_stamps", "halves", "gamma",
                                          "gamma_for_literature_range", "effective_fwhm_arcsec", "pixscale_arcsec")},
                     indent=2))
    return 0


def _show(a: argparse.Namespace) -> int:
    import numpy as np

    from lensaudit.sources.library import StampLibrary

    lib = StampLibrary.open(a.library)
    print(json.dumps({"library": a.library, "n_stamps": len(lib), "pixscale_arcsec": lib.pixscale,
                      "halves": {h: int((lib.meta["HALF"] == h).sum()) for h in ("A", "B")},
                      "r_half_arcsec_10_50_90": np.nanpercentile(lib.r_half, [10, 50, 90]).round(4).tolist(),
                      "concentration_10_50_90": np.nanpercentile(lib.concentration, [10, 50, 90]).round(3).tolist()},
                     indent=2))
    return 0


def add_sources_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sources", help="source-galaxy libraries (real galaxies from the Hubble XDF)",
                       description="Stamp libraries of source galaxies for the mock's true lenses and the stamps "
                                   "injection family, split into disjoint halves A and B.")
    ss = s.add_subparsers(dest="sources_command", metavar="SUBCOMMAND", required=True)
    b = ss.add_parser("build-xdf", help="cut a stamp library from the Hubble eXtreme Deep Field (scikit-image ships it)",
                      description="Detect, deblend and cut the galaxies of the XDF colour composite, undo its display "
                                  "stretch (measured), and write xdf_stamps.fits with xdf_report.json (provenance, "
                                  "measurements, every cut counted). Deterministic.")
    b.add_argument("--out", required=True, help="output folder")
    b.set_defaults(fn=_build_xdf)
    w = ss.add_parser("show", help="size, halves and shapes of a stamp library (PATH or PATH:A / PATH:B)")
    w.add_argument("library")
    w.set_defaults(fn=_show)

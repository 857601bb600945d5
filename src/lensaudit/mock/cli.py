"""``lensaudit mock build|serve|check`` sub-commands."""

from __future__ import annotations

import argparse
import json
import logging
import time

from lensaudit.reference.cli import add_reference_argument

log = logging.getLogger(__name__)


def _reference(a: argparse.Namespace):
    from lensaudit.reference import load_reference

    ref = load_reference(a.reference_data)
    log.info("%s", ref.describe())
    return ref


def _build(a: argparse.Namespace) -> int:
    from lensaudit.config import load_config, validate_config
    from lensaudit.mock.config import MockConfig
    from lensaudit.mock.survey import build_survey

    over = {"area_deg2": a.area_deg2, "seed": a.seed}
    cfg = load_config(a.config, MockConfig, over) if a.config else validate_config(
        {k: v for k, v in over.items() if v is not None}, MockConfig, "command line")
    if a.sources:
        cfg = validate_config({**cfg.model_dump(), "lenses": {**cfg.lenses.model_dump(), "sources": a.sources}},
                              MockConfig, "--sources")
    print(json.dumps(build_survey(cfg, a.out, _reference(a)), indent=2, default=str))
    return 0


def _serve(a: argparse.Namespace) -> int:
    from lensaudit.mock.render import load_renderer
    from lensaudit.mock.server import CutoutHTTPServer

    srv = CutoutHTTPServer(load_renderer(a.survey), port=a.port)
    print(f"serving mock survey {a.survey} at {srv.url} (Ctrl-C to stop)", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


def _check(a: argparse.Namespace) -> int:
    from lensaudit.mock.check import format_check, real_data_check
    from lensaudit.mock.render import load_renderer

    r = load_renderer(a.survey)
    samples = _reference(a).sample_cutouts
    t0 = time.monotonic()
    res = real_data_check(r, r.src, samples, n_mock=a.n)
    log.info("real-data check took %.1f s", time.monotonic() - t0)
    print(format_check(res))
    return 0 if res["passed"] else 1


def _coadds(a: argparse.Namespace) -> int:
    from lensaudit.mock.coadds import write_mock_coadds

    window = (a.around[0], a.around[1], a.half_size) if a.around else None
    files = write_mock_coadds(a.survey, a.out, a.bricks or None, window)
    print(json.dumps({"files": len(files), "out": str(a.out)}, indent=2))
    return 0


def add_mock_commands(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("mock", help="build, serve and check the mock DR10 survey",
                       description="The mock DR10 survey: sweeps, candidates, truth, and a loopback cutout service.")
    ms = m.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    b = ms.add_parser("build", help="write a mock survey (sweep FITS, candidates.csv, truth table)")
    b.add_argument("--out", required=True)
    b.add_argument("--area-deg2", type=float, default=None, help="patch area in deg^2 (0.0625-64, default 0.25)")
    b.add_argument("--seed", type=int, default=None, help="random seed (default 42)")
    b.add_argument("--config", default=None, help="YAML with MockConfig keys")
    b.add_argument("--sources", default=None, help="the true lenses' sources: procedural (default), xdf:A, xdf:B, "
                                                   "or PATH:A / PATH:B of a stamp library")
    add_reference_argument(b)
    b.set_defaults(fn=_build)
    s = ms.add_parser("serve", help="serve a mock survey as a Legacy Survey fits-cutout service on 127.0.0.1")
    s.add_argument("--survey", required=True)
    s.add_argument("--port", type=int, default=8001)
    s.set_defaults(fn=_serve)
    k = ms.add_parser("coadds", help="write the mock's pixels as DR10-format per-brick coadd files",
                      description="coadd/<AAA>/<brick>/legacysurvey-<brick>-image-<band>.fits.fz for the coadd reader "
                                  "(`lensaudit cutouts coadd`); its stamps equal the mock service's cutouts.")
    k.add_argument("--survey", required=True)
    k.add_argument("--out", required=True, help="folder that gets coadd/")
    k.add_argument("--bricks", nargs="*", default=None, help="brick names (default: all; a full brick needs ~1.5 GB)")
    k.add_argument("--around", nargs=2, type=float, metavar=("RA", "DEC"), default=None,
                   help="only a window around this position in every brick")
    k.add_argument("--half-size", type=int, default=150, help="window half size in pixels (default 150)")
    k.set_defaults(fn=_coadds)
    c = ms.add_parser("check", help="compare mock cutouts with the real DR10 sample cutouts")
    c.add_argument("--survey", required=True)
    c.add_argument("--n", type=int, default=40, help="mock cutouts to draw")
    add_reference_argument(c)
    c.set_defaults(fn=_check)

"""A loopback copy of the Legacy Survey cutout service (``/viewer/fits-cutout``).

It answers the real URL form and returns the real FITS structure (spec
``docs/dr10_formats.md`` section 3), so every consumer goes through the real client:

* ``/viewer/fits-cutout`` and ``/viewer/cutout.fits`` (same handler);
* ``ra``, ``dec`` required, else HTTP 400 with body ``Need ra,dec keywords``;
* ``layer`` defaults to ``ls-dr9``; an unknown layer gives a plain-text ``no such layer``
  answer with status 200, as the real code does;
* ``size`` (default 256), ``width``/``height``, clamped silently to 3000 pixels;
* ``pixscale`` (default 0.262 arcsec); ``bands``: if any character is not a layer band the
  whole argument is ignored and the layer's default (``griz``) is used;
* ``invvar`` adds an HDU1 inverse-variance cube;
* a request with no overlap with the footprint gives HTTP 500 (``NoOverlapError``); partly
  covered pixels are 0.0.

The pixels come from a ``render`` callable, so the same server fronts the mock survey and the
simple fields used in tests. ``fault`` lets tests and benchmarks inject service faults.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np

from lensaudit.mock.request import CutoutRequest, NoOverlapError, Renderer
from lensaudit.survey.constants import PIXEL_SCALE_ARCSEC, SERVICE_MAX_SIZE_CLAMP
from lensaudit.survey.cutout_fits import cutout_fits_bytes

log = logging.getLogger(__name__)

LAYER_BANDS = {"ls-dr10": "griz", "ls-dr10-south": "griz", "ls-dr10-grz": "grz"}
PATHS = ("/viewer/fits-cutout", "/viewer/cutout.fits")


@dataclass
class Fault:
    """A fault to inject: an HTTP status, a delay (seconds), a truncated body, or a replaced body."""

    status: int | None = None
    delay_s: float = 0.0
    truncate_to: int | None = None
    body: bytes | None = None
    headers: dict[str, str] | None = None


def parse_request(query: str) -> CutoutRequest | str:
    """Parse a query string as the real service does; returns an error text on bad input."""
    q = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    if "ra" not in q or "dec" not in q:
        return "Need ra,dec keywords"
    try:
        ra, dec = float(q["ra"]), float(q["dec"])
    except ValueError:
        return "Need ra,dec keywords"
    if not (np.isfinite(ra) and np.isfinite(dec)) or not -90.0 <= dec <= 90.0:
        return "Need ra,dec keywords"
    ra = ra % 360.0
    layer = q.get("layer", "ls-dr9")
    try:
        size = int(q.get("size", 256))
        width = int(q.get("width", size))
        height = int(q.get("height", size))
        pixscale = float(q.get("pixscale", PIXEL_SCALE_ARCSEC))
    except ValueError:
        return "Bad size/width/height/pixscale"
    if width <= 0 or height <= 0 or not pixscale > 0:
        return "Bad size/width/height/pixscale"
    width = min(width, SERVICE_MAX_SIZE_CLAMP)
    height = min(height, SERVICE_MAX_SIZE_CLAMP)
    layer_bands = LAYER_BANDS.get(layer, "")
    bands = q.get("bands", layer_bands)
    if not bands or any(b not in layer_bands for b in bands):
        bands = layer_bands
    return CutoutRequest(ra, dec, width, height, pixscale, bands, layer, "invvar" in q)


def encode_response(req: CutoutRequest, out: tuple[np.ndarray, np.ndarray | None]) -> bytes:
    """The FITS bytes the service sends for a renderer's ``(cube, invvar)`` answer to ``req`` (the inverse variance
    only when the request asks for it)."""
    cube, invvar = out
    return cutout_fits_bytes(cube, req.ra, req.dec, bands=req.bands, pixscale_arcsec=req.pixscale,
                             invvar=invvar if req.invvar else None)


def response_body(render: Renderer, req: CutoutRequest) -> bytes | None:
    """The response body for ``req``, None where the renderer finds no overlap: ``render.fits_body(req)`` when the
    renderer encodes its answers itself (a pool of render processes does, so the serving process does not),
    otherwise :func:`encode_response` of ``render(req)``: the same bytes either way."""
    fits_body = getattr(render, "fits_body", None)
    if fits_body is not None:
        return fits_body(req)
    out = render(req)
    return None if out is None else encode_response(req, out)


class _Handler(BaseHTTPRequestHandler):
    server: CutoutHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:  # route to logging, not stderr
        log.debug("mock service: " + fmt, *args)

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        srv = self.server
        with srv.lock:
            srv.n_requests += 1
            nreq = srv.n_requests
        url = urlparse(self.path)
        if url.path not in PATHS:
            self._send(404, b"Not Found", "text/plain")
            return
        fault = srv.fault(nreq, url.query) if srv.fault else None
        if fault and fault.delay_s:
            time.sleep(fault.delay_s)
        if fault and fault.status:
            self._send(fault.status, f"injected {fault.status}".encode(), "text/html", fault.headers)
            return
        req = parse_request(url.query)
        if isinstance(req, str):
            self._send(400, req.encode(), "text/plain")
            return
        if req.layer not in LAYER_BANDS:
            self._send(200, b"no such layer", "text/plain")
            return
        try:
            body = response_body(srv.render, req)
        except NoOverlapError:
            body = None
        except Exception as exc:  # a renderer bug must be visible, not a silent wrong image
            log.exception("mock service renderer failed for %s", url.query)
            self._send(500, f"render error: {exc}".encode(), "text/plain")
            return
        if body is None:
            self._send(500, b"NoOverlapError: No overlap", "text/html")
            return
        if fault and fault.body is not None:
            body = fault.body
        if fault and fault.truncate_to is not None:
            body = body[: fault.truncate_to]
        name = f"cutout_{req.ra:.4f}_{req.dec:.4f}.fits"
        self._send(200, body, "image/fits", {"Content-Disposition": f"attachment; filename={name}"})


class CutoutHTTPServer(ThreadingHTTPServer):
    """Threaded loopback server; bind only to 127.0.0.1."""

    daemon_threads = True

    def __init__(self, render: Renderer, host: str = "127.0.0.1", port: int = 0,
                 fault: Callable[[int, str], Fault | None] | None = None):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"mock cutout service binds to loopback only, not {host!r}")
        super().__init__((host, port), _Handler)
        self.render = render
        self.fault = fault
        self.lock = threading.Lock()
        self.n_requests = 0

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up early is logged as one line; anything else keeps its traceback."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError)):
            log.info("mock service: client %s:%s hung up (%s)", *client_address[:2], type(exc).__name__)
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/viewer/fits-cutout"


@contextlib.contextmanager
def serve_in_thread(render: Renderer, port: int = 0,
                    fault: Callable[[int, str], Fault | None] | None = None) -> Iterator[CutoutHTTPServer]:
    """Run a :class:`CutoutHTTPServer` in a background thread for the duration of the block."""
    srv = CutoutHTTPServer(render, port=port, fault=fault)
    th = threading.Thread(target=srv.serve_forever, name="mock-cutout-service", daemon=True)
    th.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(timeout=5)

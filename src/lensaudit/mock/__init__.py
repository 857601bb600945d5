"""The mock DR10 survey: sweeps, truth, a renderer, and a loopback copy of the cutout service."""

from lensaudit.mock.request import CutoutRequest, NoOverlapError
from lensaudit.mock.server import CutoutHTTPServer, Fault, serve_in_thread

__all__ = ["CutoutHTTPServer", "CutoutRequest", "Fault", "NoOverlapError", "serve_in_thread"]

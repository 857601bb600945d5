"""The mock DR10 survey: sweeps, truth, a renderer, and a loopback copy of the cutout service."""

from lensaudit.utils.lazy import attach

# submodules load on first use (a command's --help does not import torch or pandas)
__getattr__, __dir__, __all__ = attach(__name__, {
    "request": ["CutoutRequest", "NoOverlapError"],
    "server": ["CutoutHTTPServer", "Fault", "serve_in_thread"],
})

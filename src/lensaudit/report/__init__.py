"""Stage 6: the audit report (one self-contained HTML page, key tables as CSV and LaTeX)."""

from lensaudit.utils.lazy import attach

# submodules load on first use (a command's --help does not import torch or pandas)
__getattr__, __dir__, __all__ = attach(__name__, {
    "build": ["build_report"],
})

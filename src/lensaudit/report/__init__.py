"""Stage 6: the audit report (one self-contained HTML page, key tables as CSV and LaTeX)."""

from lensaudit.report.build import build_report

__all__ = ["build_report"]

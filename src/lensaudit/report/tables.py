"""Key tables of the report as CSV and LaTeX (``tabular`` with booktabs rules), for papers.

The LaTeX writer is a few lines by hand: pandas' ``to_latex`` needs jinja2, which is not a
dependency of lensaudit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.utils.io import atomic_write_text

_TEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "<": r"$<$", ">": r"$>$"}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(c, c) for c in str(s))


def _cell(v, digits: int) -> str:
    if isinstance(v, (float, np.floating)):
        return "--" if not np.isfinite(v) else f"{v:.{digits}f}"
    return tex_escape(v)


def to_latex(df: pd.DataFrame, digits: int = 3) -> str:
    cols = "l" + "r" * (len(df.columns) - 1)
    lines = [rf"\begin{{tabular}}{{{cols}}}", r"\toprule", " & ".join(tex_escape(c) for c in df.columns) + r" \\",
             r"\midrule"]
    lines += [" & ".join(_cell(v, digits) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_tables(tables: dict[str, pd.DataFrame], out: str | Path, digits: int = 3) -> list[str]:
    """Write each table as ``<name>.csv`` and ``<name>.tex`` under ``out``; returns the file names."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for name, df in tables.items():
        atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
        atomic_write_text(out / f"{name}.tex", to_latex(df, digits))
        names += [f"{name}.csv", f"{name}.tex"]
    return names


__all__ = ["tex_escape", "to_latex", "write_tables"]

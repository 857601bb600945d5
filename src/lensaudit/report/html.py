"""HTML building blocks of the audit report: one self-contained page (inline CSS, images embedded as
base64 PNG, no script, font or style sheet fetched from anywhere). Written with the standard library
(``html.escape``) rather than a template engine: the page is a list of small, tested pieces."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#17324d;color:#fff;padding:18px 32px}header h1{margin:0;font-size:24px}
header p{margin:4px 0 0;opacity:.85}nav{background:#e8eef4;padding:8px 32px;position:sticky;top:0;z-index:2}
nav a{margin-right:14px;color:#17324d;text-decoration:none;font-weight:600}main{padding:8px 32px 40px;max-width:1400px}
section{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:10px 22px 18px;margin:18px 0}
h2{color:#17324d;border-bottom:2px solid #e8eef4;padding-bottom:4px}h3{color:#2c4c6c;margin-bottom:6px}
figure{margin:12px 0 18px}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:13px;color:#333;max-width:1100px;margin-top:4px}figcaption b{color:#17324d}
table{border-collapse:collapse;font-size:13px;margin:8px 0 14px}th,td{border:1px solid #d5dbe1;padding:3px 8px;text-align:right}
th{background:#eef2f6}td:first-child,th:first-child{text-align:left}.missing{background:#fff6e5;border-color:#f0c36d}
.missing code{background:#fdebc8;padding:1px 4px}.go{color:#1a7f37;font-weight:700}.nogo{color:#b42318;font-weight:700}
.methods{background:#f4f7fa;font-size:13px}.methods pre{white-space:pre-wrap;font-size:12px}
.note{font-size:13px;color:#444}
"""


@dataclass
class Section:
    """One report section: anchor, title and body (HTML); ``missing`` lists the stages it lacks and how to
    produce them, shown instead of empty plots."""

    anchor: str
    title: str
    parts: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)

    def add(self, part: str) -> None:
        self.parts.append(part)

    def html(self) -> str:
        body = "".join(self.parts)
        if self.missing:
            items = "".join(f"<li><b>{esc(stage)}</b> not found: {how}</li>" for stage, how in self.missing)
            body = (f'<div class="missing section-missing"><p>Part of this section is not available yet.</p>'
                    f"<ul>{items}</ul></div>") + body
        return f'<section id="{self.anchor}" data-section="{self.anchor}"><h2>{esc(self.title)}</h2>{body}</section>'


def esc(x) -> str:
    return html.escape(str(x))


def png_data_uri(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figure(path: str | Path, caption: str, title: str = "", alt: str | None = None) -> str:
    """An embedded PNG with a caption that says what to conclude (``title`` in bold first)."""
    cap = (f"<b>{esc(title)}.</b> " if title else "") + caption
    return (f'<figure><img src="{png_data_uri(path)}" alt="{esc(alt or title or Path(path).stem)}">'
            f"<figcaption>{cap}</figcaption></figure>")


def fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}f}"
    return esc(v)


def fmt_p(p) -> str:
    """A p-value: three decimals, or two significant digits below 0.001 (never a bare 0.000)."""
    if p is None or (isinstance(p, float) and not np.isfinite(p)):
        return "-"
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.2g}"


def interval(value, lo, hi, digits: int = 3) -> str:
    """``value [lo, hi]`` with dashes for what is missing."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{fmt(value, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def table(df: pd.DataFrame, caption: str = "", digits: int = 3, raw_html: tuple[str, ...] = ()) -> str:
    """A DataFrame as an HTML table; columns in ``raw_html`` are inserted as HTML (already escaped)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = []
    for r in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, r, strict=True):
            cells.append(f"<td>{v}</td>" if c in raw_html else f"<td>{fmt(v, digits)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f'<p class="note">{caption}</p>' if caption else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{cap}"


def page(title: str, subtitle: str, sections: list[Section], methods: str) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{esc(s.title)}</a>' for s in sections) + '<a href="#methods">Methods</a>'
    body = "".join(s.html() for s in sections)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><header><h1>{esc(title)}</h1><p>{subtitle}</p></header>"
            f"<nav>{nav}</nav><main>{body}"
            f'<section id="methods" data-section="methods" class="methods"><h2>Methods</h2>{methods}</section>'
            "</main></body></html>")


__all__ = ["CSS", "Section", "esc", "figure", "fmt", "interval", "page", "png_data_uri", "table"]

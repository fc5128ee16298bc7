"""Small HTML builders for the report: escaped text, tables, embedded PNG figures. No JavaScript."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

#: Inline style sheet of the report (no external resources).
CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; background: #fff;
       margin: 0; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.3em; margin: 1.6em 0 0.5em; padding-bottom: 0.2em; border-bottom: 2px solid #4c72b0; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
p.meta, p.note, figcaption { color: #555; font-size: 0.9em; }
p.note { font-style: italic; }
nav ul { list-style: none; padding: 0; margin: 0.6em 0; display: flex; flex-wrap: wrap; gap: 6px 16px; }
nav a { color: #4c72b0; text-decoration: none; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.4em 0 1em; }
th, td { border: 1px solid #ddd; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #f2f4f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 0.6em 0 1.2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
div.scroll { overflow-x: auto; }
div.cols { display: flex; flex-wrap: wrap; gap: 0 48px; align-items: flex-start; }
"""


def esc(value: Any) -> str:
    """``value`` as text, HTML-escaped (quotes too)."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A readable plain-text form of a value from ``uns`` (numbers rounded, arrays shortened)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return "" if math.isnan(v) else f"{v:.4g}"
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
        shown = ", ".join(fmt(v) for v in items[:10])
        return f"[{shown}{', ...' if len(items) > 10 else ''}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {fmt(v)}" for k, v in list(value.items())[:10]) + "}"
    return str(value)


def _is_number(value: Any) -> bool:
    numeric = isinstance(value, (int, float, np.integer, np.floating))
    return numeric and not isinstance(value, (bool, np.bool_))


def table(header: Sequence[Any] | None, rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table; every cell is formatted with :func:`fmt` and escaped."""
    out = ['<div class="scroll"><table>']
    if header is not None:
        out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        cells = "".join(
            f'<td class="num">{esc(fmt(v))}</td>' if _is_number(v) else f"<td>{esc(fmt(v))}</td>" for v in row
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


NUM = ' class="num"'


def key_value_table(items: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of names (as row headers) and values."""
    rows = "".join(
        f'<tr><th scope="row">{esc(k)}</th><td{NUM if _is_number(v) else ""}>{esc(fmt(v))}</td></tr>'
        for k, v in items
    )
    return f"<table><tbody>{rows}</tbody></table>"


def image(png: bytes, alt: str, caption: str | None = None) -> str:
    """A figure with the PNG embedded as a base64 data URI (the file stays self-contained)."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">{cap}</figure>'


def note(text: str) -> str:
    """A short italic remark (e.g. why a figure is not shown)."""
    return f'<p class="note">{esc(text)}</p>'


def section(anchor: str, heading: str, body: str) -> str:
    """A report section with an ``id`` for the table of contents."""
    return f'<section id="{esc(anchor)}"><h2>{esc(heading)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document: ``sections`` are ``(anchor, heading, html)``; a contents list links them."""
    toc = "".join(f'<li><a href="#{esc(a)}">{esc(h)}</a></li>' for a, h, _ in sections)
    body = "".join(section(a, h, b) for a, h, b in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
        f'<body><main><h1>{esc(title)}</h1><p class="meta">{esc(subtitle)}</p>'
        f"<nav><ul>{toc}</ul></nav>\n{body}\n</main></body></html>\n"
    )
